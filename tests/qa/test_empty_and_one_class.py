"""Inputs with nothing to learn from are said so, not passed on as if valid.

Before: an event table with no timed events connected to zero pathways and a schema fitted on nothing, and a
Platt recalibration fitted on one class kept the identity without a word (the separated case warned).
"""

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.data import DataValidationError, connect_hamburg_data
from hamburg_mamba.eval.metrics import PlattRecalibration


def _events(times):
    n = len(times)
    return pd.DataFrame(
        {
            "subject_id": np.arange(n, dtype=np.int64) % 2 + 1,
            "time": pd.to_datetime(pd.Series(times, dtype=object)),
            "code": ["MEDS_BIRTH" if t is None else "VITAL//heart_rate" for t in times],
            "numeric_value": [np.nan if t is None else 80.0 for t in times],
        }
    )


@pytest.mark.parametrize(
    "events",
    [
        _events([]).astype({"time": "datetime64[us]", "code": object}),
        _events([None, None]),  # static facts only
    ],
    ids=["no rows", "static rows only"],
)
def test_an_event_table_without_timed_events_is_refused(events):
    with pytest.raises(DataValidationError, match="column 'time': no timed events to connect"):
        connect_hamburg_data(events, split="subject")


def test_timed_events_still_connect():
    data = connect_hamburg_data(_events(["2023-08-10 10:00", "2023-08-10 11:00", None]), split="subject")
    assert len(data.pathways) == 2


@pytest.mark.parametrize("label", [0, 1])
def test_platt_fitted_on_one_class_keeps_the_identity_and_says_so(label):
    p = np.linspace(0.05, 0.95, 19)
    with pytest.warns(RuntimeWarning, match="the 19 fitting rows hold one class; the identity is kept"):
        recal = PlattRecalibration().fit(np.full(19, label), p)
    assert recal.one_class and (recal.intercept, recal.slope) == (0.0, 1.0)
    np.testing.assert_allclose(recal(p), p, rtol=1e-12)


def test_platt_fitted_on_both_classes_is_not_flagged():
    p = np.linspace(0.05, 0.95, 19)
    recal = PlattRecalibration().fit((p > 0.5).astype(int) ^ (np.arange(19) % 5 == 0), p)
    assert not recal.one_class and recal.slope != 1.0
