"""A pandas categorical `code` column (pandas' reading of a dictionary-encoded parquet column) is its strings.

It was refused as "categorical values (0 rows)", with no offending row shown; the connected data must equal
that of the same codes as plain strings, and a categorical of numbers is still refused.
"""

import numpy as np
import pytest

from hamburg_mamba.data import DataValidationError, connect_hamburg_data, read_meds


@pytest.fixture(scope="module")
def events(tiny_root):
    return read_meds(tiny_root)["events"].drop(columns=["shard"])


def test_categorical_codes_connect_as_their_strings(events):
    plain = connect_hamburg_data(events, split="subject")
    cat = connect_hamburg_data(events.assign(code=events["code"].astype("category")), split="subject")
    assert cat.schema.categorical_vocab["code"] == plain.schema.categorical_vocab["code"]
    np.testing.assert_array_equal(cat.encoded.categorical, plain.encoded.categorical)
    np.testing.assert_array_equal(cat.encoded.numeric, plain.encoded.numeric)
    assert cat.accounting.events_used == plain.accounting.events_used == len(events)


def test_categorical_of_numbers_is_still_refused(events):
    numbers = events.assign(code=events["code"].factorize()[0]).astype({"code": "category"})
    with pytest.raises(DataValidationError, match="expected string codes"):
        connect_hamburg_data(numbers, split="subject")
