"""The comparison: neural backbones, CatBoost, NEWS2 and the oracle on the same held-out prediction rows.

`run_comparison` writes an evaluation folder that `report.write_report` turns into Markdown and plots:

    predictions.parquet          held-out event rows: ids, time, hospital, subgroup columns, per task the label,
                                 its mask and per model the raw and recalibrated probability
    pathway_predictions.parquet  the same for pathway-level tasks (readmission), one row per pathway
    closure_series.parquet       hourly closure risk per hospital and model, held-out period
    timeline.parquet             hourly closure risk per hospital over the whole window (primary model, oracle)
    metrics.json                 everything numeric (see `run_comparison`)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hamburg_mamba.eval import closures as C
from hamburg_mamba.eval import metrics as M
from hamburg_mamba.eval.baselines import NEWS2_TASKS, CatBoostSettings, News2Baseline, catboost_predict, fit_catboost
from hamburg_mamba.eval.features import FeatureBuilder
from hamburg_mamba.eval.predictions import model_predictions, pathway_rows, prediction_rows

ALERT_SENSITIVITY = 0.8  # alert burden is reported at this sensitivity (threshold set on the held-out rows)
CLOSURE_TASK = "closure_6h"  # drives the hospital warning (the monitor's default: the shortest horizon)
AGE_BANDS = (0, 40, 65, 80, 200)
AGE_LABELS = ("<40", "40-64", "65-79", "80+")
SUBGROUPS = ("age_band", "sex", "triage_group", "arrival_mode", "hospital", "season")
SEX_PREFIX = "SEX//"  # the static sex fact's code (MEDS convention of the synthetic Hamburg: SEX//F, SEX//M)
# Meteorological seasons by month of the prediction time (Dec-Feb winter, ...).
SEASONS = np.array(["winter"] * 2 + ["spring"] * 3 + ["summer"] * 3 + ["autumn"] * 3 + ["winter"], dtype=object)


def _log(msg: str, t0: float) -> None:
    print(f"[evaluate {time.perf_counter() - t0:6.1f}s] {msg}", flush=True)


def run_comparison(spec, runs: dict, out_dir: str | Path, baselines=("catboost", "news2", "oracle"),
                   n_boot: int = 200, catboost: CatBoostSettings | None = None, primary: str | None = None,
                   max_false_alarms_per_week: float = C.DEFAULT_MAX_FALSE_ALARMS_PER_WEEK, device: str = "cpu",
                   timeline: bool = True) -> dict:
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
    binary = [t for t, s in tasks.items() if s.kind == "binary"]
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
            model = fit_catboost(spec_t.kind, Xs["train"][tr], y_tr, Xs["tuning"][tu],
                                 src["tuning"].labels[task][tu], cats, settings)
            for s in ("tuning", "held_out"):
                preds["catboost"][s][task] = catboost_predict(model, spec_t.kind, Xs[s])
            _log(f"catboost {task}: {model.tree_count_} trees", t0)
    news2_missing = {}
    results_notes = [f"catboost not fitted (training labels of one class or none): {skipped_catboost}"] if (
        skipped_catboost) else []
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
        preds["oracle"] = {s: {**rows[s].oracle, **prow[s].oracle} for s in ("tuning", "held_out")}

    model_names = list(preds)
    # --- recalibration on tuning, metrics on held-out ---
    H = rows["held_out"]
    HP = prow["held_out"]
    subject = {"event": enc.subject_id[H.pathway], "pathway": enc.subject_id[HP.pathway]}
    feats = fb.table(H.flat)
    groups = _subgroups(data, feats, H)
    patient_days = _patient_days(data, H)
    results: dict = {"tasks": {}, "models": model_names, "n_boot": n_boot, "alert_sensitivity": ALERT_SENSITIVITY}
    recal_cols = {}
    for task, spec_t in tasks.items():
        src = H if spec_t.level == "event" else HP
        tu_src = rows["tuning"] if spec_t.level == "event" else prow["tuning"]
        m, mt = src.masks[task], tu_src.masks[task]
        y, yt = src.labels[task][m], tu_src.labels[task][mt]
        task_res = {"kind": spec_t.kind, "level": spec_t.level, "group": spec_t.group, "n": int(m.sum()),
                    "prevalence": float(y.mean()) if y.size and spec_t.kind == "binary" else None, "models": {}}
        for name in model_names:
            if task not in preds[name].get("held_out", {}):
                continue
            p = np.asarray(preds[name]["held_out"][task], dtype=np.float64)
            if spec_t.kind == "regression":
                task_res["models"][name] = M.regression_metrics(y, p[m])
                continue
            p = np.clip(p, 0.0, 1.0)
            pt = np.clip(np.asarray(preds[name]["tuning"][task], dtype=np.float64), 0.0, 1.0)[mt]
            recal = M.PlattRecalibration().fit(yt, pt) if name not in ("oracle", "news2") and yt.size else None
            p_recal = recal(p) if recal is not None else p
            recal_cols[(name, task)] = (p, p_recal)
            if y.size == 0 or y.min() == y.max():
                continue
            est = M.bootstrap_binary(y, p[m], cluster=subject[spec_t.level][m], n_boot=n_boot)
            entry = {k: v.as_dict() for k, v in est.items()}
            entry["ece_recalibrated"] = M.ece(y, p_recal[m])
            entry["brier_recalibrated"] = M.brier(y, p_recal[m])
            if recal is not None:
                entry["recalibration"] = {"intercept": recal.intercept, "slope": recal.slope}
            if spec_t.level == "event":
                entry["alert_burden"] = alert_burden(y, p[m], src.pathway[m], src.time_us[m], ALERT_SENSITIVITY,
                                                     patient_days)
                entry["subgroups"] = {g: _subgroup_auroc(y, p[m], groups[g][m]) for g in SUBGROUPS}
            task_res["models"][name] = entry
        results["tasks"][task] = task_res
        _log(f"metrics {task}", t0)

    # --- closures: hospital warnings ---
    lookup = data.schema.lookup["hospital"]
    closures = C.closure_starts_from_system(spec.root, lookup)
    if closures is not None and CLOSURE_TASK in tasks:
        results["closures"] = _closure_evaluation(data, rows, preds, closures, max_false_alarms_per_week, out_dir)
        _log("closure warnings", t0)
        if timeline:
            prim = primary or (next(iter(models)) if models else None)
            _timeline(data, models.get(prim), prim, closures, out_dir, device)
            _log(f"timeline ({prim})", t0)
    results["notes"] = results_notes
    results["news2_missing_vitals"] = news2_missing
    results["data_report"] = data.report()
    results["split"] = spec.as_dict()
    results["periods"] = _periods(data, rows)
    results["events_held_out"] = int(enc.lengths[np.unique(H.pathway)].sum())
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


def alert_burden(y, p, pathway, time_us, sensitivity: float, patient_days: float) -> dict:
    """Threshold reaching `sensitivity` on these rows, and the alerts it raises per 100 patient-days.

    An alert is an onset: a row at or above the threshold whose pathway's previous row was below it (or the
    pathway's first row), which is what a ward would be paged for.
    """
    t = M.threshold_at_sensitivity(y, p, sensitivity)
    order = np.lexsort((time_us, pathway))
    on = (p >= t)[order]
    pw = pathway[order]
    first = np.r_[True, pw[1:] != pw[:-1]]
    onset = on & (first | ~np.r_[False, on[:-1]])
    return {"threshold": t, "alerts": int(onset.sum()), "alerting_rows": float(on.mean()),
            "alerts_per_100_patient_days": float(onset.sum() / max(patient_days, 1e-9) * 100)}


def _patient_days(data, rows) -> float:
    pw = data.pathways.iloc[np.unique(rows.pathway)]
    return float(((pw["end"] - pw["start"]) / pd.Timedelta(days=1)).sum())


def _subgroups(data, feats: pd.DataFrame, rows) -> dict[str, np.ndarray]:
    """Subgroup label per prediction row (DOMAIN.md: age band, sex, triage group, arrival mode, hospital,
    season); "unknown" where the data does not say."""
    vocab = data.schema.categorical_vocab
    out = {"age_band": np.asarray(pd.cut(feats["age_years"], AGE_BANDS, labels=AGE_LABELS, right=False)
                                  .astype(object).fillna("unknown"), dtype=object)}
    for g in ("triage_group", "arrival_mode", "hospital"):
        out[g] = np.asarray(vocab[g], dtype=object)[feats[g].to_numpy()]
    out["sex"] = _pathway_sex(data)[rows.pathway]
    out["season"] = SEASONS[pd.to_datetime(rows.time_us, unit="us").month.to_numpy() - 1]
    return {g: out[g] for g in SUBGROUPS}


def _pathway_sex(data) -> np.ndarray:
    """(P,) sex per pathway from its subject's static SEX//<x> fact (repeated at the head of each pathway)."""
    enc, vocab = data.encoded, data.schema.categorical_vocab["code"]
    sex_of_code = np.array([c[len(SEX_PREFIX):] if c.startswith(SEX_PREFIX) else "" for c in vocab], dtype=object)
    code = enc.categorical[:, list(data.schema.categorical_vocab).index("code")]
    hit = np.flatnonzero(sex_of_code[code] != "")
    out = np.full(enc.lengths.size, "unknown", dtype=object)
    out[np.searchsorted(enc.offsets, hit, side="right") - 1] = sex_of_code[code[hit]]
    return out


def _subgroup_auroc(y, p, group) -> dict:
    res = {}
    for g in sorted(set(group.tolist()), key=str):
        s = group == g
        res[str(g)] = {"n": int(s.sum()), "prevalence": float(y[s].mean()), "auroc": M.auroc(y[s], p[s])}
    return res


def _closure_evaluation(data, rows, preds, closures, max_fa, out_dir) -> dict:
    res = {"task": CLOSURE_TASK, "lookback_h": C.LOOKBACK_H, "max_false_alarms_per_week_on_tuning": max_fa,
           "models": {}}
    series_frames = []
    for name in preds:
        if CLOSURE_TASK not in preds[name].get("held_out", {}):
            continue
        per_split = {}
        for s in ("tuning", "held_out"):
            r = rows[s]
            hours = _hours(r.time_us)
            per_split[s] = C.hospital_risk_series(r.time_us, r.hospital, r.pathway,
                                                  np.asarray(preds[name][s][CLOSURE_TASK], dtype=np.float64), hours)
        thr = C.choose_threshold(per_split["tuning"], _within(closures, per_split["tuning"].index), max_fa)
        res["models"][name] = C.summarize(per_split["held_out"], _within(closures, per_split["held_out"].index), thr)
        f = per_split["held_out"].stack().rename("risk").reset_index()
        f.columns = ["time", "hospital_id", "risk"]
        f["model"] = name
        series_frames.append(f)
    if series_frames:
        pd.concat(series_frames).to_parquet(out_dir / "closure_series.parquet", index=False)
    return res


def _hours(time_us) -> pd.DatetimeIndex:
    lo = pd.Timestamp(np.datetime64(int(time_us.min()), "us")).ceil("h")
    hi = pd.Timestamp(np.datetime64(int(time_us.max()), "us")).floor("h")
    return pd.date_range(lo, hi, freq="h")


def _within(closures, hours) -> dict:
    return {h: t[(t >= hours[0]) & (t <= hours[-1])] for h, t in closures.items()}


def _timeline(data, model, name, closures, out_dir, device) -> None:
    """Hourly closure risk per hospital over the whole window (every split; train/tuning are in-sample), for
    the primary model and the oracle, plus the crisis drivers for shading."""
    from hamburg_mamba.eval.predictions import PredictionRows

    parts = [prediction_rows(data, s, tasks=[CLOSURE_TASK]) for s in ("train", "tuning", "held_out")]
    allr = PredictionRows(split="all", **{k: np.concatenate([getattr(p, k) for p in parts]) for k in (
        "flat", "pathway", "pos", "time_us", "hospital")},
        labels={CLOSURE_TASK: np.concatenate([p.labels[CLOSURE_TASK] for p in parts])},
        masks={CLOSURE_TASK: np.concatenate([p.masks[CLOSURE_TASK] for p in parts])},
        oracle={CLOSURE_TASK: np.concatenate([p.oracle[CLOSURE_TASK] for p in parts])} if all(
            CLOSURE_TASK in p.oracle for p in parts) else {})
    hours = _hours(allr.time_us)
    frames = []
    sources = {}
    if model is not None:
        ev, _ = model_predictions(model, data, allr, None, device=device)
        sources[name] = ev[CLOSURE_TASK]
    if CLOSURE_TASK in allr.oracle:
        sources["oracle"] = allr.oracle[CLOSURE_TASK]
    for src, risk in sources.items():
        s = C.hospital_risk_series(allr.time_us, allr.hospital, allr.pathway, np.asarray(risk, np.float64), hours)
        f = s.stack().rename("risk").reset_index()
        f.columns = ["time", "hospital_id", "risk"]
        f["model"] = src
        frames.append(f)
    if frames:
        pd.concat(frames).to_parquet(out_dir / "timeline.parquet", index=False)
    starts = [(h, t) for h, ts in closures.items() for t in ts]
    pd.DataFrame(starts, columns=["hospital_id", "time"]).to_parquet(out_dir / "closures.parquet", index=False)


def _periods(data, rows) -> dict:
    out = {}
    for s, r in rows.items():
        if len(r):
            out[s] = [str(np.datetime64(int(r.time_us.min()), "us")), str(np.datetime64(int(r.time_us.max()), "us"))]
    out["hospitals"] = {str(i): name for i, name in enumerate(data.schema.categorical_vocab["hospital"])}
    return out


def _write_predictions(out_dir, data, H, HP, recal_cols, tasks, groups, preds) -> None:
    enc = data.encoded
    cols = {"pathway_id": enc.pathway_id[H.pathway], "subject_id": enc.subject_id[H.pathway],
            "time": np.asarray(H.time_us).astype("datetime64[us]"), "hospital_id": H.hospital}
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
