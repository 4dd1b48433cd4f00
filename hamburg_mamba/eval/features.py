"""Tabular features at prediction times for the gradient-boosting baseline, and the vitals NEWS2 reads.

Glossary: N laid-out events (flat), P pathways, R rows (flat indices where features are wanted), K codes.

Everything is computed from the pathway's own events up to and including the row's event, plus the hospital
status feed the sequence models read (`hamburg_mamba.data.system_state`, attached to each event by the connector:
one feed, one lag, one definition for every model). The baseline has no census of its own counted from all
patients' events: such a count read every other patient's future (when they leave the ED, their last event) and
ignored the feed's publication lag, so the baseline knew more about the system than the sequence models did,
and more than a hospital knows when it predicts (tests/data/test_time_travel.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hamburg_mamba.data.schema import NUMERIC_FEATURES, PAD_INDEX, UNKNOWN_INDEX
from hamburg_mamba.data.splits import US_PER_HOUR, event_times_us

MAX_CODES = 64  # codes with their own count / last value / hours-since columns (most frequent in training)
VALUE_DECIMALS = 1  # vitals are charted to one decimal at most; undoing the z-score is rounded to that

# NEWS2 parameter -> the synthetic Hamburg vitals code.
NEWS2_CODES = {
    "respiration_rate": "VITAL//RESP_RATE",
    "spo2": "VITAL//SPO2",
    "on_oxygen": "VITAL//O2",
    "systolic_bp": "VITAL//SBP",
    "pulse": "VITAL//PULSE",
    "consciousness": "VITAL//ACVPU",
    "temperature": "VITAL//TEMP",
}
CATEGORICAL_CONTEXT = ("stage", "unit", "triage_group", "arrival_mode", "hospital")


class FeatureBuilder:
    """Per-event running features of one connected dataset, computed once and indexed by row."""

    def __init__(self, data, codes: Sequence[str] | None = None):
        """codes: the code tokens with their own columns, as `code_columns` of a builder fitted before (the same
        columns at inference); None picks the MAX_CODES most frequent codes of `data`'s training split."""
        self.data = data
        enc, schema = data.encoded, data.schema
        self.N = int(enc.offsets[-1])
        self.pathway_of = np.repeat(np.arange(enc.lengths.size), enc.lengths)  # (N,)
        self.first = enc.offsets[:-1][self.pathway_of]  # (N,) flat index of the pathway's first event
        self.time_h = event_times_us(data) / US_PER_HOUR  # (N,)
        fields = list(schema.categorical_vocab)
        self.cat = {f: enc.categorical[:, j] for j, f in enumerate(fields)}
        self.code_tokens = schema.categorical_vocab["code"]
        self.codes = self._most_frequent_codes() if codes is None else [self._code_id(c) for c in codes]

    def _most_frequent_codes(self) -> list[int]:
        enc = self.data.encoded
        train = np.repeat(enc.split == "train", enc.lengths)
        freq = np.bincount(self.cat["code"][train], minlength=len(self.code_tokens))
        freq[[PAD_INDEX, UNKNOWN_INDEX]] = 0
        return [int(c) for c in np.argsort(-freq, kind="stable")[:MAX_CODES] if freq[c] > 0]

    def _code_id(self, token: str) -> int:
        code_id = self.data.schema.lookup["code"].get(token)
        if code_id is None:
            raise ValueError(f"codes: {token!r} is not in the schema's code vocabulary")
        return code_id

    @property
    def code_columns(self) -> list[str]:
        """The code tokens with their own count / last value / hours-since columns."""
        return [self.code_tokens[c] for c in self.codes]

    # --- per-code running state ---

    def _last_index(self, code_id: int) -> np.ndarray:
        """(N,) flat index of the latest event with this code at or before each event in its pathway; -1 if none."""
        hit = np.where(self.cat["code"] == code_id, np.arange(self.N), -1)
        last = np.maximum.accumulate(hit)
        return np.where(last >= self.first, last, -1)

    def raw_value(self, flat_idx: np.ndarray, code_id: int) -> np.ndarray:
        """numeric_value in original units (undoing the training z-score), NaN where absent."""
        token = self.code_tokens[code_id]
        stats = self.data.schema.code_stats.get(token)
        z = self.data.encoded.numeric[flat_idx, 0].astype(np.float64)
        missing = self.data.encoded.numeric_missing[flat_idx, 0]
        if stats is None:
            return np.full(flat_idx.size, np.nan)
        return np.where(missing, np.nan, np.round(z * stats.std + stats.mean, VALUE_DECIMALS))

    def latest(self, rows: np.ndarray, token: str) -> tuple[np.ndarray, np.ndarray]:
        """(latest raw value, hours since it) of a code at each row; NaN where never measured."""
        code_id = self.data.schema.lookup["code"].get(token)
        if code_id is None:
            return np.full(rows.size, np.nan), np.full(rows.size, np.nan)
        last = self._last_index(code_id)[rows]
        has = last >= 0
        value = np.full(rows.size, np.nan)
        value[has] = self.raw_value(last[has], code_id)
        since = np.where(has, self.time_h[rows] - self.time_h[np.maximum(last, 0)], np.nan)
        return value, since

    def news2_vitals(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {param: self.latest(rows, code)[0] for param, code in NEWS2_CODES.items()}

    # --- the feature table ---

    def table(self, rows: np.ndarray) -> pd.DataFrame:
        """One row per flat index: pathway context, per-code counts / last values / hours since, system load."""
        enc, schema = self.data.encoded, self.data.schema
        cols: dict[str, np.ndarray] = {}
        cols["events_so_far"] = (rows - self.first[rows] + 1).astype(np.float32)
        cols["hours_since_start"] = enc.time_since_start_h[rows]
        cols["hour_of_day"] = enc.hour_of_day[rows]
        cols["day_of_week"] = enc.day_of_week[rows].astype(np.float32)
        age = enc.numeric[rows, 1] * schema.age_stats.std + schema.age_stats.mean
        cols["age_years"] = np.where(enc.numeric_missing[rows, 1], np.nan, age)
        for f in CATEGORICAL_CONTEXT:
            if f in self.cat:
                cols[f] = self.cat[f][rows].astype(np.int64)
        code = self.cat["code"]
        for c in self.codes:
            token = self.code_tokens[c]
            hits = (code == c).astype(np.int64)
            csum = np.cumsum(hits)
            before = np.where(self.first > 0, csum[np.maximum(self.first - 1, 0)], 0)
            cols[f"n[{token}]"] = (csum - before)[rows].astype(np.float32)
            if token in schema.code_stats:
                value, since = self.latest(rows, token)
                cols[f"last[{token}]"] = value
                cols[f"hours_since[{token}]"] = since
        cols.update(self.system_load(rows))
        return pd.DataFrame(cols)

    @property
    def categorical_columns(self) -> list[str]:
        return [f for f in CATEGORICAL_CONTEXT if f in self.cat]

    # --- system load: the hospital status feed ---

    def system_load(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The connector's status features at each row (`status:<column>`, `trend:<column>`): the event's
        hospital's status feed, lagged by the schema's `status_lag_h` and turned into bounded training ranks
        (`schema.BoundedRank`, monotone: tree splits are unchanged by it), exactly what the sequence models read;
        NaN where missing (no hospital known yet, stale or no feed)."""
        enc, schema = self.data.encoded, self.data.schema
        first = len(NUMERIC_FEATURES)  # the connector's layout: value, age, then the status features
        return {
            name: np.where(enc.numeric_missing[rows, j], np.nan, enc.numeric[rows, j])
            for j, name in enumerate(schema.numeric_features[first:], start=first)
        }
