"""The model's clock: the connector's per-event time fields and the encoder's six time features, against a
plain loop over hand-written event times in float64.

The encoder reads log1p(hours since the previous event), log1p(hours since the pathway's first timed event),
and sin / cos of 2 pi hour / 24 and 2 pi weekday / 7 (Monday 0). The events cross midnight from Sunday to
Monday, share timestamps, and follow static facts that carry no clock.
"""

import math

import numpy as np
import pandas as pd
import torch

from hamburg_mamba.data import connect_hamburg_data
from hamburg_mamba.nn.encoder import time_features

# Sunday 2024-03-10 21:40 .. Monday 2024-03-11 09:25: two events at the same moment, one at midnight exactly
T0 = pd.Timestamp("2024-03-10 21:40:00")
OFFSETS_MIN = [0, 0, 35, 140, 141.5, 300, 705]


def _events():
    rows = [(5, None, "SEX//F", np.nan), (5, pd.Timestamp("1950-06-01"), "MEDS_BIRTH", np.nan)]
    rows += [(5, T0 + pd.Timedelta(minutes=m), "VITAL//PULSE", 70.0 + k) for k, m in enumerate(OFFSETS_MIN)]
    return pd.DataFrame(rows, columns=["subject_id", "time", "code", "numeric_value"])


def _clock_by_hand():
    """(prev_h, start_h, hour, weekday) per timed event, by a plain loop over the wall-clock times."""
    out, prev = [], None
    for m in OFFSETS_MIN:
        t = T0 + pd.Timedelta(minutes=m)
        prev_h = 0.0 if prev is None else (t - prev) / pd.Timedelta(hours=1)
        start_h = (t - T0) / pd.Timedelta(hours=1)
        hour = t.hour + t.minute / 60 + t.second / 3600
        out.append((prev_h, start_h, hour, t.weekday()))
        prev = t
    return out


def test_time_fields_and_features_equal_the_formula():
    data = connect_hamburg_data(_events(), split="subject", split_fractions=(1.0, 0.0, 0.0))
    b = data.batch([0])
    n_static = 2
    clock = _clock_by_hand()
    got = {
        "prev": b.time_since_prev_h[0],
        "start": b.time_since_start_h[0],
        "hour": b.hour_of_day[0],
        "day": b.day_of_week[0],
    }
    # static facts have no clock: all zero
    for name, t in got.items():
        assert t[:n_static].tolist() == [0] * n_static, name
    timed = slice(n_static, n_static + len(OFFSETS_MIN))
    # float32 fields: 1e-6 relative is 0.05 s at 12 h; a 1 % (or one-minute) error is far outside
    np.testing.assert_allclose(got["prev"][timed].numpy(), [c[0] for c in clock], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["start"][timed].numpy(), [c[1] for c in clock], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["hour"][timed].numpy(), [c[2] for c in clock], rtol=1e-6, atol=1e-6)
    assert got["day"][timed].tolist() == [c[3] for c in clock] == [6, 6, 6, 0, 0, 0, 0]  # Sunday; Monday from midnight

    feats = time_features(b)[0].double()  # (L, 6)
    want = torch.tensor(
        [
            [
                math.log1p(p),
                math.log1p(s),
                math.sin(2 * math.pi * h / 24),
                math.cos(2 * math.pi * h / 24),
                math.sin(2 * math.pi * d / 7),
                math.cos(2 * math.pi * d / 7),
            ]
            for p, s, h, d in clock
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(feats[timed], want, rtol=0, atol=2e-6)
    # static rows: log1p(0) = 0, hour 0 and weekday 0 (sin 0, cos 1)
    torch.testing.assert_close(feats[:n_static], torch.tensor([[0, 0, 0, 1, 0, 1]] * n_static, dtype=torch.float64))
