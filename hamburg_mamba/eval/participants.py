"""Who is in each split, as analysed: the participant table a TRIPOD+AI report asks for (Collins GS, Moons KGM,
Dhiman P, et al. TRIPOD+AI statement. BMJ 2024;385:e078378, items 20a-b: flow of participants, their
characteristics and the number with the outcome, per development and evaluation set).

Glossary: N laid-out events (flat), P pathways, R prediction rows of one split, Q pathway-level rows.

Everything is counted from the connected data after the split's label hiding (train and tuning labels after
their period are masked), so the outcome counts are the labels the models were trained and scored on. A pathway
whose triage group, arrival mode, sex or age the data does not record is counted as "not recorded", never left
out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from hamburg_mamba.data.schema import UNKNOWN_INDEX

NOT_RECORDED = "not recorded"
CONTEXT_FIELDS = ("triage_group", "arrival_mode")  # categorical per event; a pathway's is its last recorded one
AGE_COLUMN = 1  # encoded.numeric column of age at pathway start (schema.NUMERIC_FEATURES: value, age_years)


def study_record(data, rows: dict, prow: dict, sex: np.ndarray, runs: dict, catboost) -> dict:
    """What the report's TRIPOD+AI sections read beside the metrics: the participant table, each task's horizon,
    the evaluated run folders (their config.json and train_config.json hold the models' specifications) and
    the CatBoost settings (a dataclass)."""
    return {
        "participants": participant_table(data, rows, prow, sex),
        "task_horizons_h": {t: s.horizon_h for t, s in data.schema.tasks.items()},
        "run_folders": {n: str(Path(r).resolve()) for n, r in runs.items() if isinstance(r, (str, Path))},
        "catboost_settings": dataclasses.asdict(catboost),
    }


def participant_table(data, rows: dict, prow: dict, sex: np.ndarray) -> dict:
    """split -> {patients, pathways, events, age (median, quartiles, not recorded), sex / triage_group /
    arrival_mode (level -> pathways), outcomes (task -> counts)} for each split with pathways.

    rows: split -> PredictionRows, prow: split -> PathwayRows (predictions.py); sex: (P,) sex per pathway."""
    enc = data.encoded
    if sex.shape != enc.subject_id.shape:
        raise ValueError(f"sex: expected one value per pathway ({enc.subject_id.size}), got shape {sex.shape}")
    age = pathway_age(data)
    context = {f: pathway_context(data, f) for f in CONTEXT_FIELDS if f in data.schema.categorical_vocab}
    out = {}
    for split in rows:
        mine = enc.split == split
        if not mine.any():
            continue
        out[split] = {
            "patients": int(np.unique(enc.subject_id[mine]).size),
            "pathways": int(mine.sum()),
            "events": int(enc.lengths[mine].sum()),
            "age": age_summary(age[mine]),
            "sex": level_counts(sex[mine]),
            **{f: level_counts(v[mine]) for f, v in context.items()},
            "outcomes": outcome_counts(data, rows[split], prow[split]),
        }
    return out


def pathway_age(data) -> np.ndarray:
    """(P,) age in years at pathway start (the connector's age feature, un-z-scored); NaN where not recorded."""
    enc, stats = data.encoded, data.schema.age_stats
    years = np.where(
        enc.numeric_missing[:, AGE_COLUMN],
        np.nan,
        enc.numeric[:, AGE_COLUMN].astype(np.float64) * stats.std + stats.mean,
    )  # (N,)
    owner = np.repeat(np.arange(enc.lengths.size), enc.lengths)  # (N,)
    return pd.Series(years).groupby(owner).first().reindex(np.arange(enc.lengths.size)).to_numpy()


def pathway_context(data, field: str) -> np.ndarray:
    """(P,) a categorical field's last recorded level in each pathway (triage and arrival mode are set once, at
    the ED or the ambulance); "not recorded" where no event carries a level (padding and <unk> are no level)."""
    enc = data.encoded
    col = list(data.schema.categorical_vocab).index(field)
    vocab = np.asarray(data.schema.categorical_vocab[field], dtype=object)
    code = enc.categorical[:, col].astype(np.int64)  # (N,)
    owner = np.repeat(np.arange(enc.lengths.size), enc.lengths)  # (N,)
    known = code > UNKNOWN_INDEX
    last = pd.Series(code[known]).groupby(owner[known]).last()
    out = np.full(enc.lengths.size, NOT_RECORDED, dtype=object)
    out[last.index.to_numpy()] = vocab[last.to_numpy()]
    return out


def age_summary(age: np.ndarray) -> dict:
    known = age[np.isfinite(age)]
    q1, median, q3 = np.percentile(known, [25, 50, 75]) if known.size else (np.nan,) * 3
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "not_recorded": int(age.size - known.size)}


def level_counts(values: np.ndarray) -> dict[str, int]:
    """level -> count, levels sorted, "unknown" read as not recorded."""
    labels = pd.Series(values, dtype=object).fillna(NOT_RECORDED).astype(str).replace("unknown", NOT_RECORDED)
    counts = labels.value_counts()
    return {str(k): int(counts[k]) for k in sorted(counts.index)}


def outcome_counts(data, rows, prow) -> dict:
    """task -> labelled prediction rows and pathways, and of them those with the outcome (binary) or the mean
    label (regression), on the rows every model is scored at (predictions.py)."""
    out = {}
    for task, spec in data.schema.tasks.items():
        src = rows if spec.level == "event" else prow
        if task not in src.masks:
            continue
        m = np.asarray(src.masks[task], dtype=bool)
        y = np.asarray(src.labels[task], dtype=np.float64)[m]
        pathways = src.pathway[m]
        entry = {"rows": int(m.sum()), "pathways": int(np.unique(pathways).size)}
        if spec.kind == "binary":
            entry["positive_rows"] = int((y == 1).sum())
            entry["positive_pathways"] = int(np.unique(pathways[y == 1]).size)
        else:
            entry["mean"] = float(y.mean()) if y.size else None
        out[task] = entry
    return out
