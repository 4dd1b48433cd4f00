"""Do the warnings hold up in a crisis? Every model's discrimination and calibration on the held-out rows whose
system state lies beyond the training range, next to the other held-out rows, and its saturation on rare tasks.

Glossary: R held-out prediction rows of one task (event rows, or one row per pathway for pathway tasks), F the
status features (`DatasetSchema.numeric_features` after NUMERIC_FEATURES).

Shifted rows. The connector turns each raw status value into a bounded rank (`schema.BoundedRank`): the
training split's CDF, 0 at its minimum and 1 at its maximum, plus an excess term that is non-zero exactly
outside the training range. A row is *shifted* when any of its status inputs lies outside [0, 1], that is when
the hospital's state at the row (its level or its 4-week trend) was beyond anything the training period showed.
The rest are the held-out rows within the training range (or without a status feed).

A model's calibration *breaks* under the shift when, on the shifted rows, both
  - the 95 % cluster-bootstrap interval of the calibration slope excludes 1 (the spread of its risks is wrong)
    or that of the calibration intercept (calibration-in-the-large) excludes 0 (its level is wrong), beyond
    sampling noise; a shift typically moves the level first (more closures in a stronger crisis: the demo's
    models trained on the demo city under-predicted closure_6h on the stress city's shifted rows, mean 0.12
    against a rate of 0.18, intercept 0.53 (0.04-1.04), slope interval holding 1), and
  - the ECE is more than ECE_BREAK_RATIO times its ECE on the rest (the error is the shift's, not the model's
    everyday miscalibration, which the main tables show).
Either alone is common and uninformative: a slope interval excludes 1 for most models on 30 k rows, and the
ECE of a few hundred rows is inflated by binning noise. No verdict is given on fewer than MIN_CLUSTERS bootstrap
clusters among the shifted rows: resampling two or three clusters (the 36 shifted rows of the demo's closure
task fell on a few hospital-days) gives intervals far narrower than the truth.

Saturation. On a task with prevalence below RARE_PREVALENCE, a model whose predictions are calibrated can put
at most prevalence / SATURATION_P of the rows above SATURATION_P (at least SATURATION_P of those rows would have
to be positive). A larger share is a miscalibration no recalibration on normal times reveals: the model
saturates. It is reported for every rare task and model, and warned about beyond that bound.
"""

from __future__ import annotations

import numpy as np

from hamburg_mamba.data.schema import NUMERIC_FEATURES
from hamburg_mamba.eval import metrics as M

SATURATION_P = 0.9  # a "certain" warning: above this on a rare outcome
RARE_PREVALENCE = 0.05  # tasks rarer than this are checked for saturation
ECE_BREAK_RATIO = 2.0  # shifted-row ECE above this multiple of the rest's (with the slope test) = breaks
MIN_CLUSTERS = 10  # fewest bootstrap clusters among the shifted rows for a verdict
METRICS = ("auroc", "ece", "calibration_slope", "calibration_intercept")
# The stress city's crisis, as SyntheticConfig changes: a heat wave twice the default's nine days, and a flu wave
# twice the severe-week share (the 8 % severe-week flu share of ED visits, docs/domain.md) and half again as
# wide, so the held-out state runs further beyond the training range than the demo city's.
STRESS_CHANGES = {"heat_wave_days": 18, "flu_peak_share": 0.16, "flu_width_days": 21.0}


def shifted_rows(data, flat: np.ndarray) -> np.ndarray:
    """(R,) bool: the event at each flat index has a status input outside the training range, i.e. a bounded
    rank outside [0, 1] (missing inputs are not shifted)."""
    enc = data.encoded
    first = len(NUMERIC_FEATURES)
    x = enc.numeric[flat, first:]  # (R, F)
    present = ~enc.numeric_missing[flat, first:]  # (R, F)
    return (((x < 0) | (x > 1)) & present).any(axis=1)


def shift_robustness(data, rows, prows, preds: dict, tasks: dict, clusters: dict, n_boot: int, seed: int = 0) -> dict:
    """Every binary task and model on the held-out rows: shifted rows against the rest (`compare_parts`) and
    the saturation shares (`saturation`). rows / prows: the held-out PredictionRows / PathwayRows; preds: model ->
    split -> task -> (R,) probabilities; clusters: task -> (R,) bootstrap cluster of each row (the main tables'
    clusters)."""
    shifted = {"event": shifted_rows(data, rows.flat), "pathway": shifted_rows(data, prows.flat)}
    out = {
        "shifted_rows": {
            level: {"n": int(s.sum()), "share": float(s.mean()) if s.size else None} for level, s in shifted.items()
        },
        "ece_break_ratio": ECE_BREAK_RATIO,
        "saturation_p": SATURATION_P,
        "rare_prevalence": RARE_PREVALENCE,
        "tasks": {},
    }
    for task, spec in tasks.items():
        if spec.kind != "binary" or task not in clusters:
            continue
        src = rows if spec.level == "event" else prows
        m = src.masks[task]
        y, part = src.labels[task][m].astype(np.float64), shifted[spec.level][m]
        if y.size == 0:
            continue
        entry = {"prevalence": float(y.mean()), "models": {}}
        for name, by_split in preds.items():
            if task not in by_split.get("held_out", {}):
                continue
            p = np.clip(np.asarray(by_split["held_out"][task], dtype=np.float64)[m], 0.0, 1.0)
            result = compare_parts(y, p, part, clusters[task][m], n_boot, seed)
            if entry["prevalence"] < RARE_PREVALENCE:
                result["saturation"] = saturation(y, p, part)
            entry["models"][name] = result
        out["tasks"][task] = entry
    return out


def compare_parts(y, p, shifted, cluster, n_boot: int, seed: int = 0) -> dict:
    """Metrics of p on the shifted rows (with cluster-bootstrap intervals) and on the rest (point estimates),
    and whether the calibration breaks (`calibration_breaks`). y, p, shifted, cluster: (R,)."""
    shifted = np.asarray(shifted, dtype=bool)
    out = {
        "shifted": _part_metrics(y[shifted], p[shifted], cluster[shifted], n_boot, seed),
        "rest": _part_metrics(y[~shifted], p[~shifted], None, 0, seed),
    }
    out["shifted"]["clusters"] = int(np.unique(cluster[shifted]).size)
    out["breaks"] = calibration_breaks(out["shifted"], out["rest"])
    return out


def _part_metrics(y, p, cluster, n_boot: int, seed: int) -> dict:
    """n, positives, mean prediction, and METRICS as {value, low, high} (intervals only with n_boot > 0);
    metrics are absent where one class is missing (AUROC and the calibration fit are undefined)."""
    out = {"n": int(y.size), "positives": int(y.sum()), "mean_p": float(p.mean()) if y.size else None}
    if y.size == 0 or y.min() == y.max():
        return out
    if n_boot > 0:
        est = M.bootstrap_binary(y, p, cluster=cluster, n_boot=n_boot, seed=seed)
        out.update({k: est[k].as_dict() for k in METRICS})
    else:
        point = M.binary_metrics(y, p)
        out.update({k: {"value": point[k], "low": None, "high": None} for k in METRICS})
    return out


def calibration_breaks(shifted: dict, rest: dict) -> bool:
    """On the shifted part the calibration slope interval excludes 1 or the intercept interval excludes 0, and the
    ECE exceeds ECE_BREAK_RATIO times the rest's (module docstring); False where either part lacks the metrics,
    the shifted rows hold fewer than MIN_CLUSTERS clusters, or neither interval is defined."""
    if "ece" not in shifted or "ece" not in rest or shifted.get("clusters", 0) < MIN_CLUSTERS:
        return False
    off = [
        _interval_excludes(shifted.get(key), ideal)
        for key, ideal in (("calibration_slope", 1.0), ("calibration_intercept", 0.0))
    ]
    return bool(any(off) and _number(shifted["ece"]["value"]) > ECE_BREAK_RATIO * _number(rest["ece"]["value"]))


def _interval_excludes(estimate: dict | None, ideal: float) -> bool:
    """The estimate's bootstrap interval is defined and does not hold `ideal`."""
    if not estimate:
        return False
    low, high = _number(estimate.get("low")), _number(estimate.get("high"))
    return bool(np.isfinite(low) and np.isfinite(high) and not low <= ideal <= high)


def saturation(y, p, shifted) -> dict:
    """Share of rows with p > SATURATION_P, on all rows, the shifted ones and the rest; and the most a calibrated
    model could have (prevalence / SATURATION_P, on all rows)."""
    shifted = np.asarray(shifted, dtype=bool)
    above = p > SATURATION_P

    def share(rows) -> float | None:
        return float(above[rows].mean()) if rows.any() else None

    everything = np.ones(y.size, dtype=bool)
    return {
        "all": share(everything),
        "shifted": share(shifted),
        "rest": share(~shifted),
        "calibrated_max": float(y.mean()) / SATURATION_P,
    }


def warning_lines(robustness: dict) -> list[str]:
    """One line per model and task whose calibration breaks on the shifted rows, or which saturates."""
    lines = []
    for task, entry in robustness.get("tasks", {}).items():
        for name, r in entry["models"].items():
            if r.get("breaks"):
                s, rest = r["shifted"], r["rest"]
                lines.append(
                    f"WARNING {name} on {task}: calibration breaks on the {s['n']} shifted rows (slope "
                    f"{_interval(s, 'calibration_slope')}, intercept {_interval(s, 'calibration_intercept')}; mean "
                    f"prediction {s['mean_p']:.3f} vs rate {s['positives'] / s['n']:.3f}; ECE "
                    f"{s['ece']['value']:.4f} vs {rest['ece']['value']:.4f} on the rest)"
                )
            sat = r.get("saturation")
            if sat and sat["all"] is not None and sat["all"] > sat["calibrated_max"]:
                lines.append(
                    f"WARNING {name} on {task}: {100 * sat['all']:.1f} % of held-out predictions above "
                    f"{SATURATION_P:g} at prevalence {entry['prevalence']:.4f} (a calibrated model: at most "
                    f"{100 * sat['calibrated_max']:.1f} %); saturated"
                )
    return lines


def stress_test(
    runs: dict, root, base=None, changes: dict | None = None, spec=None, n_boot: int = 100, device: str = "cpu"
) -> dict:
    """The trained runs on a stress city: `base` (a SyntheticConfig; default the demo city's) with a stronger crisis
    (`changes`, default STRESS_CHANGES), generated into `root`, connected with the first run's schema and split
    (or `spec`'s), every run predicting the held-out rows; returns `shift_robustness` of them with the oracle
    beside the models, plus the generator changes used. runs: name -> run folder. The report renders the result
    with `report_section(result, title=...)`."""
    import dataclasses

    from hamburg_mamba.data import DatasetSchema, SyntheticConfig, generate_synthetic, write_synthetic
    from hamburg_mamba.data.splits import DataSpec
    from hamburg_mamba.eval.experiment import _cluster_kind, _load_model, _row_clusters
    from hamburg_mamba.eval.predictions import model_predictions, pathway_rows, prediction_rows

    if not runs:
        raise ValueError("stress_test: runs: expected at least one NAME -> run folder")
    changes = dict(STRESS_CHANGES if changes is None else changes)
    config = dataclasses.replace(base or SyntheticConfig(), **changes)
    write_synthetic(root, generate_synthetic(config))
    first = next(iter(runs.values()))
    spec = dataclasses.replace(spec or DataSpec.load(first), root=str(root))
    data = spec.connect(schema=DatasetSchema.load(f"{first}/schema.json"))
    rows, prows = prediction_rows(data, "held_out"), pathway_rows(data, "held_out")
    preds = {}
    for name, run in runs.items():
        events, pathways = model_predictions(_load_model(run), data, rows, prows, device=device)
        preds[name] = {"held_out": {**events, **pathways}}
    preds["oracle"] = {"held_out": {**rows.oracle, **prows.oracle}}
    tasks = data.schema.tasks
    clusters = {"event": _row_clusters(data, rows), "pathway": {"subject": data.encoded.subject_id[prows.pathway]}}
    task_clusters = {t: clusters[s.level][_cluster_kind(s)] for t, s in tasks.items() if s.kind == "binary"}
    result = shift_robustness(data, rows, prows, preds, tasks, task_clusters, n_boot)
    return {**result, "changes": changes}


def report_section(
    metrics: dict, title: str = "Robustness: held-out rows beyond the training range", key: str = "robustness"
) -> list[str]:
    """Markdown lines for the report: the shifted rows, one table row per task and model, the warnings.
    metrics[key] is a `shift_robustness` (or `stress_test`) result."""
    rob = metrics.get(key)
    if not rob:
        return []
    share = rob["shifted_rows"]["event"]
    out = [f"## {title}", ""]
    if rob.get("changes"):
        out += [f"Stress city: the generator's crisis changed by {rob['changes']}.", ""]
    out += [
        f"Shifted rows: a status input (hospital state or its trend) outside the training range: "
        f"{share['n']} event rows ({100 * (share['share'] or 0):.1f} %). Calibration breaks where the shifted "
        f"rows' calibration slope interval excludes 1 or their intercept interval excludes 0, and their ECE "
        f"exceeds {rob['ece_break_ratio']:g}x the rest's (at least {MIN_CLUSTERS} bootstrap clusters); "
        f"saturation: share of predictions above {rob['saturation_p']:g} on tasks with prevalence "
        f"< {100 * rob['rare_prevalence']:g} % (calibrated: at most prevalence / {rob['saturation_p']:g}). "
        "Raw (not recalibrated) probabilities.",
        "",
        "| task | model | n shifted (clusters) / rest | AUROC shifted / rest | ECE shifted / rest | cal. slope shifted "
        "(95 % CI) / rest | > 0.9 share (max calibrated) | breaks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, entry in rob["tasks"].items():
        for name, r in entry["models"].items():
            s, rest, sat = r["shifted"], r["rest"], r.get("saturation")
            sat_cell = "-" if not sat else f"{_pct(sat['all'])} ({_pct(sat['calibrated_max'])})"
            out.append(
                f"| {task} | {name} | {s['n']} ({s.get('clusters', 0)} clusters) / {rest['n']} | "
                f"{_value(s, 'auroc')} / {_value(rest, 'auroc')} "
                f"| {_value(s, 'ece', 4)} / {_value(rest, 'ece', 4)} | {_interval(s, 'calibration_slope')} / "
                f"{_value(rest, 'calibration_slope', 2)} | {sat_cell} | {'yes' if r['breaks'] else 'no'} |"
            )
    warnings = warning_lines(rob)
    out += [""] + ([f"- {w}" for w in warnings] or ["- no model's calibration breaks or saturates here"]) + [""]
    return out


def _number(x) -> float:
    """A metric read back from JSON: None (NaN written by the evaluation) as NaN."""
    return float("nan") if x is None else float(x)


def _value(part: dict, key: str, digits: int = 3) -> str:
    return "n/a" if key not in part else M.Estimate(_number(part[key]["value"]), np.nan, np.nan).fmt(digits)


def _interval(part: dict, key: str, digits: int = 2) -> str:
    if key not in part:
        return "n/a"
    return M.Estimate(*(_number(part[key][k]) for k in ("value", "low", "high"))).fmt(digits)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"
