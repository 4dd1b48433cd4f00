"""The baseline's feature table against a plain loop over the encoded events: tests that kill mutants of
eval/features.py (docs/testing.md, "Mutation testing")."""

from collections import Counter

import numpy as np
import pytest

from hamburg_mamba.data.schema import NUMERIC_FEATURES, PAD_INDEX, UNKNOWN_INDEX
from hamburg_mamba.eval.features import CATEGORICAL_CONTEXT, MAX_CODES, VALUE_DECIMALS, FeatureBuilder

US_PER_HOUR = 3.6e9


def _row_by_hand(data, codes, r):
    """Features of flat event r from its own pathway's events, one event at a time."""
    enc, schema = data.encoded, data.schema
    p = int(np.searchsorted(enc.offsets, r, side="right") - 1)
    first = int(enc.offsets[p])
    fields = list(schema.categorical_vocab)
    code_col = fields.index("code")
    out = {
        "events_so_far": r - first + 1,
        "hours_since_start": enc.time_since_start_h[r],
        "hour_of_day": enc.hour_of_day[r],
        "day_of_week": enc.day_of_week[r],
    }
    for f in CATEGORICAL_CONTEXT:
        if f in fields:
            out[f] = enc.categorical[r, fields.index(f)]
    for c in codes:
        token = schema.categorical_vocab["code"][c]
        hits = [i for i in range(first, r + 1) if enc.categorical[i, code_col] == c]
        out[f"n[{token}]"] = len(hits)
        if token in schema.code_stats:
            last = hits[-1] if hits else None
            stats = schema.code_stats[token]
            if last is None or enc.numeric_missing[last, 0]:
                out[f"last[{token}]"] = np.nan
            else:
                out[f"last[{token}]"] = round(float(enc.numeric[last, 0]) * stats.std + stats.mean, VALUE_DECIMALS)
            out[f"hours_since[{token}]"] = (
                np.nan if last is None else (enc.time_us[r] - enc.time_us[last]) / US_PER_HOUR
            )
    for j, name in enumerate(schema.numeric_features):
        if j >= len(NUMERIC_FEATURES):
            out[name] = np.nan if enc.numeric_missing[r, j] else enc.numeric[r, j]
    return out


def test_feature_table_equals_a_plain_loop(tiny_data):
    enc = tiny_data.encoded
    fb = FeatureBuilder(tiny_data)
    rng = np.random.default_rng(0)
    starts = enc.offsets[1:6]  # first events of pathways that do not start at flat index 0
    rows = np.unique(np.concatenate([[0], starts, starts + 1, rng.choice(int(enc.offsets[-1]), 40, replace=False)]))
    table = fb.table(rows)
    assert any(len(k) > 2 for k in fb.code_columns) and len(table) == rows.size
    for i, r in enumerate(rows):
        for name, want in _row_by_hand(tiny_data, fb.codes, int(r)).items():
            np.testing.assert_allclose(table[name].iloc[i], want, rtol=1e-5, atol=1e-6, err_msg=f"{name} at {r}")
    assert table.filter(like="n[").to_numpy().max() > 1  # codes repeat within a pathway
    assert table.filter(like="status:").notna().to_numpy().any()  # the feed reaches some rows


def test_codes_are_the_most_frequent_in_training_and_can_be_given(tiny_data):
    enc, schema = tiny_data.encoded, tiny_data.schema
    fb = FeatureBuilder(tiny_data)
    code_col = list(schema.categorical_vocab).index("code")
    train_rows = np.repeat(enc.split == "train", enc.lengths)
    counts = Counter(int(c) for c in enc.categorical[train_rows, code_col] if c not in (PAD_INDEX, UNKNOWN_INDEX))
    want = sorted(counts, key=lambda c: (-counts[c], c))[:MAX_CODES]
    assert fb.codes == want
    given = fb.code_columns[5:8]
    assert FeatureBuilder(tiny_data, codes=given).code_columns == given
    with pytest.raises(ValueError, match=r"codes: 'NOT//A_CODE' is not in the schema's code vocabulary"):
        FeatureBuilder(tiny_data, codes=["NOT//A_CODE"])


def test_raw_values_and_latest_are_float64_per_row_with_nan_where_absent(tiny_data):
    enc, schema = tiny_data.encoded, tiny_data.schema
    fb = FeatureBuilder(tiny_data)
    code_col = list(schema.categorical_vocab).index("code")
    tokens = schema.categorical_vocab["code"]
    with_stats = next(c for c in fb.codes if tokens[c] in schema.code_stats)
    without = next(c for c in fb.codes if tokens[c] not in schema.code_stats)
    flat = np.flatnonzero(enc.categorical[:, code_col] == with_stats)[:50]
    got = fb.raw_value(flat, with_stats)
    stats = schema.code_stats[tokens[with_stats]]
    want = [
        np.nan if enc.numeric_missing[i, 0] else round(float(enc.numeric[i, 0]) * stats.std + stats.mean, 1)
        for i in flat
    ]
    assert got.dtype == np.float64 and got.shape == flat.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert fb.raw_value(flat[:7], without).shape == (7,) and np.isnan(fb.raw_value(flat[:7], without)).all()
    for part in fb.latest(flat[:9], "NOT//A_CODE"):
        assert part.shape == (9,) and np.isnan(part).all()
