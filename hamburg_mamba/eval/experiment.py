"""The comparison: neural backbones, CatBoost, NEWS2 and the oracle on the same held-out prediction rows.

`run_comparison` writes an evaluation folder that `report.write_report` turns into Markdown and plots:

    predictions.parquet          held-out event rows: ids, time, hospital, subgroup columns, per task the label,
                                 its mask and per model the raw and recalibrated probability
    pathway_predictions.parquet  the same for pathway-level tasks (readmission), one row per pathway
    closure_series.parquet       held-out hospital-hours (closures.hospital_hours) with every source's score
    timeline.parquet             hourly closure risk per hospital over the whole window (primary model, oracle)
    metrics.json                 everything numeric (see `run_comparison`)
    external/<city>/             per external city (`run_comparison(external=...)`): its predictions.parquet,
                                 pathway_predictions.parquet and closure_series.parquet, every pathway of the
                                 city scored (metrics under metrics.json's "external")
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hamburg_mamba.data.splits import MEDS_MARKER, DataSpec, event_times_us
from hamburg_mamba.eval import closures as C
from hamburg_mamba.eval import metrics as M
from hamburg_mamba.eval.baselines import NEWS2_TASKS, CatBoostSettings, News2Baseline, catboost_predict, fit_catboost
from hamburg_mamba.eval.features import FeatureBuilder
from hamburg_mamba.eval.participants import participant_table, study_record
from hamburg_mamba.eval.predictions import (
    PathwayRows,
    PredictionRows,
    model_predictions,
    pathway_rows,
    prediction_rows,
)
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


# An external city is evaluated whole: a temporal split with both cut-offs before any data puts every subject in
# held_out (train < c0 <= tuning < c1 <= held_out), so nothing of it can reach a fitting step.
EXTERNAL_CUTOFFS = ("1970-01-01", "1970-01-01")
EXTERNAL_DIR = "external"  # out_dir/external/<city>/ holds an external city's prediction files
PREDICTED_SPLITS = ("tuning", "held_out")  # tuning fits the recalibration and thresholds, held_out is scored
EVALUATED = "held_out"  # the split whose rows are scored
# The generator's references: no recalibration (they are the probabilities themselves), and NEWS2, whose
# logistic map is itself fitted on the tuning rows.
NOT_RECALIBRATED = (ORACLE, FAIR_BOUND, "news2")

# model -> split -> task -> (R,) event rows or (Q,) pathway rows of that split
Predictions = dict[str, dict[str, dict[str, np.ndarray]]]


@dataclass
class EvaluationRows:
    """A connected data set and its prediction rows per split: event rows (R per split) and pathway rows (Q)."""

    data: object
    events: dict[str, PredictionRows]
    pathways: dict[str, PathwayRows]

    @classmethod
    def of(cls, data, splits) -> EvaluationRows:
        return cls(
            data=data,
            events={s: prediction_rows(data, s) for s in splits},
            pathways={s: pathway_rows(data, s) for s in splits},
        )

    def of_level(self, level: str) -> dict:
        """split -> the rows a task of this level ('event' or 'pathway') is scored at."""
        return self.events if level == "event" else self.pathways


@dataclass
class TuningChoices:
    """What the tuning rows decide, applied unchanged wherever the models are scored: (model, task) -> the
    Platt recalibration of a binary task (none for the references and NEWS2), and the alert threshold at
    ALERT_SENSITIVITY of an event-level binary task (`alert_threshold`, from the labelled tuning rows kept in
    `tuning`)."""

    recalibration: dict[tuple[str, str], M.PlattRecalibration]
    tuning: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (model, task) -> (y, p) at the tuning rows
    thresholds: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def fit(cls, tasks: dict, development: EvaluationRows, predictions: Predictions) -> TuningChoices:
        recalibration, tuning = {}, {}
        for task, task_spec in tasks.items():
            if task_spec.kind != "binary":
                continue
            rows = development.of_level(task_spec.level)["tuning"]
            labelled = rows.masks[task]
            y = rows.labels[task][labelled]
            for name, by_split in predictions.items():
                if task not in by_split.get(EVALUATED, {}):
                    continue
                p = np.clip(np.asarray(by_split["tuning"][task], dtype=np.float64), 0.0, 1.0)[labelled]
                if name not in NOT_RECALIBRATED and y.size:
                    recalibration[(name, task)] = M.PlattRecalibration().fit(y, p)
                if task_spec.level == "event":
                    tuning[(name, task)] = (y, p)
        return cls(recalibration, tuning)

    def alert_threshold(self, name: str, task: str) -> float:
        """Highest threshold reaching ALERT_SENSITIVITY on the tuning rows; computed when first asked for,
        so a reference without a prediction at some tuning rows is only refused where it is scored."""
        if (name, task) not in self.thresholds:
            y, p = self.tuning[(name, task)]
            self.thresholds[(name, task)] = (
                M.threshold_at_sensitivity(y, p, ALERT_SENSITIVITY) if y.size else float("nan")
            )
        return self.thresholds[(name, task)]


@dataclass
class ScoredRows:
    """Every task and model scored on one set of evaluation rows: `tasks` (the metrics.json entries),
    `columns` ((model, task) -> raw and recalibrated probabilities at every row, for the predictions file),
    `subgroups` (name -> (R,) level of each event row) and the notes on what was left out."""

    tasks: dict
    columns: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    subgroups: dict[str, np.ndarray]
    notes: list[str]
    clusters: dict[str, dict[str, np.ndarray]]


def _log(msg: str, started: float) -> None:
    print(f"[evaluate {time.perf_counter() - started:6.1f}s] {msg}", flush=True)


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
    external: dict[str, str | Path] | None = None,
) -> dict:
    """Evaluate trained runs (name -> run directory, or a model already loaded) and the baselines on `spec`'s
    held-out split. The schema comes from the first run directory; with loaded models only, it is fitted on
    the training split as training did.

    external: city name -> MEDS root of another city (`write_synthetic`, e.g. `SyntheticConfig.external()`).
    Every pathway there is scored by the models, CatBoost and NEWS2 as fitted on `spec`'s development splits,
    with the tuning split's recalibration and thresholds, under the development schema (vocabulary and
    normalisation not refitted); nothing of it is fitted on. Results under metrics["external"][city]."""
    started = time.perf_counter()
    external = _check_external(external, spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = spec.connect(schema=_run_schema(runs))
    _log(f"connected {spec.root} ({spec.split} split)", started)
    tasks = data.schema.tasks
    development = EvaluationRows.of(data, ("train", *PREDICTED_SPLITS))
    models = {name: _load_model(run) for name, run in runs.items()}
    catboost_settings = catboost or CatBoostSettings()
    features = FeatureBuilder(data)

    predictions = sequence_model_predictions(models, development, PREDICTED_SPLITS, device, started)
    notes: list[str] = []
    if "catboost" in baselines:
        fitted, skipped = fit_catboost_models(development, features, catboost_settings, started)
        predictions["catboost"] = catboost_predictions(fitted, development, features, PREDICTED_SPLITS)
        if skipped:
            notes.append(f"catboost not fitted (training labels of one class or none): {skipped}")
    else:
        fitted = None
    news2_missing, news2 = {}, None
    if "news2" in baselines:
        news2, predictions["news2"], news2_missing, skipped = news2_predictions(development, features)
        if skipped:
            notes.append(f"news2 not fitted (tuning labels of one class or none): {skipped}")
    if "oracle" in baselines:
        predictions.update(reference_predictions(spec, development, PREDICTED_SPLITS, started))

    primary_name = primary if primary in predictions else (next(iter(models)) if models else None)
    choices = TuningChoices.fit(tasks, development, predictions)
    results: dict = {
        "tasks": {},
        "models": list(predictions),
        "n_boot": n_boot,
        "alert_sensitivity": ALERT_SENSITIVITY,
        "primary": primary_name,
        "clusters": CLUSTER_OF_GROUP,
    }
    held_out = development.events[EVALUATED], development.pathways[EVALUATED]
    scored = score_rows(data, *held_out, features, predictions, choices, primary_name, n_boot, started)
    results["tasks"] = scored.tasks
    notes += scored.notes
    results["robustness"] = robustness_of(data, *held_out, predictions, tasks, scored.clusters, n_boot, started)

    hourly = C.read_hourly(spec.root)
    closure_rules = None
    if hourly is not None and CLOSURE_TASK in tasks:
        results["closures"], closure_rules = evaluate_closures(
            spec, development, predictions, hourly, max_false_alarms_per_week, n_boot, primary_name, out_dir
        )
        _log("closure warnings (hospital-hours)", started)
        if timeline:
            _timeline(data, models.get(primary_name), primary_name, hourly, out_dir, device)
            _log(f"timeline ({primary_name})", started)
    results["notes"] = notes
    results["news2_missing_vitals"] = news2_missing
    results["data_report"] = data.report()
    results["split"] = spec.as_dict()
    results["periods"] = _periods(data, development.events)
    results["events_held_out"] = int(data.encoded.lengths[np.unique(held_out[0].pathway)].sum())
    results.update(
        study_record(data, development.events, development.pathways, _pathway_sex(data), runs, catboost_settings)
    )
    _write_predictions(out_dir, data, *held_out, scored, tasks, predictions)
    if external:
        development_fit = DevelopmentFit(
            development, features, models, fitted, news2, choices, closure_rules, primary_name, baselines
        )
        results["external"] = {
            city: evaluate_external(
                city, root, development_fit, n_boot, max_false_alarms_per_week, device, out_dir, started
            )
            for city, root in external.items()
        }
    (out_dir / "metrics.json").write_text(json.dumps(_clean(results), indent=1))
    results["seconds"] = time.perf_counter() - started
    _log("done", started)
    return results


# ----------------------------------------------------------------------------------------------------------
# Predictions of each family of model at the prediction rows


def _run_schema(runs: dict):
    """The schema saved in the first run directory; None with loaded models only (connect fits it then)."""
    from hamburg_mamba.data import DatasetSchema

    run_dirs = [Path(r) for r in runs.values() if isinstance(r, (str, Path))]
    return DatasetSchema.load(run_dirs[0] / "schema.json") if run_dirs else None


def sequence_model_predictions(models: dict, rows: EvaluationRows, splits, device: str, started: float) -> Predictions:
    """Every sequence model's prediction of every task at each split's rows."""
    out: Predictions = {}
    for name, model in models.items():
        out[name] = {}
        for split in splits:
            events, pathways = model_predictions(
                model, rows.data, rows.events[split], rows.pathways[split], device=device
            )
            out[name][split] = {**events, **pathways}
        _log(f"predicted with {name} ({sum(p.numel() for p in model.parameters()):,} parameters)", started)
    return out


def fit_catboost_models(
    development: EvaluationRows, features: FeatureBuilder, settings: CatBoostSettings, started: float
) -> tuple[dict, list[str]]:
    """task -> CatBoost fitted on the development training rows (early-stopped on the tuning rows), and the
    tasks left unfitted because their training labels hold one class or none."""
    tables = _feature_tables(development, features, ("train", "tuning"))
    fitted, skipped = {}, []
    for task, task_spec in development.data.schema.tasks.items():
        rows, table = development.of_level(task_spec.level), tables[task_spec.level]
        train, tuning = rows["train"].masks[task], rows["tuning"].masks[task]
        y_train = rows["train"].labels[task][train]
        if train.sum() < 2 or (task_spec.kind == "binary" and y_train.min() == y_train.max()):
            skipped.append(task)
            continue
        fitted[task] = fit_catboost(
            task_spec.kind,
            table["train"][train],
            y_train,
            table["tuning"][tuning],
            rows["tuning"].labels[task][tuning],
            features.categorical_columns,
            settings,
        )
        _log(f"catboost {task}: {fitted[task].tree_count_} trees", started)
    return fitted, skipped


def catboost_predictions(fitted: dict, rows: EvaluationRows, features: FeatureBuilder, splits) -> dict:
    """split -> task -> the fitted CatBoost's prediction at every row of the split."""
    tables = _feature_tables(rows, features, splits)
    tasks = rows.data.schema.tasks
    return {
        split: {
            task: catboost_predict(model, tasks[task].kind, tables[tasks[task].level][split])
            for task, model in fitted.items()
        }
        for split in splits
    }


def _feature_tables(rows: EvaluationRows, features: FeatureBuilder, splits) -> dict[str, dict[str, pd.DataFrame]]:
    """level ('event', 'pathway') -> split -> the feature table at the split's rows of that level."""
    return {
        "event": {s: features.table(rows.events[s].flat) for s in splits},
        "pathway": {s: features.table(rows.pathways[s].flat) for s in splits},
    }


def news2_predictions(
    development: EvaluationRows, features: FeatureBuilder
) -> tuple[News2Baseline, dict, dict, list[str]]:
    """NEWS2 with its logistic map per deterioration task fitted on the tuning rows; its probability at the
    tuning and held-out rows and its raw score at the held-out rows ('news2_score'); per split the rows
    missing each vital; the tasks left without a map because their tuning labels hold one class or none (the
    logistic fit has no maximum there: its probabilities would be NaN)."""
    news2 = News2Baseline()
    scores, missing = {}, {}
    for split in PREDICTED_SPLITS:
        scores[split], missing[split] = news2.score(features, development.events[split].flat)
    out: dict = {split: {} for split in PREDICTED_SPLITS}
    tuning = development.events["tuning"]
    skipped = []
    for task in NEWS2_TASKS:
        if task not in development.data.schema.tasks:
            continue
        labelled = tuning.masks[task]
        y = tuning.labels[task][labelled]
        if not 0 < y.sum() < y.size:
            skipped.append(task)
            continue
        news2.fit(task, scores["tuning"][labelled], y)
        for split in PREDICTED_SPLITS:
            out[split][task] = news2.probability(task, scores[split])
    out[EVALUATED]["news2_score"] = scores[EVALUATED]
    return news2, out, missing, skipped


def reference_predictions(spec, rows: EvaluationRows, splits, started: float) -> Predictions:
    """The generator's references at each split's rows: the clairvoyant oracle, and the fair bound where the
    data folder has one."""
    out: Predictions = {ORACLE: {s: {**rows.events[s].oracle, **rows.pathways[s].oracle} for s in splits}}
    bound = _fair_bound_predictions(spec, rows, splits)
    if bound is not None:
        out[FAIR_BOUND] = bound
        _log(f"fair bound of {sorted(bound[EVALUATED])}", started)
    return out


def _fair_bound_predictions(spec, rows: EvaluationRows, splits) -> dict | None:
    """split -> task -> the fair bound at the split's rows, for the tasks the folder's bound/ covers; None
    without one. The connector reads it as the oracle of a second connection (same split, same rows)."""
    from hamburg_mamba.data.fair_bound import read_bound

    if not (Path(spec.root) / "bound").is_dir():
        return None
    bound = read_bound(spec.root)
    again = spec.connect(schema=rows.data.schema, oracle=bound)
    out = {}
    for split in splits:
        events, pathways = prediction_rows(again, split), pathway_rows(again, split)
        same_events = np.array_equal(events.flat, rows.events[split].flat)
        if not (same_events and np.array_equal(pathways.pathway, rows.pathways[split].pathway)):
            raise RuntimeError(f"fair bound: the second connection laid out other {split} rows than the first")
        out[split] = {t: v for t, v in {**events.oracle, **pathways.oracle}.items() if t in bound}
    return out


# ----------------------------------------------------------------------------------------------------------
# Metrics at the evaluation rows


def score_rows(
    data,
    rows: PredictionRows,
    pathways: PathwayRows,
    features: FeatureBuilder,
    predictions: Predictions,
    choices: TuningChoices,
    primary: str | None,
    n_boot: int,
    started: float,
) -> ScoredRows:
    """Every task and model at the evaluation rows (`predictions[model][EVALUATED]`): discrimination and
    calibration with cluster-bootstrap intervals, the recalibrated probabilities' ECE and Brier, alert burden
    and subgroups (event tasks), and the paired differences to the primary model; the recalibration and the
    alert thresholds are the tuning rows' (`choices`)."""
    clusters = {"event": _row_clusters(data, rows), "pathway": {"subject": data.encoded.subject_id[pathways.pathway]}}
    groups, dropped = _subgroups(data, features.table(rows.flat), rows)
    notes = [f"subgroup {g} dropped: one level ({level}) in the held-out rows" for g, level in dropped]
    patient_days = _patient_days(data, rows)
    tasks, columns = {}, {}
    for task, task_spec in data.schema.tasks.items():
        source = rows if task_spec.level == "event" else pathways
        task_clusters = clusters[task_spec.level][_cluster_kind(task_spec)]
        tasks[task] = _score_task(
            task, task_spec, source, predictions, choices, task_clusters, groups, patient_days, columns, n_boot
        )
        if task_spec.kind == "binary":
            labelled = source.masks[task]
            tasks[task]["cluster"] = _cluster_kind(task_spec)
            tasks[task]["comparisons"] = _paired_comparisons(
                task, source, labelled, predictions, primary, tasks[task]["models"], task_clusters[labelled], n_boot
            )
        _log(f"metrics {task}", started)
    return ScoredRows(tasks=tasks, columns=columns, subgroups=groups, notes=notes, clusters=clusters)


def _score_task(task, task_spec, source, predictions, choices, cluster, groups, patient_days, columns, n_boot) -> dict:
    """One task's entry: its rows and prevalence, and per model its metrics at the labelled rows (regression:
    errors; binary: `_binary_entry`). The binary models' raw and recalibrated probabilities at every row are
    added to `columns`."""
    labelled = source.masks[task]
    y = source.labels[task][labelled]
    entry = {
        "kind": task_spec.kind,
        "level": task_spec.level,
        "group": task_spec.group,
        "n": int(labelled.sum()),
        "prevalence": float(y.mean()) if y.size and task_spec.kind == "binary" else None,
        "models": {},
    }
    for name, by_split in predictions.items():
        if task not in by_split.get(EVALUATED, {}):
            continue
        p = np.asarray(by_split[EVALUATED][task], dtype=np.float64)
        if task_spec.kind == "regression":
            entry["models"][name] = M.regression_metrics(y, p[labelled])
            continue
        p = np.clip(p, 0.0, 1.0)
        recalibration = choices.recalibration.get((name, task))
        p_recalibrated = recalibration(p) if recalibration is not None else p
        columns[(name, task)] = (p, p_recalibrated)
        if y.size == 0 or y.min() == y.max():
            continue
        entry["models"][name] = _binary_entry(
            y, p[labelled], p_recalibrated[labelled], recalibration, cluster[labelled], n_boot
        )
        if task_spec.level == "event":
            entry["models"][name]["alert_burden"] = alert_burden(
                y,
                p[labelled],
                source.pathway[labelled],
                source.time_us[labelled],
                choices.alert_threshold(name, task),
                patient_days,
            )
            entry["models"][name]["subgroups"] = {
                g: _subgroup_auroc(y, p[labelled], levels[labelled], cluster[labelled], n_boot)
                for g, levels in groups.items()
            }
    return entry


def _binary_entry(y, p, p_recalibrated, recalibration, cluster, n_boot: int) -> dict:
    """Metrics of raw probabilities p with cluster-bootstrap intervals, ECE and Brier after the tuning
    recalibration, and the recalibration map itself. y, p, p_recalibrated, cluster: (R,) labelled rows."""
    estimates = M.bootstrap_binary(y, p, cluster=cluster, n_boot=n_boot)
    entry = {k: v.as_dict() for k, v in estimates.items()}
    entry["ece_recalibrated"] = M.ece(y, p_recalibrated)
    entry["brier_recalibrated"] = M.brier(y, p_recalibrated)
    if recalibration is not None:
        entry["recalibration"] = {"intercept": recalibration.intercept, "slope": recalibration.slope}
    return entry


def robustness_of(data, rows, pathways, predictions, tasks, clusters, n_boot: int, started: float) -> dict:
    """The evaluation rows whose system state lies beyond the training range against the rest
    (robustness.shift_robustness), clustered as the main tables."""
    task_clusters = {t: clusters[s.level][_cluster_kind(s)] for t, s in tasks.items() if s.kind == "binary"}
    out = shift_robustness(data, rows, pathways, predictions, tasks, task_clusters, n_boot)
    _log("robustness (shifted rows)", started)
    return out


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
    mine = np.clip(np.asarray(preds[primary][EVALUATED][task], dtype=np.float64), 0, 1)[m]
    out = {}
    for other in evaluated:
        if other != primary:
            theirs = np.clip(np.asarray(preds[other][EVALUATED][task], dtype=np.float64), 0, 1)[m]
            out[other] = {"auroc_difference": M.paired_difference(y, mine, theirs, cluster, n_boot).as_dict()}
    return out


# ----------------------------------------------------------------------------------------------------------
# External validation: another city, every model as fitted on the development city


@dataclass
class DevelopmentFit:
    """Everything fitted or chosen on the development city that an external city is scored with, unchanged."""

    development: EvaluationRows
    features: FeatureBuilder  # its code columns are CatBoost's
    models: dict
    catboost: dict | None  # task -> CatBoost fitted on the development training rows
    news2: News2Baseline | None  # logistic maps fitted on the development tuning rows
    choices: TuningChoices
    closure_rules: ClosureRules | None
    primary: str | None
    baselines: tuple


def _check_external(external, spec) -> dict[str, Path]:
    """external as city -> absolute MEDS root; ValueError naming the entry that is not one."""
    if external is None:
        return {}
    if not isinstance(external, dict):
        raise ValueError(f"external: expected a dict of city name -> MEDS root, got {type(external).__name__}")
    out = {}
    for city, root in external.items():
        if not isinstance(city, str) or not city.strip() or city in (".", "..") or any(c in city for c in "/\\"):
            raise ValueError(f"external: city name {city!r} must be a non-empty name without path separators")
        if not isinstance(root, (str, Path)) or not (Path(root) / MEDS_MARKER).is_file():
            raise ValueError(f"external[{city!r}]: '{root}' is not a MEDS root (no {MEDS_MARKER} there)")
        if Path(root).resolve() == Path(spec.root).resolve():
            raise ValueError(f"external[{city!r}]: {root} is the development data itself, not another city")
        out[city] = Path(root).resolve()
    return out


def evaluate_external(
    city: str, root: Path, fit: DevelopmentFit, n_boot: int, max_false_alarms_per_week, device, out_dir, started
) -> dict:
    """One external city scored as the held-out split is: the same metrics, clusters, paired comparisons,
    subgroups, robustness and hospital-hour closures, with every model, map and threshold from `fit`."""
    spec = DataSpec(root=str(root), split="temporal", temporal_cutoffs=EXTERNAL_CUTOFFS)
    data = spec.connect(schema=fit.development.data.schema)
    early = int((data.encoded.split != EVALUATED).sum())
    if early:
        raise ValueError(f"external[{city!r}]: {early} pathways start before {EXTERNAL_CUTOFFS[1]}")
    _log(f"connected external city {city} ({root})", started)
    rows = EvaluationRows.of(data, (EVALUATED,))
    features = FeatureBuilder(data, codes=fit.features.code_columns)
    predictions = sequence_model_predictions(fit.models, rows, (EVALUATED,), device, started)
    if fit.catboost is not None:
        predictions["catboost"] = catboost_predictions(fit.catboost, rows, features, (EVALUATED,))
    news2_missing = {}
    if fit.news2 is not None:
        predictions["news2"], news2_missing[EVALUATED] = _news2_at(fit.news2, rows.events[EVALUATED], features)
    if "oracle" in fit.baselines:
        predictions.update(reference_predictions(spec, rows, (EVALUATED,), started))
    held = rows.events[EVALUATED], rows.pathways[EVALUATED]
    scored = score_rows(data, *held, features, predictions, fit.choices, fit.primary, n_boot, started)
    tasks = data.schema.tasks
    result = {
        "tasks": scored.tasks,
        "models": list(predictions),
        "n_boot": n_boot,
        "alert_sensitivity": ALERT_SENSITIVITY,
        "primary": fit.primary,
        "clusters": CLUSTER_OF_GROUP,
        "hospitals": sorted({str(h) for h in data.encoded.event_hospital_name[held[0].flat] if h is not None}),
        "unseen_hospitals": sorted(
            {str(h) for h in data.encoded.event_hospital_name[held[0].flat] if h is not None}
            - set(data.schema.categorical_vocab["hospital"])
        ),
        "robustness": robustness_of(data, *held, predictions, tasks, scored.clusters, n_boot, started),
    }
    city_dir = out_dir / EXTERNAL_DIR / city
    city_dir.mkdir(parents=True, exist_ok=True)
    hourly = C.read_hourly(root)
    if hourly is not None and fit.closure_rules is not None:
        result["closures"] = _external_closures(
            root, rows, predictions, hourly, fit.closure_rules, fit.primary, max_false_alarms_per_week, n_boot, city_dir
        )
        _log(f"closure warnings of {city} (hospital-hours)", started)
    result["notes"] = scored.notes
    result["news2_missing_vitals"] = news2_missing
    result["data_report"] = data.report()
    result["split"] = spec.as_dict()
    result["periods"] = _periods(data, rows.events)
    result["events_held_out"] = int(data.encoded.lengths[np.unique(held[0].pathway)].sum())
    result["participants"] = participant_table(data, rows.events, rows.pathways, _pathway_sex(data))
    _write_predictions(city_dir, data, *held, scored, tasks, predictions)
    _log(f"external city {city} done", started)
    return result


def _news2_at(news2: News2Baseline, rows: PredictionRows, features: FeatureBuilder) -> tuple[dict, dict]:
    """task -> NEWS2's probability at these rows through its fitted maps, plus 'news2_score'; and the rows
    missing each vital."""
    score, missing = news2.score(features, rows.flat)
    out = {task: news2.probability(task, score) for task in news2.coef}
    out["news2_score"] = score
    return {EVALUATED: out}, missing


def _external_closures(root, rows, predictions, hourly, rules, primary, max_false_alarms_per_week, n_boot, city_dir):
    """The external city's own hospital-hours, all of them evaluated: the models pooled from its prediction
    rows, the comparators as fitted on the development training hours and every alarm threshold as chosen on
    the development tuning hours."""
    schema = rows.data.schema
    table = C.hospital_hours(hourly)
    whole = (pd.Timestamp(table["time"].min()), pd.Timestamp(table["time"].max()) + pd.Timedelta(hours=1))
    evaluated = np.ones(len(table), bool)
    trend = _nedocs_trend(root, schema, table)
    sources = _closure_sources(rows, predictions, table, {EVALUATED: whole}, (EVALUATED,), rules.comparators, trend)
    result = _closure_header(rules.comparators.horizons, primary, max_false_alarms_per_week)
    result["periods"] = {EVALUATED: [str(whole[0]), str(whole[1])]}
    result.update(_score_closures(table, evaluated, whole, sources, rules, primary, n_boot))
    _write_closure_series(table, evaluated, sources, city_dir)
    return result


# ----------------------------------------------------------------------------------------------------------
# Closures at the hospital-hour


@dataclass
class ClosureComparators:
    """The simple closure comparators (closures.py) as fitted on the training period's hospital-hours: per
    horizon the rate at each hour of the day, and the logistic fit (intercept, slope) on the NEDOCS trend
    (none when the schema reads no NEDOCS); both empty without training hours."""

    horizons: list[int]
    hour_of_day_rate: dict[int, np.ndarray]  # horizon -> (24,)
    nedocs_trend_fit: dict[int, tuple[float, float]]

    @classmethod
    def fit(cls, root, schema, table: pd.DataFrame, period: dict, horizons: list[int]) -> ClosureComparators:
        train = _in_hours(table, *period["train"]) if "train" in period else np.zeros(len(table), bool)
        if not train.any():
            return cls(horizons, {}, {})
        fit_rows = {k: train & C.scored(table, k) & C.in_period(table, *period["train"], k) for k in horizons}
        rates = {k: C.hour_of_day_rate(table, fit_rows[k], k) for k in horizons}
        trend = _nedocs_trend(root, schema, table)
        fits = {}
        if trend is not None:
            for k in horizons:
                fit = fit_rows[k] & np.isfinite(trend)
                fits[k] = M.fit_logistic(trend[fit], table[f"y_{k}h"].to_numpy()[fit].astype(np.float64))
        return cls(horizons, rates, fits)

    def scores(self, table: pd.DataFrame, trend: np.ndarray | None) -> dict[str, dict[int, np.ndarray]]:
        """source -> horizon -> (T,) score of each comparator at these hospital-hours."""
        out = {"always_on": {k: np.ones(len(table)) for k in self.horizons}}
        hour_of_day = table["time"].dt.hour.to_numpy()
        if self.hour_of_day_rate:
            out["time_of_day"] = {k: rate[hour_of_day] for k, rate in self.hour_of_day_rate.items()}
        if self.nedocs_trend_fit and trend is not None:
            # a missing feed value (the first hour) is the hospital at its normal: trend 0
            out["nedocs_trend"] = {
                k: M.sigmoid(a + b * np.nan_to_num(trend, nan=0.0)) for k, (a, b) in self.nedocs_trend_fit.items()
            }
        return out


@dataclass
class ClosureRules:
    """What the development city's hours decide: the comparators (fitted on the training hours) and each
    source's alarm threshold (chosen on the tuning hours)."""

    comparators: ClosureComparators
    thresholds: dict[str, float]


def evaluate_closures(
    spec,
    development: EvaluationRows,
    predictions: Predictions,
    hourly,
    max_false_alarms_per_week,
    n_boot,
    primary,
    out_dir,
) -> tuple[dict, ClosureRules]:
    """Hospital-hour evaluation of the closure warnings (closures.py): per source (models pooled by
    `closures.hospital_risk_series`, the comparators, the clairvoyant hazard) AUROC per horizon on the held-out
    hours with hospital-day clusters and the paired difference to the primary model, and the alarm (threshold
    from the tuning hours) with its uncapped lead times, alarm share and precision."""
    schema = development.data.schema
    table = C.hospital_hours(hourly)
    period = _hour_periods(spec, development.events, table)
    in_split = {s: _in_hours(table, *period[s]) for s in period}
    horizons = _closure_horizons(schema)
    comparators = ClosureComparators.fit(spec.root, schema, table, period, horizons)
    sources = _closure_sources(
        development, predictions, table, period, PREDICTED_SPLITS, comparators, _nedocs_trend(spec.root, schema, table)
    )
    tuning = table[in_split["tuning"]].reset_index(drop=True)
    alarm_score = {name: np.nan_to_num(score[C.ALARM_HORIZON_H][in_split["tuning"]]) for name, score in sources.items()}
    rules = ClosureRules(
        comparators,
        {name: C.choose_threshold(tuning, alarm_score[name], max_false_alarms_per_week) for name in sources},
    )
    result = _closure_header(horizons, primary, max_false_alarms_per_week)
    result["periods"] = {s: [str(lo), str(hi)] for s, (lo, hi) in period.items()}
    result.update(_score_closures(table, in_split[EVALUATED], period[EVALUATED], sources, rules, primary, n_boot))
    _write_closure_series(table, in_split[EVALUATED], sources, out_dir)
    return result, rules


def _closure_horizons(schema) -> list[int]:
    return [k for k in C.HORIZONS_H if f"closure_{k}h" in schema.tasks]


def _closure_header(horizons, primary, max_false_alarms_per_week) -> dict:
    return {
        "alarm_task": CLOSURE_TASK,
        "horizons_h": horizons,
        "refire_h": C.REFIRE_H,
        "primary": primary,
        "max_false_alarms_per_week_on_tuning": max_false_alarms_per_week,
        "cluster": "hospital_day",
    }


def _closure_sources(rows, predictions, table, period, splits, comparators, trend) -> dict[str, dict[int, np.ndarray]]:
    """source -> horizon -> (T,) score at every hospital-hour: the models pooled from each split's own
    prediction rows (NaN outside the splits' periods), the comparators, then the clairvoyant hazard."""
    return {
        **_pooled_model_scores(rows, predictions, table, period, splits, comparators.horizons),
        **comparators.scores(table, trend),
        "clairvoyant": {k: table[f"clairvoyant_{k}h"].to_numpy() for k in comparators.horizons},
    }


def _pooled_model_scores(rows: EvaluationRows, predictions, table, period, splits, horizons) -> dict:
    """model -> horizon -> (T,) the model's closure predictions pooled per hospital-hour
    (closures.hospital_risk_series), each split's hours from that split's prediction rows."""
    encoded = rows.data.encoded
    end_us = event_times_us(rows.data)[encoded.offsets[1:] - 1]  # (P,) each pathway's last event
    out: dict[str, dict[int, np.ndarray]] = {}
    for name, by_split in predictions.items():
        if name in (ORACLE, FAIR_BOUND) or CLOSURE_TASK not in by_split.get(EVALUATED, {}):
            continue
        out[name] = {k: np.full(len(table), np.nan) for k in horizons}
        for split in splits:
            events, (lo, hi) = rows.events[split], period[split]
            hours = pd.date_range(lo, hi - pd.Timedelta(hours=1), freq="h")
            mine = _in_hours(table, lo, hi)
            for k in horizons:
                series = C.hospital_risk_series(
                    events.time_us,
                    encoded.event_hospital_name[events.flat],
                    events.pathway,
                    np.asarray(by_split[split][f"closure_{k}h"], np.float64),
                    hours,
                    end_us[events.pathway],
                )
                out[name][k][mine] = C.score_rows(table[mine], series)
    return out


def _score_closures(table, evaluated, period, sources, rules: ClosureRules, primary, n_boot) -> dict:
    """The evaluated hospital-hours (`evaluated`: (T,) bool, within `period`) of every source: hour counts,
    AUROC and AUPRC per horizon with hospital-day intervals, the paired difference to the primary model, and
    the alarm at the tuning threshold."""
    horizons = rules.comparators.horizons
    out = {"hours": _hour_counts(table, evaluated, horizons), "models": {}, "notes": []}
    for k in horizons:
        rows_k = evaluated & C.scored(table, k) & C.in_period(table, *period, k)
        finite = np.all([np.isfinite(v[k][rows_k]) for v in sources.values()], axis=0)
        if not finite.all():
            out["notes"].append(
                f"{int((~finite).sum())} held-out hospital-hours at {k} h without any "
                f"prediction of their hospital, left out for every source"
            )
        rows_k[rows_k] = finite
        y = table[f"y_{k}h"].to_numpy()[rows_k]
        cluster = C.hospital_day(table)[rows_k]
        for name, score in sources.items():
            entry = out["models"].setdefault(name, {"auroc": {}, "vs_primary": {}})
            if not (y.size and 0 < y.sum() < y.size):
                continue
            estimates = M.bootstrap_binary(y, score[k][rows_k], cluster, n_boot, metrics=("auroc", "auprc"))
            entry["auroc"][str(k)] = estimates["auroc"].as_dict()
            entry["auprc"] = {**entry.get("auprc", {}), str(k): estimates["auprc"].as_dict()}
            if primary in sources and name != primary:
                entry["vs_primary"][str(k)] = M.paired_difference(
                    y, sources[primary][k][rows_k], score[k][rows_k], cluster, n_boot
                ).as_dict()
    evaluated_table = table[evaluated].reset_index(drop=True)
    for name, score in sources.items():
        alarm_score = np.nan_to_num(score[C.ALARM_HORIZON_H][evaluated])
        out["models"][name].update(
            C.warning_summary(evaluated_table, alarm_score, rules.thresholds[name], C.ALARM_HORIZON_H)
        )
    return out


def _write_closure_series(table, evaluated, sources, out_dir: Path) -> None:
    frames = [
        table.loc[evaluated, ["hospital", "time"]]
        .reset_index(drop=True)
        .assign(model=name, risk=score[C.ALARM_HORIZON_H][evaluated])
        for name, score in sources.items()
    ]
    if frames:
        pd.concat(frames).to_parquet(out_dir / "closure_series.parquet", index=False)


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


def _nedocs_trend(root, schema, table) -> np.ndarray | None:
    """(T,) NEDOCS minus its 4-week trailing mean as the connector attaches it (`trend:nedocs`, the feed's lag
    and maximum age) at each hospital-hour; None when the model's schema reads no NEDOCS."""
    from hamburg_mamba.data import system_state as SS
    from hamburg_mamba.data.validate import Accounting

    if "nedocs" not in (schema.status_columns or ()):
        return None
    feed = pd.read_parquet(Path(root) / "system" / "hospital_hourly.parquet", columns=["hospital", "time", "nedocs"])
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


def _write_predictions(out_dir, data, rows, pathways, scored: ScoredRows, tasks, predictions) -> None:
    """predictions.parquet (event rows) and pathway_predictions.parquet (pathway rows) of the evaluation rows:
    ids, time, hospital, subgroups, per task the label and mask, per model the raw (and recalibrated)
    probability."""
    encoded = data.encoded
    event_columns = {
        "pathway_id": encoded.pathway_id[rows.pathway],
        "subject_id": encoded.subject_id[rows.pathway],
        "time": np.asarray(rows.time_us).astype("datetime64[us]"),
        "hospital_id": rows.hospital,
    }
    event_columns.update({g: levels.astype(str) for g, levels in scored.subgroups.items()})
    pathway_columns = {
        "pathway_id": encoded.pathway_id[pathways.pathway],
        "subject_id": encoded.subject_id[pathways.pathway],
    }
    for task, task_spec in tasks.items():
        target = event_columns if task_spec.level == "event" else pathway_columns
        source = rows if task_spec.level == "event" else pathways
        target[f"{task}|label"] = source.labels[task]
        target[f"{task}|mask"] = source.masks[task]
        for name in predictions:
            if (name, task) in scored.columns:
                raw, recalibrated = scored.columns[(name, task)]
                target[f"{task}|{name}"] = raw
                target[f"{task}|{name}|recal"] = recalibrated
            elif task in predictions[name].get(EVALUATED, {}):
                target[f"{task}|{name}"] = np.asarray(predictions[name][EVALUATED][task], dtype=np.float64)
    if "news2" in predictions and "news2_score" in predictions["news2"][EVALUATED]:
        event_columns["news2_score"] = predictions["news2"][EVALUATED]["news2_score"]
    pd.DataFrame(event_columns).to_parquet(out_dir / "predictions.parquet", index=False)
    pd.DataFrame(pathway_columns).to_parquet(out_dir / "pathway_predictions.parquet", index=False)


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
