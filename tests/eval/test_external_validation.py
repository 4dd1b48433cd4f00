"""External validation (`run_comparison(external=...)`): the tiny Hamburg's models, CatBoost and NEWS2 applied
unchanged to a tiny city of other hospitals in another season.

Every external number is recomputed here from the written external predictions by independent means
(scikit-learn, a cluster bootstrap written out row by row, the logistic map by hand); "nothing of the external
city is fitted on" is checked by evaluating with and without it and by refitting CatBoost on the development
training rows alone; the closures against the external city's own hourly table.
"""

import base64
import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from test_report import CHROMIUM, rendered_images  # the headless-browser probe of the report's figures

from hamburg_mamba.data import SyntheticConfig, generate_synthetic, read_meds, write_synthetic
from hamburg_mamba.data.schema import UNKNOWN_INDEX
from hamburg_mamba.eval import report as RP
from hamburg_mamba.eval.baselines import CatBoostSettings, catboost_predict, fit_catboost
from hamburg_mamba.eval.experiment import run_comparison

CITY = "Emscherstadt"
MODEL = "known"
N_BOOT = 40
CATBOOST = CatBoostSettings(iterations=20, seed=5)
LOGIT_EPS = 1e-6  # metrics.logit's clip
FIGURES = ("roc", "calibration", "decision_curves", "closure_timeline")  # per data set in the report
# Three of the external preset's hospitals (none of them in Hamburg) over ten spring days at the tiny city's
# scale: 1,100 labelled rows per patient task, 20 closure starts, in 9 s on the 2-core machine.
TINY_EXTERNAL = dict(
    days=10,
    scale=0.03,
    hospitals=("Universitaetsklinikum Emscherstadt", "St. Marien Emscherstadt", "St. Josef Emscherstadt-Nord"),
    start="2024-03-01",
    heat_wave_start="2024-03-04",
    heat_wave_days=2,
    flu_peak="2024-03-05",
    mci_time="2024-03-07 10:00",
    mci_casualties=5,
    seed=1,
)


@pytest.fixture(scope="module")
def external_root(tmp_path_factory):
    config = SyntheticConfig.external(**TINY_EXTERNAL)
    return write_synthetic(tmp_path_factory.mktemp("external") / "emscherstadt", generate_synthetic(config))


def _evaluate(spec, model, out, external=None):
    run_comparison(spec, {MODEL: model}, out, n_boot=N_BOOT, catboost=CATBOOST, timeline=False, external=external)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def evaluated(tiny_spec, known_model, external_root, tmp_path_factory):
    """(metrics with the external city, metrics without it, the evaluation folder with it)."""
    with_city = tmp_path_factory.mktemp("with_external")
    without = tmp_path_factory.mktemp("without_external")
    metrics = _evaluate(tiny_spec, known_model, with_city, {CITY: external_root})
    return metrics, _evaluate(tiny_spec, known_model, without), with_city, without


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(p / (1 - p))


def _plain_bootstrap(y, scores: dict, cluster, n_boot, seed=0):
    """Per score: AUROC percentile interval over replicates that resample clusters (bootstrap_binary's draw
    order: one integers(0, K, K) per replicate, index k naming the k-th smallest id); and the same for the
    first score minus each other one, on the same replicates."""
    ids = np.unique(cluster)
    rows_of = [np.flatnonzero(cluster == c) for c in ids]
    rng = np.random.default_rng(seed)
    names = list(scores)
    own, diff = {n: [] for n in names}, {n: [] for n in names[1:]}
    for _ in range(n_boot):
        take = np.concatenate([rows_of[k] for k in rng.integers(0, ids.size, ids.size)])
        if not 0 < y[take].sum() < take.size:
            continue
        auc = {n: roc_auc_score(y[take], scores[n][take]) for n in names}
        for n in names:
            own[n].append(auc[n])
        for n in names[1:]:
            diff[n].append(auc[names[0]] - auc[n])
    q = lambda v: np.quantile(v, [0.025, 0.975])
    return {n: q(v) for n, v in own.items()}, {n: q(v) for n, v in diff.items()}


@pytest.mark.parametrize("task,cluster_of", [("closure_6h", "hospital_day"), ("icu_transfer", "subject")])
def test_external_metrics_equal_metrics_by_hand_from_the_written_predictions(evaluated, task, cluster_of):
    metrics, _, out, _ = evaluated
    got = metrics["external"][CITY]["tasks"][task]
    pred = pd.read_parquet(out / "external" / CITY / "predictions.parquet")
    m = pred[f"{task}|mask"].to_numpy()
    y = pred[f"{task}|label"].to_numpy()[m].astype(np.float64)
    assert got["n"] == m.sum() and got["prevalence"] == pytest.approx(y.mean(), rel=1e-6)
    if cluster_of == "hospital_day":  # the external hospital the row knew, by name, and the calendar day
        key = pred["hospital"].astype(str) + "|" + pd.to_datetime(pred["time"]).dt.strftime("%Y-%m-%d")
    else:
        key = pred["subject_id"]  # integers: the bootstrap draws index the ids in numeric order
    cluster = key.to_numpy()[m]
    models = [MODEL] + [n for n in got["models"] if n != MODEL]
    assert {"catboost", "oracle"} <= set(models)
    scores = {n: pred[f"{task}|{n}"].to_numpy()[m] for n in models}
    intervals, differences = _plain_bootstrap(y, scores, cluster, N_BOOT)
    for name in models:
        auroc = got["models"][name]["auroc"]
        assert auroc["value"] == pytest.approx(roc_auc_score(y, scores[name]), abs=1e-12), name
        assert [auroc["low"], auroc["high"]] == pytest.approx(list(intervals[name]), abs=1e-12), name
        brier = np.mean((np.clip(scores[name], 0, 1) - y) ** 2)
        assert got["models"][name]["brier"]["value"] == pytest.approx(brier, rel=1e-12), name
    for name, (low, high) in differences.items():
        d = got["comparisons"][name]["auroc_difference"]
        assert d["value"] == pytest.approx(roc_auc_score(y, scores[MODEL]) - roc_auc_score(y, scores[name]), abs=1e-12)
        assert [d["low"], d["high"]] == pytest.approx([low, high], abs=1e-12), name


def test_recalibration_and_alert_threshold_are_the_development_tuning_rows(evaluated):
    """The external city's recalibrated column is the held-out period's Platt map (fitted on the development
    tuning rows, tests/eval/test_experiment_golden.py) applied to its raw predictions, and its alerts use the
    tuning threshold: the sensitivity it reaches there is counted by hand."""
    metrics, _, out, _ = evaluated
    task = "closure_6h"
    held_out = metrics["tasks"][task]["models"][MODEL]
    external = metrics["external"][CITY]["tasks"][task]["models"][MODEL]
    assert external["recalibration"] == held_out["recalibration"]
    a, b = held_out["recalibration"]["intercept"], held_out["recalibration"]["slope"]
    pred = pd.read_parquet(out / "external" / CITY / "predictions.parquet")
    raw = pred[f"{task}|{MODEL}"].to_numpy()
    np.testing.assert_allclose(
        pred[f"{task}|{MODEL}|recal"].to_numpy(), _sigmoid(a + b * _logit(raw)), rtol=1e-6, atol=1e-12
    )
    threshold = held_out["alert_burden"]["threshold"]
    assert external["alert_burden"]["threshold"] == threshold
    m = pred[f"{task}|mask"].to_numpy()
    y, p = pred[f"{task}|label"].to_numpy()[m], raw[m]
    assert external["alert_burden"]["sensitivity"] == pytest.approx(np.mean(p[y == 1] >= threshold), rel=1e-12)


def test_nothing_of_the_external_city_is_fitted_on(evaluated, tiny_data, external_root):
    metrics, alone, out, out_alone = evaluated
    # the development results, CatBoost, NEWS2 and every map and threshold are those of a run without the city
    assert {k: v for k, v in metrics.items() if k != "external"} == alone
    for name in ("predictions.parquet", "pathway_predictions.parquet", "closure_series.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(out_alone / name), check_exact=True)
    # the development vocabulary reads every external hospital as unknown: the schema was not refitted
    pred = pd.read_parquet(out / "external" / CITY / "predictions.parquet")
    hospitals = set(read_meds(external_root)["hospitals"]["hospital"])
    assert set(pred["hospital"]) - {"unknown"} <= hospitals
    assert set(pred.loc[pred["hospital"] != "unknown", "hospital_id"]) == {UNKNOWN_INDEX}
    assert metrics["external"][CITY]["unseen_hospitals"] == sorted(hospitals)
    # CatBoost fitted here on the development training rows alone predicts the external rows as evaluated
    from hamburg_mamba.eval.features import FeatureBuilder
    from hamburg_mamba.eval.predictions import prediction_rows

    task = "closure_6h"
    features = FeatureBuilder(tiny_data)
    train, tuning = prediction_rows(tiny_data, "train"), prediction_rows(tiny_data, "tuning")
    keep, keep_tuning = train.masks[task], tuning.masks[task]
    model = fit_catboost(
        "binary",
        features.table(train.flat)[keep],
        train.labels[task][keep],
        features.table(tuning.flat)[keep_tuning],
        tuning.labels[task][keep_tuning],
        features.categorical_columns,
        CATBOOST,
    )
    from hamburg_mamba.data.splits import DataSpec
    from hamburg_mamba.eval.experiment import EXTERNAL_CUTOFFS

    city = DataSpec(root=str(external_root), split="temporal", temporal_cutoffs=EXTERNAL_CUTOFFS)
    city_data = city.connect(schema=tiny_data.schema)
    rows = prediction_rows(city_data, "held_out")
    city_features = FeatureBuilder(city_data, codes=features.code_columns)
    want = catboost_predict(model, "binary", city_features.table(rows.flat))
    np.testing.assert_allclose(pred[f"{task}|catboost"].to_numpy(), want, rtol=1e-12)


def test_external_closures_are_scored_at_the_external_cities_own_hospital_hours(evaluated, external_root):
    metrics, _, out, _ = evaluated
    got = metrics["external"][CITY]["closures"]
    hourly = pd.read_parquet(external_root / "system" / "hospital_hourly.parquet")
    is_open = ~hourly["closed_at_hour_start"].to_numpy(bool)
    assert got["hours"]["open"] == is_open.sum()
    assert got["hours"]["closures"] == hourly["closure_start"].to_numpy(bool)[is_open].sum()
    series = pd.read_parquet(out / "external" / CITY / "closure_series.parquet")
    own = set(hourly["hospital"].astype(str))
    assert set(series["hospital"]) == own and not own & set(metrics["periods"]["hospitals"].values())
    assert (series.groupby("model").size() == is_open.sum()).all()
    # every alarm threshold is the one chosen on the development tuning hours
    for name, entry in got["models"].items():
        assert entry["threshold"] == metrics["closures"]["models"][name]["threshold"], name


@pytest.fixture(scope="module")
def reported(evaluated, tmp_path_factory):
    """The report of the evaluation with the external city, and what each figure drew: file name -> one
    Panel per axes."""
    folder = tmp_path_factory.mktemp("report")
    drawn, save = {}, RP._save

    def recording(plt, fig, path, **kwargs):
        drawn[path.name] = [Panel.of(ax) for ax in fig.axes]
        return save(plt, fig, path, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RP, "_save", recording)
        RP.write_report(evaluated[2], folder)
    return folder, drawn


@dataclass
class Panel:
    """What one axes drew: its title and y label, its lines as (label, colour, x, y) and its shaded spans as
    label -> (start, end)."""

    title: str
    ylabel: str
    lines: list[tuple]
    spans: dict[str, tuple[pd.Timestamp, pd.Timestamp]]
    legend: list[str]

    @classmethod
    def of(cls, ax):
        import matplotlib.dates as mdates

        lines = [(line.get_label(), line.get_color(), line.get_xdata(), line.get_ydata()) for line in ax.get_lines()]
        spans = {}
        for patch in ax.patches:  # axvspan: x in data units (days), y in axes units
            x = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 0]
            spans[patch.get_label()] = tuple(
                pd.Timestamp(mdates.num2date(v)).tz_localize(None) for v in (x.min(), x.max())
            )
        legend = [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []
        return cls(ax.get_title(), ax.get_ylabel(), lines, spans, legend)


def test_report_shows_the_external_city_beside_the_held_out_period(evaluated, reported, tmp_path):
    _, _, _, out_alone = evaluated
    md = (reported[0] / "README.md").read_text()
    label = f"external ({CITY})"
    summary = md[md.index("## Summary") : md.index("## Goal check")]
    assert f"| closure_6h | {RP.HELD_OUT_LABEL} |" in summary and f"| closure_6h | {label} |" in summary
    closures = md[md.index("## Closure warnings") :]
    assert f"| {RP.HELD_OUT_LABEL} | {MODEL} |" in closures and f"| {label} | {MODEL} |" in closures
    assert f"| {label} | {MODEL} |" in md[md.index("### closure_6h") : md.index("### closure_12h")]
    evaluation = md[md.index("## Model evaluation (TRIPOD+AI") : md.index("## Limitations")]
    assert f"External validation ({CITY}" in evaluation and "St. Marien Emscherstadt" in evaluation
    assert f"external validation ({CITY})" in md[md.index("## Participants") : md.index("## Outcomes")]
    page = (reported[0] / "report.html").read_text()
    assert f"<td>{label}</td>" in page and "<h2>Model evaluation (TRIPOD+AI items 12, 16, 23)</h2>" in page
    RP.write_report(out_alone, tmp_path / "alone")
    alone = (tmp_path / "alone" / "README.md").read_text()
    assert "external (" not in alone and "External validation: not run" in alone


def test_external_figures_are_written_referenced_and_embedded(reported):
    folder, _ = reported
    md = (folder / "README.md").read_text()
    held_out = md[md.index("## Plots (held-out period)") : md.index(f"## Plots (external: {CITY})")]
    external = md[md.index(f"## Plots (external: {CITY})") : md.index("## Notes")]
    page = (folder / "report.html").read_text()
    for figure in FIGURES:
        name = f"{figure}_external_{CITY}"
        assert f"![{name}]({name}.png)" in external and name not in held_out
        data = base64.b64encode((folder / f"{name}.png").read_bytes()).decode("ascii")
        assert f'<img alt="{name}" src="data:image/png;base64,{data}">' in page
    assert "![roc](roc.png)" in held_out  # the development city's held-out figures keep their names
    assert page.count("<img ") == md.count("\n![") == len(list(folder.glob("*.png")))


def test_external_roc_curves_are_drawn_from_the_external_predictions(evaluated, reported):
    """Each plotted ROC curve's area (trapezoids over its drawn points) is the external city's AUROC, and each
    model keeps its held-out colour."""
    metrics, _, _, _ = evaluated
    tasks = metrics["external"][CITY]["tasks"]
    label_of = lambda task: {RP.LABELS.get(m, m): m for m in tasks[task]["models"]}
    held_out_colour = {
        label.rsplit(" ", 1)[0]: colour
        for panel in reported[1]["roc.png"]
        for label, colour, _, _ in panel.lines
        if not label.startswith("_")
    }
    drawn = {}
    for panel in reported[1][f"roc_external_{CITY}.png"]:
        if not panel.lines:  # a spare axes of the grid
            continue
        task, rest = panel.title.split(", ", 1)
        assert rest.startswith(f"external ({CITY})\n(prevalence {tasks[task]['prevalence']:.3f})")
        drawn[task] = set()
        for label, colour, fpr, tpr in panel.lines:
            if label.startswith("_"):  # the chance diagonal
                continue
            name = label.rsplit(" ", 1)[0]
            model = label_of(task)[name]
            area = np.trapezoid(tpr, fpr)
            assert area == pytest.approx(tasks[task]["models"][model]["auroc"]["value"], abs=1e-12), (task, model)
            assert colour == RP.model_color(model) == held_out_colour.get(name, colour)
            drawn[task].add(model)
        assert drawn[task] == set(tasks[task]["models"]), task
    assert {"closure_6h", "icu_transfer"} <= set(drawn) and "catboost" in held_out_colour


def test_external_timeline_is_the_citys_own_hospitals_closures_alarm_and_crises(evaluated, reported, external_root):
    metrics, _, out, _ = evaluated
    panels = reported[1][f"closure_timeline_external_{CITY}.png"]
    hourly = pd.read_parquet(external_root / "system" / "hospital_hourly.parquet")
    hourly["hospital"] = hourly["hospital"].astype(str)
    starts = hourly[hourly["closure_start"].astype(bool)].groupby("hospital").size()
    assert sorted(p.ylabel for p in panels) == sorted(TINY_EXTERNAL["hospitals"])
    series = pd.read_parquet(out / "external" / CITY / "closure_series.parquet")
    threshold = metrics["external"][CITY]["closures"]["models"][MODEL]["threshold"]
    for panel in panels:
        closures = [line for line in panel.lines if line[1] == "red"]
        assert len(closures) == starts.get(panel.ylabel, 0), panel.ylabel
        own = series[(series["hospital"] == panel.ylabel) & (series["model"] == MODEL)].sort_values("time")
        risk = next(y for label, _, _, y in panel.lines if label == MODEL)
        # every open hour of the hospital, the hours it was closed left as gaps
        np.testing.assert_array_equal(risk[np.isfinite(risk)], own["risk"].to_numpy())
        closed = hourly[(hourly["hospital"] == panel.ylabel) & hourly["closed_at_hour_start"].astype(bool)]
        inside = closed["time"].between(own["time"].min(), own["time"].max())
        assert np.isnan(risk).sum() == inside.sum()
        assert [y for label, c, _, y in panel.lines if c == RP.model_color(MODEL) and label.startswith("_")] == [
            [threshold, threshold]
        ]
        # the external city's heat wave (its config), not the development city's
        heat = panel.spans["heat wave"]
        assert heat[0].normalize() == pd.Timestamp(TINY_EXTERNAL["heat_wave_start"])
        assert heat[1] - heat[0] < pd.Timedelta(days=TINY_EXTERNAL["heat_wave_days"])
    assert any(t.startswith(f"alarm on ({MODEL} >= {threshold:.2f}") for t in panels[0].legend)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install_system_deps.sh installs it)")
def test_external_figures_render_in_a_headless_browser(reported, tmp_path):
    page = (reported[0] / "report.html").read_text()
    assert all(f'<img alt="{figure}_external_{CITY}"' in page for figure in FIGURES)
    assert rendered_images(page, tmp_path) == ["1"] * page.count("<img ")


@pytest.mark.parametrize(
    "external,named",
    [
        ({"Emscher/stadt": "ROOT"}, "city name 'Emscher/stadt'"),
        ({CITY: "NOT_MEDS"}, re.escape(f"external['{CITY}']: ") + ".* is not a MEDS root"),
        ({CITY: "DEVELOPMENT"}, re.escape(f"external['{CITY}']: ") + ".* is the development data itself"),
    ],
)
def test_bad_external_argument_is_named(tiny_spec, known_model, external_root, tmp_path, external, named):
    roots = {"ROOT": external_root, "NOT_MEDS": tmp_path, "DEVELOPMENT": tiny_spec.root}
    external = {city: roots[root] for city, root in external.items()}
    with pytest.raises(ValueError, match=named):
        run_comparison(tiny_spec, {MODEL: known_model}, tmp_path / "eval", baselines=(), external=external)
