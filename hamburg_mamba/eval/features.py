"""Tabular features at prediction times for the gradient-boosting baseline, and the vitals NEWS2 reads.

Glossary: N laid-out events (flat), P pathways, R rows (flat indices where features are wanted), K codes.

Everything is computed from the pathway's own events up to and including the row's event, plus the hospital
status feed the sequence models also read (`hamburg_mamba.data.system_state`), plus system load derived from all
pathways' events (how many patients a hospital has in its ED and beds right now, how many
arrived recently): a hospital knows its census in real time, so this is information available at prediction
time, and it is what DOMAIN.md asks the baseline to have ("hours since last measurement", "a serious opponent").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hamburg_mamba.data.schema import NUMERIC_FEATURES, PAD_INDEX, UNKNOWN_INDEX
from hamburg_mamba.train.data_setup import US_PER_HOUR, event_times_us

MAX_CODES = 64  # codes with their own count / last value / hours-since columns (most frequent in training)
RECENT_ARRIVALS_H = 3.0  # window of the "arrivals in the last hours" load features
LONG_ED_STAY_H = 4.0  # ED patients present longer than this: mostly boarders waiting for a bed
VALUE_DECIMALS = 1  # vitals are charted to one decimal at most; undoing the z-score is rounded to that

# NEWS2 parameter -> the synthetic Hamburg vitals code.
NEWS2_CODES = {"respiration_rate": "VITAL//RESP_RATE", "spo2": "VITAL//SPO2", "on_oxygen": "VITAL//O2",
               "systolic_bp": "VITAL//SBP", "pulse": "VITAL//PULSE", "consciousness": "VITAL//ACVPU",
               "temperature": "VITAL//TEMP"}
CATEGORICAL_CONTEXT = ("stage", "unit", "triage_group", "arrival_mode", "hospital")


class FeatureBuilder:
    """Per-event running features of one connected dataset, computed once and indexed by row."""

    def __init__(self, data):
        self.data = data
        enc, schema = data.encoded, data.schema
        self.N = int(enc.offsets[-1])
        self.pathway_of = np.repeat(np.arange(enc.lengths.size), enc.lengths)  # (N,)
        self.first = enc.offsets[:-1][self.pathway_of]  # (N,) flat index of the pathway's first event
        self.time_h = event_times_us(data) / US_PER_HOUR  # (N,)
        fields = list(schema.categorical_vocab)
        self.cat = {f: enc.categorical[:, j] for j, f in enumerate(fields)}
        self.code_tokens = schema.categorical_vocab["code"]
        code = self.cat["code"]
        train = np.repeat(enc.split == "train", enc.lengths)
        freq = np.bincount(code[train], minlength=len(self.code_tokens))
        freq[[PAD_INDEX, UNKNOWN_INDEX]] = 0
        self.codes = [int(c) for c in np.argsort(-freq, kind="stable")[:MAX_CODES] if freq[c] > 0]

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
        # the hospital status feed the sequence models read (z-scored; NaN where missing)
        first = len(NUMERIC_FEATURES)  # the connector's layout: value, age, then the status features
        for j, name in enumerate(schema.numeric_features[first:], start=first):
            cols[name] = np.where(enc.numeric_missing[rows, j], np.nan, enc.numeric[rows, j])
        return pd.DataFrame(cols)

    @property
    def categorical_columns(self) -> list[str]:
        return [f for f in CATEGORICAL_CONTEXT if f in self.cat]

    # --- system load, from all pathways' events ---

    def _stays(self):
        """Per pathway: hospital, ED entry, ED exit, first and last event time (hours); NaN where absent."""
        enc = self.data.encoded
        stage_tokens = self.data.schema.categorical_vocab["stage"]
        ed = stage_tokens.index("ED") if "ED" in stage_tokens else -1
        static = stage_tokens.index("static") if "static" in stage_tokens else -1
        stage = self.cat["stage"]
        P = enc.lengths.size
        t = self.time_h
        in_ed = stage == ed
        entry = np.full(P, np.inf)
        np.minimum.at(entry, self.pathway_of[in_ed], t[in_ed])
        timed = stage != static
        start = np.full(P, np.inf)
        np.minimum.at(start, self.pathway_of[timed], t[timed])
        end = np.full(P, -np.inf)
        np.maximum.at(end, self.pathway_of[timed], t[timed])
        # ED exit: the first event after ED entry in a later stage (ward, ICU, discharge); else the last event
        after = timed & ~in_ed & (t > entry[self.pathway_of])
        exit_ = np.full(P, np.inf)
        np.minimum.at(exit_, self.pathway_of[after], t[after])
        exit_ = np.where(np.isfinite(exit_), exit_, end)
        arrival = self.cat.get("arrival_mode")
        amb_id = self.data.schema.lookup["arrival_mode"].get("ambulance", -2)
        ambulance = np.zeros(P, dtype=bool)
        if arrival is not None:
            np.logical_or.at(ambulance, self.pathway_of, arrival == amb_id)
        return enc.hospital_id, entry, exit_, start, end, ambulance

    def system_load(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        hosp, entry, exit_, start, end, ambulance = self._stays()
        t = self.time_h[rows]
        row_h = self.data.encoded.hospital_id[self.pathway_of[rows]]
        out = {k: np.zeros(rows.size, dtype=np.float32) for k in (
            "load_ed_census", "load_ed_over_4h", "load_hospital_census", "load_arrivals_3h",
            "load_ambulance_arrivals_3h")}

        def count_covering(lo, hi, at, closed=False):
            """#intervals [lo, hi) ([lo, hi] when closed) containing each time in `at`."""
            return np.searchsorted(np.sort(lo), at, "right") - np.searchsorted(np.sort(hi), at,
                                                                                "left" if closed else "right")

        for h in np.unique(row_h):
            sel = row_h == h
            mine = hosp == h
            e, x = entry[mine], exit_[mine]
            ok = np.isfinite(e)
            at = t[sel]
            out["load_ed_census"][sel] = count_covering(e[ok], x[ok], at)
            out["load_ed_over_4h"][sel] = count_covering(e[ok] + LONG_ED_STAY_H, np.maximum(x[ok], e[ok] +
                                                                                        LONG_ED_STAY_H), at)
            s, en = start[mine], end[mine]
            okp = np.isfinite(s)
            # closed: a patient is present up to and including their last event
            out["load_hospital_census"][sel] = count_covering(s[okp], np.maximum(en[okp], s[okp]), at, closed=True)
            arr = np.sort(e[ok])
            out["load_arrivals_3h"][sel] = (np.searchsorted(arr, at, "right")
                                            - np.searchsorted(arr, at - RECENT_ARRIVALS_H, "right"))
            amb = np.sort(e[ok & ambulance[mine]])
            out["load_ambulance_arrivals_3h"][sel] = (np.searchsorted(amb, at, "right")
                                                      - np.searchsorted(amb, at - RECENT_ARRIVALS_H, "right"))
        return out
