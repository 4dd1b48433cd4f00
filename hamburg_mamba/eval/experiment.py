"""The comparison: neural backbones, CatBoost, NEWS2 and the oracle on the same held-out prediction rows.

`run_comparison` writes an evaluation folder that `report.write_report` turns into Markdown and plots:

    predictions.parquet          held-out event rows: ids, time, hospital, subgroup columns, per task the label,
                                 its mask and per model the raw and recalibrated probability
    pathway_predictions.parquet  the same for pathway-level tasks (readmission), one row per pathway
    closure_series.parquet       held-out hospital-hours (closures.hospital_hours) with every source's score
    timeline.parquet             hourly closure risk per hospital over the whole window (primary model, oracle)
    metrics.json                 everything numeric (see `run_comparison`)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hamburg_mamba.data.splits import event_times_us
from hamburg_mamba.eval import closures as C
from hamburg_mamba.eval import metrics as M
from hamburg_mamba.eval.baselines import NEWS2_TASKS, CatBoostSettings, News2Baseline, catboost_predict, fit_catboost
from hamburg_mamba.eval.features import FeatureBuilder
from hamburg_mamba.eval.participants import study_record
from hamburg_mamba.eval.predictions import model_predictions, pathway_rows, prediction_rows
from hamburg_mamba.eval.robustness import shift_robustness

ALERT_SENSITIVITY = 0.8  # alert threshold: this sensitivity on the tuning rows, then applied to held-out
CLOSURE_TASK = f"closure_{C.ALARM_HORIZON_H}h"  # drives the hospital alarm (the monitor's default)
FAIR_BOUND = "fair_bound"  # P(label | simulator state at t): the reachable reference (data/fair_bound.py)
ORACLE = "oracle"  # the generator's clairvoyant probability: reads the future, not reachable
# Bootstrap clusters follow the label's unit (TaskSpec.group): a patient's rows, a hospital's day (a closure
# label is shared by every patient there), a unit's shift (the staffing label is the unit's next shift).
CLUSTER_OF_GROUP = {"safety": "subject", "crisis": "hospital_day", "staff": "unit_shift"}
AGE_BANDS = (0, 40, 65, 80, 200)
AGE_LABELS = ("<40", "40-64", "65-79", "80+")
SUBGROUPS = ("age_band", "sex", "triage_group", "arrival_mode", "hospital", "season")
SEX_PREFIX = "SEX//"  # the static sex fact's code (MEDS convention of the synthetic Hamburg: SEX//F, SEX//M)
# Meteorological seasons by month of the prediction time (Dec-Feb winter, ...).
SEASONS = np.array(["winter"] * 2 + ["spring"] * 3 + ["summer"] * 3 + ["autumn"] * 3 + ["winter"], dtype=object)


def _log(msg: str, t0: float) -> None:
    print(f"[evaluate {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)


def run_comparison(
    spec,
    runs: dict,
    out_dir: str | Path,
    baselines=("catboost", "news2", "oracle"),
    n_boot: int = 200,
    catboost: CatBoostSettings | None = None,
    primary: str | None = None,
    max_false_alarms_per_week: float = C.DEFAULT_MAX_FALSE_ALARMS_PER_WEEK,
    device: str = "cpu",
    timeline: bool = True,
) -> dict:
    """Evaluate trained runs (name -> run directory, or a model already loaded) and the baselines on `spec`'s
    held-out split. The schema comes from the first run directory; with loaded models only, it is fitted on
    the training split as training did."""
    from hamburg_mamba.data import DatasetSchema

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_dirs = [Path(r) for r in runs.values() if isinstance(r, (str, Path))]
    schema = DatasetSchema.load(run_dirs[0] / "schema.json") if run_dirs else None
    data = spec.connect(schema=schema)
    _log(f"connected {spec.root} ({spec.split} split)", t0)
    tasks = data.schema.tasks
    rows = {s: prediction_rows(data, s) for s in ("train", "tuning", "held_out")}
    prow = {s: pathway_rows(data, s) for s in ("train", "tuning", "held_out")}
    enc = data.encoded
    preds: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # model -> split -> task -> (R,) / (Q,)

    models = {name: _load_model(run) for name, run in runs.items()}
    for name, model in models.items():
        preds[name] = {}
        for s in ("tuning", "held_out"):
            ev, pw = model_predictions(model, data, rows[s], prow[s], device=device)
            preds[name][s] = {**ev, **pw}
        _log(f"predicted with {name} ({sum(p.numel() for p in model.parameters()):,} parameters)", t0)

    fb = FeatureBuilder(data)
    skipped_catboost: list[str] = []
    if "catboost" in baselines:
        settings = catboost or CatBoostSettings()
        X = {s: fb.table(rows[s].flat) for s in rows}
        XP = {s: fb.table(prow[s].flat) for s in prow}
        cats = fb.categorical_columns
        preds["catboost"] = {"tuning": {}, "held_out": {}}
        for task, spec_t in tasks.items():
            src, Xs = (rows, X) if spec_t.level == "event" else (prow, XP)
            tr, tu = src["train"].masks[task], src["tuning"].masks[task]
            y_tr = src["train"].labels[task][tr]
            if tr.sum() < 2 or (spec_t.kind == "binary" and y_tr.min() == y_tr.max()):
                skipped_catboost.append(task)
                continue
            model = fit_catboost(
                spec_t.kind, Xs["train"][tr], y_tr, Xs["tuning"][tu], src["tuning"].labels[task][tu], cats, settings
            )
            for s in ("tuning", "held_out"):
                preds["catboost"][s][task] = catboost_predict(model, spec_t.kind, Xs[s])
            _log(f"catboost {task}: {model.tree_count_} trees", t0)
    news2_missing = {}
    results_notes = (
        [f"catboost not fitted (training labels of one class or none): {skipped_catboost}"]
        if (skipped_catboost)
        else []
    )
    if "news2" in baselines:
        nb = News2Baseline()
        preds["news2"] = {"tuning": {}, "held_out": {}}
        scores = {}
        for s in ("tuning", "held_out"):
            scores[s], news2_missing[s] = nb.score(fb, rows[s].flat)
        for task in NEWS2_TASKS:
            if task not in tasks:
                continue
            m = rows["tuning"].masks[task]
            nb.fit(task, scores["tuning"][m], rows["tuning"].labels[task][m])
            for s in ("tuning", "held_out"):
                preds["news2"][s][task] = nb.probability(task, scores[s])
        preds["news2"]["held_out"]["news2_score"] = scores["held_out"]
    if "oracle" in baselines:
        preds[ORACLE] = {s: {**rows[s].oracle, **prow[s].oracle} for s in ("tuning", "held_out")}
        bound = _fair_bound_predictions(spec, data, rows, prow)
        if bound is not None:
            preds[FAIR_BOUND] = bound
            _log(f"fair bound of {sorted(bound['held_out'])}", t0)

    model_names = list(preds)
    # --- recalibration on tuning, metrics on held-out ---
    H = rows["held_out"]
    HP = prow["held_out"]
    clusters = {"event": _row_clusters(data, H), "pathway": {"subject": enc.subject_id[HP.pathway]}}
    feats = fb.table(H.flat)
    groups, dropped = _subgroups(data, feats, H)
    results_notes += [f"subgroup {g} dropped: one level ({level}) in the held-out rows" for g, level in dropped]
    patient_days = _patient_days(data, H)
    primary_name = primary if primary in preds else (next(iter(models)) if models else None)
    results: dict = {
        "tasks": {},
        "models": model_names,
        "n_boot": n_boot,
        "alert_sensitivity": ALERT_SENSITIVITY,
        "primary": primary_name,
        "clusters": CLUSTER_OF_GROUP,
    }
    recal_cols = {}
    for task, spec_t in tasks.items():
        src = H if spec_t.level == "event" else HP
        tu_src = rows["tuning"] if spec_t.level == "event" else prow["tuning"]
        m, mt = src.masks[task], tu_src.masks[task]
        y, yt = src.labels[task][m], tu_src.labels[task][mt]
        task_res = {
            "kind": spec_t.kind,
            "level": spec_t.level,
            "group": spec_t.group,
            "n": int(m.sum()),
            "prevalence": float(y.mean()) if y.size and spec_t.kind == "binary" else None,
            "models": {},
        }
        for name in model_names:
            if task not in preds[name].get("held_out", {}):
                continue
            p = np.asarray(preds[name]["held_out"][task], dtype=np.float64)
            if spec_t.kind == "regression":
                task_res["models"][name] = M.regression_metrics(y, p[m])
                continue
            p = np.clip(p, 0.0, 1.0)
            pt = np.clip(np.asarray(preds[name]["tuning"][task], dtype=np.float64), 0.0, 1.0)[mt]
            recal = (
                M.PlattRecalibration().fit(yt, pt) if name not in (ORACLE, FAIR_BOUND, "news2") and yt.size else None
            )
            p_recal = recal(p) if recal is not None else p
            recal_cols[(name, task)] = (p, p_recal)
            if y.size == 0 or y.min() == y.max():
                continue
            cluster = clusters[spec_t.level][_cluster_kind(spec_t)][m]
            est = M.bootstrap_binary(y, p[m], cluster=cluster, n_boot=n_boot)
            entry = {k: v.as_dict() for k, v in est.items()}
            entry["ece_recalibrated"] = M.ece(y, p_recal[m])
            entry["brier_recalibrated"] = M.brier(y, p_recal[m])
            if recal is not None:
                entry["recalibration"] = {"intercept": recal.intercept, "slope": recal.slope}
            if spec_t.level == "event":
                threshold = M.threshold_at_sensitivity(yt, pt, ALERT_SENSITIVITY) if yt.size else float("nan")
                entry["alert_burden"] = alert_burden(y, p[m], src.pathway[m], src.time_us[m], threshold, patient_days)
                entry["subgroups"] = {g: _subgroup_auroc(y, p[m], groups[g][m], cluster, n_boot) for g in groups}
            task_res["models"][name] = entry
        if spec_t.kind == "binary":
            task_res["cluster"] = _cluster_kind(spec_t)
            task_res["comparisons"] = _paired_comparisons(
                task,
                src,
                m,
                preds,
                primary_name,
                task_res["models"],
                clusters[spec_t.level][_cluster_kind(spec_t)][m],
                n_boot,
            )
        results["tasks"][task] = task_res
        _log(f"metrics {task}", t0)

    # --- robustness: held-out rows whose system state lies beyond the training range ---
    task_clusters = {t: clusters[s.level][_cluster_kind(s)] for t, s in tasks.items() if s.kind == "binary"}
    results["robustness"] = shift_robustness(data, H, HP, preds, tasks, task_clusters, n_boot)
    _log("robustness (shifted rows)", t0)

    # --- closures: hospital warnings ---
    hourly = C.read_hourly(spec.root)
    if hourly is not None and CLOSURE_TASK in tasks:
        results["closures"] = _closure_evaluation(
            spec, data, rows, preds, hourly, max_false_alarms_per_week, n_boot, primary_name, out_dir
        )
        _log("closure warnings (hospital-hours)", t0)
        if timeline:
            _timeline(data, models.get(primary_name), primary_name, hourly, out_dir, device)
            _log(f"timeline ({primary_name})", t0)
    results["notes"] = results_notes
    results["news2_missing_vitals"] = news2_missing
    results["data_report"] = data.report()
    results["split"] = spec.as_dict()
    results["periods"] = _periods(data, rows)
    results["events_held_out"] = int(enc.lengths[np.unique(H.pathway)].sum())
    results.update(study_record(data, rows, prow, _pathway_sex(data), runs, catboost or CatBoostSettings()))
    _write_predictions(out_dir, data, H, HP, recal_cols, tasks, groups, preds)
    (out_dir / "metrics.json").write_text(json.dumps(_clean(results), indent=1))
    results["seconds"] = time.perf_counter() - t0
    _log("done", t0)
    return results


# ----------------------------------------------------------------------------------------------------------


def _load_model(run):
    """A run directory's model, or `run` itself when it is a model (anything `model_predictions` can call)."""
    if not isinstance(run, (str, Path)):
        return run
    from hamburg_mamba.nn import HamburgHealthcareSafetyMamba

    return HamburgHealthcareSafetyMamba.from_pretrained(run)


def alert_burden(y, p, pathway, time_us, threshold: float, patient_days: float) -> dict:
    """The alerts a threshold (chosen on the tuning rows) raises on these rows per 100 patient-days, and the
    sensitivity it reaches here.

    An alert is an onset: a row at or above the threshold whose pathway's previous row was below it (or the
    pathway's first row), which is what a ward would be paged for.
    """
    t = threshold
    order = np.lexsort((time_us, pathway))
    on = (p >= t)[order]
    pw = pathway[order]
    first = np.r_[True, pw[1:] != pw[:-1]]
    onset = on & (first | ~np.r_[False, on[:-1]])
    return {
        "threshold": t,
        "sensitivity": float(np.mean(p[y == 1] >= t)) if (y == 1).any() else float("nan"),
        "alerts": int(onset.sum()),
        "alerting_rows": float(on.mean()),
        "alerts_per_100_patient_days": float(onset.sum() / max(patient_days, 1e-9) * 100),
    }


def _patient_days(data, rows) -> float:
    pw = data.pathways.iloc[np.unique(rows.pathway)]
    return float(((pw["end"] - pw["start"]) / pd.Timedelta(days=1)).sum())


def _subgroups(data, feats: pd.DataFrame, rows) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Subgroup label per prediction row (docs/domain.md: age band, sex, triage group, arrival mode, hospital,
    season); "unknown" where the data does not say. A subgroup with one level in these rows compares nothing
    and is returned in the second list as (name, level), not in the first. The hospital is the one the row's
    event knew, by name (a hospital outside the training vocabulary is itself)."""
    vocab = data.schema.categorical_vocab
    out = {
        "age_band": np.asarray(
            pd.cut(feats["age_years"], AGE_BANDS, labels=AGE_LABELS, right=False).astype(object).fillna("unknown"),
            dtype=object,
        )
    }
    for g in ("triage_group", "arrival_mode"):
        out[g] = np.asarray(vocab[g], dtype=object)[feats[g].to_numpy()]
    out["hospital"] = pd.Series(data.encoded.event_hospital_name[rows.flat], dtype=object).fillna("unknown").to_numpy()
    out["sex"] = _pathway_sex(data)[rows.pathway]
    out["season"] = SEASONS[pd.to_datetime(rows.time_us, unit="us").month.to_numpy() - 1]
    one_level = [(g, str(out[g][0])) for g in SUBGROUPS if len(out[g]) and len(set(out[g].tolist())) == 1]
    return {g: out[g] for g in SUBGROUPS if g not in dict(one_level)}, one_level


def _pathway_sex(data) -> np.ndarray:
    """(P,) sex per pathway from its subject's static SEX//<x> fact (repeated at the head of each pathway)."""
    enc, vocab = data.encoded, data.schema.categorical_vocab["code"]
    sex_of_code = np.array([c[len(SEX_PREFIX) :] if c.startswith(SEX_PREFIX) else "" for c in vocab], dtype=object)
    code = enc.categorical[:, list(data.schema.categorical_vocab).index("code")]
    hit = np.flatnonzero(sex_of_code[code] != "")
    out = np.full(enc.lengths.size, "unknown", dtype=object)
    out[np.searchsorted(enc.offsets, hit, side="right") - 1] = sex_of_code[code[hit]]
    return out


def _subgroup_auroc(y, p, group, cluster, n_boot: int) -> dict:
    """Per level: rows, prevalence and AUROC with its cluster-bootstrap interval (clusters as the task's)."""
    res = {}
    for g in sorted(set(group.tolist()), key=str):
        s = group == g
        a = M.bootstrap_binary(y[s], p[s], cluster=cluster[s], n_boot=n_boot, metrics=("auroc",))["auroc"]
        res[str(g)] = {
            "n": int(s.sum()),
            "prevalence": float(y[s].mean()),
            "auroc": a.value,
            "low": a.low,
            "high": a.high,
        }
    return res


def _cluster_kind(spec_t) -> str:
    return CLUSTER_OF_GROUP.get(spec_t.group, "subject")


def _row_clusters(data, rows) -> dict[str, np.ndarray]:
    """(R,) bootstrap cluster of each event row by kind: subject; hospital_day (the hospital the row knew, by
    name, and its calendar day); unit_shift (that hospital, the event's unit and its shift: rows of one shift
    share the label of the unit's next shift)."""
    from hamburg_mamba.data.synthetic import DAY_SHIFT_START_H, NIGHT_SHIFT_START_H

    enc = data.encoded
    hospital = pd.Series(enc.event_hospital_name[rows.flat], dtype=object).fillna("unknown").astype(str)
    t = pd.to_datetime(rows.time_us, unit="us")
    shifted = t - pd.Timedelta(hours=DAY_SHIFT_START_H)  # a shift day runs from 06:00 to 06:00
    night = shifted.hour >= NIGHT_SHIFT_START_H - DAY_SHIFT_START_H
    unit_col = list(data.schema.categorical_vocab).index("unit")
    unit = np.asarray(data.schema.categorical_vocab["unit"], dtype=object)[enc.categorical[rows.flat, unit_col]]
    day = pd.Series(t.strftime("%Y-%m-%d"))
    shift = pd.Series(shifted.strftime("%Y-%m-%d")) + np.where(night, "N", "D")
    return {
        "subject": enc.subject_id[rows.pathway],
        "hospital_day": (hospital + "|" + day).to_numpy(),
        "unit_shift": (hospital + "|" + pd.Series(unit).astype(str) + "|" + shift).to_numpy(),
    }


def _paired_comparisons(task, src, m, preds, primary, evaluated, cluster, n_boot) -> dict:
    """The primary model minus every other model evaluated on the task: AUROC difference with its paired
    cluster-bootstrap interval (the same resamples as every model's own interval)."""
    if primary not in evaluated:
        return {}
    y = src.labels[task][m]
    mine = np.clip(np.asarray(preds[primary]["held_out"][task], dtype=np.float64), 0, 1)[m]
    out = {}
    for other in evaluated:
        if other != primary:
            theirs = np.clip(np.asarray(preds[other]["held_out"][task], dtype=np.float64), 0, 1)[m]
            out[other] = {"auroc_difference": M.paired_difference(y, mine, theirs, cluster, n_boot).as_dict()}
    return out


def _fair_bound_predictions(spec, data, rows, prow) -> dict | None:
    """split -> task -> the fair bound at the split's rows, for the tasks the folder's bound/ covers; None
    without one. The connector reads it as the oracle of a second connection (same split, same rows)."""
    from hamburg_mamba.data.fair_bound import read_bound

    if not (Path(spec.root) / "bound").is_dir():
        return None
    bound = read_bound(spec.root)
    again = spec.connect(schema=data.schema, oracle=bound)
    out = {}
    for s in ("tuning", "held_out"):
        r, p = prediction_rows(again, s), pathway_rows(again, s)
        if not (np.array_equal(r.flat, rows[s].flat) and np.array_equal(p.pathway, prow[s].pathway)):
            raise RuntimeError(f"fair bound: the second connection laid out other {s} rows than the first")
        out[s] = {t: v for t, v in {**r.oracle, **p.oracle}.items() if t in bound}
    return out


def _closure_evaluation(spec, data, rows, preds, hourly, max_fa, n_boot, primary, out_dir) -> dict:
    """Hospital-hour evaluation of the closure warnings (closures.py): per source (models pooled by
    `closures.hospital_risk_series`, the comparators, the clairvoyant hazard) AUROC per horizon on the held-out
    hours with hospital-day clusters and the paired difference to the primary model, and the alarm (threshold
    from the tuning hours) with its uncapped lead times, alarm share and precision."""
    table = C.hospital_hours(hourly)
    period = _hour_periods(spec, rows, table)
    in_split = {s: _in_hours(table, *period[s]) for s in period}
    horizons = [k for k in C.HORIZONS_H if f"closure_{k}h" in data.schema.tasks]
    sources = _closure_sources(spec, data, rows, preds, table, period, horizons)
    held = in_split["held_out"]
    res = {
        "alarm_task": CLOSURE_TASK,
        "horizons_h": horizons,
        "refire_h": C.REFIRE_H,
        "primary": primary,
        "max_false_alarms_per_week_on_tuning": max_fa,
        "cluster": "hospital_day",
        "periods": {s: [str(lo), str(hi)] for s, (lo, hi) in period.items()},
        "hours": _hour_counts(table, held, horizons),
        "models": {},
        "notes": [],
    }
    for k in horizons:
        rows_k = held & C.scored(table, k) & C.in_period(table, *period["held_out"], k)
        finite = np.all([np.isfinite(v[k][rows_k]) for v in sources.values()], axis=0)
        if not finite.all():
            res["notes"].append(
                f"{int((~finite).sum())} held-out hospital-hours at {k} h without any "
                f"prediction of their hospital, left out for every source"
            )
        rows_k[rows_k] = finite
        y = table[f"y_{k}h"].to_numpy()[rows_k]
        cluster = C.hospital_day(table)[rows_k]
        for name, score in sources.items():
            entry = res["models"].setdefault(name, {"auroc": {}, "vs_primary": {}})
            if y.size and 0 < y.sum() < y.size:
                est = M.bootstrap_binary(y, score[k][rows_k], cluster, n_boot, metrics=("auroc", "auprc"))
                entry["auroc"][str(k)] = est["auroc"].as_dict()
                entry["auprc"] = {**entry.get("auprc", {}), str(k): est["auprc"].as_dict()}
                if primary in sources and name != primary:
                    entry["vs_primary"][str(k)] = M.paired_difference(
                        y, sources[primary][k][rows_k], score[k][rows_k], cluster, n_boot
                    ).as_dict()
    alarm_k = C.ALARM_HORIZON_H
    tuning, held_table = table[in_split["tuning"]].reset_index(drop=True), table[held].reset_index(drop=True)
    frames = []
    for name, score in sources.items():
        thr = C.choose_threshold(tuning, np.nan_to_num(score[alarm_k][in_split["tuning"]]), max_fa)
        res["models"][name].update(C.warning_summary(held_table, np.nan_to_num(score[alarm_k][held]), thr, alarm_k))
        frames.append(held_table[["hospital", "time"]].assign(model=name, risk=score[alarm_k][held]))
    if frames:
        pd.concat(frames).to_parquet(out_dir / "closure_series.parquet", index=False)
    return res


def _hour_periods(spec, rows, table) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """[lo, hi) decision hours of each period: the temporal split's cutoffs; otherwise (subject or file splits
    share the calendar) the span of the split's own prediction rows."""
    end = pd.Timestamp(table["time"].max()) + pd.Timedelta(hours=1)
    begin = pd.Timestamp(table["time"].min())
    if spec.split == "temporal" and spec.temporal_cutoffs:
        c0, c1 = (pd.Timestamp(c) for c in spec.temporal_cutoffs)
        return {"train": (begin, c0), "tuning": (c0, c1), "held_out": (c1, end)}
    out = {}
    for s, r in rows.items():
        if len(r):
            lo = pd.Timestamp(np.datetime64(int(r.time_us.min()), "us")).ceil("h")
            out[s] = (lo, pd.Timestamp(np.datetime64(int(r.time_us.max()), "us")).floor("h") + pd.Timedelta(hours=1))
    return out


def _in_hours(table, lo, hi) -> np.ndarray:
    return ((table["time"] >= lo) & (table["time"] < hi)).to_numpy()


def _hour_counts(table, held, horizons) -> dict:
    """Held-out hospital-hours: open, and per horizon scored, by design (no start possible) and unlabelled."""
    out = {"open": int(held.sum()), "closures": int(table["start"].to_numpy()[held].sum())}
    for k in horizons:
        lab = table[f"labelled_{k}h"].to_numpy() & held
        design = table[f"by_design_{k}h"].to_numpy() & lab
        out[str(k)] = {
            "scored": int((lab & ~design).sum()),
            "by_design": int(design.sum()),
            "unlabelled": int((held & ~lab).sum()),
        }
    return out


def _closure_sources(spec, data, rows, preds, table, period, horizons) -> dict[str, dict[int, np.ndarray]]:
    """source -> horizon -> (T,) score at every hospital-hour (NaN outside the tuning and held-out periods for
    the models): the models pooled from their own period's prediction rows, then the comparators fitted on
    the training period's hours, then the clairvoyant hazard."""
    enc = data.encoded
    end_us = event_times_us(data)[enc.offsets[1:] - 1]  # (P,) each pathway's last event
    out: dict[str, dict[int, np.ndarray]] = {}
    for name in preds:
        if name in (ORACLE, FAIR_BOUND) or CLOSURE_TASK not in preds[name].get("held_out", {}):
            continue
        out[name] = {k: np.full(len(table), np.nan) for k in horizons}
        for s in ("tuning", "held_out"):
            r, (lo, hi) = rows[s], period[s]
            hours = pd.date_range(lo, hi - pd.Timedelta(hours=1), freq="h")
            mine = _in_hours(table, lo, hi)
            for k in horizons:
                series = C.hospital_risk_series(
                    r.time_us,
                    enc.event_hospital_name[r.flat],
                    r.pathway,
                    np.asarray(preds[name][s][f"closure_{k}h"], np.float64),
                    hours,
                    end_us[r.pathway],
                )
                out[name][k][mine] = C.score_rows(table[mine], series)
    train = _in_hours(table, *period["train"]) if "train" in period else np.zeros(len(table), bool)
    out["always_on"] = {k: np.ones(len(table)) for k in horizons}
    hod = table["time"].dt.hour.to_numpy()
    out["time_of_day"] = (
        {
            k: C.hour_of_day_rate(table, train & C.scored(table, k) & C.in_period(table, *period["train"], k), k)[hod]
            for k in horizons
        }
        if train.any()
        else {}
    )
    trend = _nedocs_trend(spec, data, table)
    if trend is not None and train.any():
        out["nedocs_trend"] = {}
        for k in horizons:
            fit = train & C.scored(table, k) & C.in_period(table, *period["train"], k) & np.isfinite(trend)
            a, b = M.fit_logistic(trend[fit], table[f"y_{k}h"].to_numpy()[fit].astype(np.float64))
            # a missing feed value (the first hour) is the hospital at its normal: trend 0
            out["nedocs_trend"][k] = M.sigmoid(a + b * np.nan_to_num(trend, nan=0.0))
    if not out["time_of_day"]:
        del out["time_of_day"]
    out["clairvoyant"] = {k: table[f"clairvoyant_{k}h"].to_numpy() for k in horizons}
    return out


def _nedocs_trend(spec, data, table) -> np.ndarray | None:
    """(T,) NEDOCS minus its 4-week trailing mean as the connector attaches it (`trend:nedocs`, the feed's lag
    and maximum age) at each hospital-hour; None when the model's schema reads no NEDOCS."""
    from hamburg_mamba.data import system_state as SS
    from hamburg_mamba.data.validate import Accounting

    schema = data.schema
    if "nedocs" not in (schema.status_columns or ()):
        return None
    feed = pd.read_parquet(
        Path(spec.root) / "system" / "hospital_hourly.parquet", columns=["hospital", "time", "nedocs"]
    )
    acc = Accounting()
    checked = SS.check_status_table(feed, ["nedocs"], acc)
    times = table["time"].to_numpy().astype("datetime64[us]").astype(np.int64)
    values = SS.status_features(
        checked,
        ["nedocs"],
        table["hospital"].to_numpy(object),
        times,
        np.ones(len(table), bool),
        acc,
        lag_h=schema.status_lag_h,
        max_age_h=schema.status_max_age_h,
    )
    return values[:, 1]  # (T,) trend:nedocs (status columns first, then their trends)


def _timeline(data, model, name, hourly, out_dir, device) -> None:
    """Hourly closure risk per hospital over the whole window (every split; train/tuning are in-sample), for
    the primary model and the oracle, plus the closure starts for the plot."""
    from hamburg_mamba.eval.predictions import PredictionRows

    parts = [prediction_rows(data, s, tasks=[CLOSURE_TASK]) for s in ("train", "tuning", "held_out")]
    allr = PredictionRows(
        split="all",
        **{
            k: np.concatenate([getattr(p, k) for p in parts]) for k in ("flat", "pathway", "pos", "time_us", "hospital")
        },
        labels={CLOSURE_TASK: np.concatenate([p.labels[CLOSURE_TASK] for p in parts])},
        masks={CLOSURE_TASK: np.concatenate([p.masks[CLOSURE_TASK] for p in parts])},
        oracle={CLOSURE_TASK: np.concatenate([p.oracle[CLOSURE_TASK] for p in parts])}
        if all(CLOSURE_TASK in p.oracle for p in parts)
        else {},
    )
    enc = data.encoded
    hours = pd.DatetimeIndex(sorted(hourly["time"].unique()))
    end_us = event_times_us(data)[enc.offsets[1:] - 1]
    frames = []
    sources = {}
    if model is not None:
        ev, _ = model_predictions(model, data, allr, None, device=device)
        sources[name] = ev[CLOSURE_TASK]
    if CLOSURE_TASK in allr.oracle:
        sources[ORACLE] = allr.oracle[CLOSURE_TASK]
    for src, risk in sources.items():
        s = C.hospital_risk_series(
            allr.time_us,
            enc.event_hospital_name[allr.flat],
            allr.pathway,
            np.asarray(risk, np.float64),
            hours,
            end_us[allr.pathway],
        )
        f = s.stack().rename("risk").reset_index()
        f.columns = ["time", "hospital", "risk"]
        f["model"] = src
        frames.append(f)
    if frames:
        pd.concat(frames).to_parquet(out_dir / "timeline.parquet", index=False)
    starts = hourly.loc[hourly["closure_start"], ["hospital", "time"]].astype({"hospital": str})
    starts.to_parquet(out_dir / "closures.parquet", index=False)


def _periods(data, rows) -> dict:
    out = {}
    for s, r in rows.items():
        if len(r):
            out[s] = [str(np.datetime64(int(r.time_us.min()), "us")), str(np.datetime64(int(r.time_us.max()), "us"))]
    out["hospitals"] = {str(i): name for i, name in enumerate(data.schema.categorical_vocab["hospital"])}
    return out


def _write_predictions(out_dir, data, H, HP, recal_cols, tasks, groups, preds) -> None:
    enc = data.encoded
    cols = {
        "pathway_id": enc.pathway_id[H.pathway],
        "subject_id": enc.subject_id[H.pathway],
        "time": np.asarray(H.time_us).astype("datetime64[us]"),
        "hospital_id": H.hospital,
    }
    cols.update({g: v.astype(str) for g, v in groups.items()})
    pcols = {"pathway_id": enc.pathway_id[HP.pathway], "subject_id": enc.subject_id[HP.pathway]}
    for task, spec_t in tasks.items():
        target = cols if spec_t.level == "event" else pcols
        src = H if spec_t.level == "event" else HP
        target[f"{task}|label"] = src.labels[task]
        target[f"{task}|mask"] = src.masks[task]
        for name in preds:
            if (name, task) in recal_cols:
                raw, rec = recal_cols[(name, task)]
                target[f"{task}|{name}"] = raw
                target[f"{task}|{name}|recal"] = rec
            elif task in preds[name].get("held_out", {}):
                target[f"{task}|{name}"] = np.asarray(preds[name]["held_out"][task], dtype=np.float64)
    if "news2" in preds and "news2_score" in preds["news2"]["held_out"]:
        cols["news2_score"] = preds["news2"]["held_out"]["news2_score"]
    pd.DataFrame(cols).to_parquet(out_dir / "predictions.parquet", index=False)
    pd.DataFrame(pcols).to_parquet(out_dir / "pathway_predictions.parquet", index=False)


def _clean(x):
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
