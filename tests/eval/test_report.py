"""The report (eval/report.py, tripod.py, participants.py, report_html.py) on the tiny city: the participant
table against the generator's own pathway table, the model specifications against the run folder, one colour
per model in every figure, the zoomed calibration and the decision-curve range, and report.html opened in a
headless Chromium with every figure rendered."""

import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba import cli
from hamburg_mamba.data.splits import TINY_CUTOFFS
from hamburg_mamba.eval import replicate as R
from hamburg_mamba.eval import report as RP
from hamburg_mamba.eval.baselines import CatBoostSettings
from hamburg_mamba.eval.experiment import run_comparison

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_TIMEOUT_S = 120
# Written into the DOM once the page has loaded: per <img>, 1 when it decoded to a picture with a width.
RENDER_PROBE = (
    "<script>window.addEventListener('load', () => { document.body.setAttribute('data-rendered', "
    "Array.from(document.images).map(i => (i.complete && i.naturalWidth > 0) ? 1 : 0).join(',')); });"
    "</script>"
)


@pytest.fixture(scope="module")
def reported(tiny_root, tmp_path_factory):
    """A tiny mamba run (6 steps), evaluated with CatBoost, NEWS2 and the references, and its report."""
    base = tmp_path_factory.mktemp("report")
    recipe = cli.replicate_recipe(tiny=True)
    run_dir = base / "runs" / "mamba"
    R.train(R.TrainJob(str(tiny_root), TINY_CUTOFFS, str(run_dir), "mamba", 3, recipe))
    from hamburg_mamba.data.splits import DataSpec

    spec = DataSpec(root=str(tiny_root), split="temporal", temporal_cutoffs=TINY_CUTOFFS)
    run_comparison(
        spec,
        {"mamba": str(run_dir)},
        base / "eval",
        n_boot=5,
        timeline=True,
        catboost=CatBoostSettings(iterations=20, seed=5),
    )
    RP.write_report(base / "eval", base / "report")
    return base


def test_participants_match_the_generators_pathway_table(reported, tiny_root, tiny_data):
    parts = json.loads((reported / "eval" / "metrics.json").read_text())["participants"]
    truth = pd.read_parquet(tiny_root / "system" / "pathways.parquet")
    split = pd.Series(tiny_data.encoded.split, index=tiny_data.encoded.pathway_id)
    truth = truth[truth["pathway_id"].isin(split.index)].assign(split=lambda t: split[t["pathway_id"]].to_numpy())
    for s, group in truth.groupby("split"):
        p = parts[s]
        assert p["pathways"] == len(group) and p["patients"] == group["subject_id"].nunique()
        assert p["sex"] == group["sex"].value_counts().sort_index().to_dict()
        triage = group["triage_group"].dropna().astype(int).astype(str).value_counts().to_dict()
        assert {k: v for k, v in p["triage_group"].items() if k != "not recorded"} == triage
        assert p["arrival_mode"].get("ambulance", 0) == int(group["ems"].sum())
        assert p["age"]["median"] == pytest.approx(np.median(group["age"]), abs=1e-3)  # float32 in the encoder


def test_outcome_counts_match_the_scored_rows(reported):
    metrics = json.loads((reported / "eval" / "metrics.json").read_text())
    held = metrics["participants"]["held_out"]["outcomes"]
    pred = pd.read_parquet(reported / "eval" / "predictions.parquet")
    for task in ("adverse_event", "closure_6h"):
        m = pred[f"{task}|mask"]
        assert held[task]["rows"] == int(m.sum()) == metrics["tasks"][task]["n"]
        assert held[task]["positive_rows"] == int(pred.loc[m, f"{task}|label"].sum())
        assert held[task]["positive_pathways"] == pred.loc[m & (pred[f"{task}|label"] == 1), "pathway_id"].nunique()


def test_report_states_the_models_settings_and_the_single_seed(reported):
    md = (reported / "report" / "README.md").read_text()
    tc = json.loads((reported / "runs" / "mamba" / "train_config.json").read_text())
    row = next(line for line in md.splitlines() if line.startswith("| mamba | mamba |"))
    assert f"| {tc['seed']} |" in row and f"| {tc['lr']:g} |" in row and f"| {tc['batch_size']} |" in row
    for heading in (
        "Intended use",
        "Participants",
        "Outcomes and prediction times",
        "Missing data",
        "Sample size",
        "Models",
        "Limitations",
    ):
        assert f"## {heading} (TRIPOD+AI" in md
    assert "One seed" in md and "hamburg-mamba replicate" in md
    assert "iterations 20," in md and "seed 5 (early stopping" in md


@pytest.mark.parametrize("figure", ["roc.png", "calibration.png", "decision_curves.png"])
def test_each_model_keeps_its_colour_in_every_figure(reported, figure):
    import matplotlib.image

    pixels = (matplotlib.image.imread(reported / "report" / figure)[..., :3] * 255).round().astype(int)
    colours = {tuple(int(RP.MODEL_COLORS[m][i : i + 2], 16) for i in (1, 3, 5)) for m in ("mamba", "catboost")}
    present = {tuple(c) for c in np.unique(pixels.reshape(-1, 3), axis=0)}
    assert colours <= present


def test_palette_gives_every_model_its_own_colour():
    models = [m for m in RP.MODEL_ORDER]
    assert len({RP.model_color(m) for m in models}) == len(models)
    assert RP.model_color("a model nobody named") == RP.OTHER_COLOR


def test_calibration_axes_follow_the_models_not_the_oracle():
    y = np.r_[np.zeros(95), np.ones(5)]
    model = np.r_[np.full(95, 0.02), np.full(5, 0.08)]
    oracle = y.copy()  # reaches 1: would stretch the axes to 0-1
    top = RP.calibration_zoom(y, {"mamba": model, "oracle": oracle})
    # the model's highest equal-mass bin: mean prediction 0.08 / 2 + 0.02 / 2 = 0.05, observed 0.5
    assert top == pytest.approx(min(1.0, RP.CALIBRATION_MARGIN * 0.5))
    # a 0.1 % outcome: every bin of 100 rows at most 1 % observed, so the axes stop at the minimum range
    assert RP.calibration_zoom(np.r_[np.zeros(999), 1.0], {"m": np.full(1000, 0.001)}) == RP.CALIBRATION_MIN_RANGE


def test_decision_curves_span_half_to_twenty_percent_for_rare_outcomes():
    rare = RP.decision_thresholds(0.01)
    assert rare[0] == pytest.approx(0.005) and rare[-1] == pytest.approx(0.20)
    assert RP.decision_thresholds(0.2)[-1] == pytest.approx(0.5)


def test_figure_names_of_external_cities_are_plain_and_distinct():
    cities = ["Düsseldorf", "Bad Homburg", "Bad-Homburg", "!!"]
    assert list(RP.figure_suffixes(cities).values()) == [
        "_external_Dusseldorf",
        "_external_Bad_Homburg",
        "_external_Bad_Homburg_2",
        "_external_city",
    ]


def test_html_is_self_contained(reported):
    page = (reported / "report" / "report.html").read_text()
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    pngs = sorted(p.name for p in (reported / "report").glob("*.png"))
    assert len(sources) == len(pngs) == 4
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)
    assert "<table>" in page and "<h2>Participants (TRIPOD+AI items 5, 20)</h2>" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/install_system_deps.sh installs it)")
def test_html_figures_render_in_a_headless_browser(reported, tmp_path):
    page = (reported / "report" / "report.html").read_text()
    flags = rendered_images(page, tmp_path)
    assert flags == ["1"] * page.count("<img "), f"figures not rendered: {flags}"


def rendered_images(page: str, tmp_path) -> list[str]:
    """Per <img> of the page as headless Chromium loaded it: "1" when it decoded to a picture with a width."""
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", RENDER_PROBE + "</body>"))
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
    ).stdout
    rendered = re.search(r'data-rendered="([^"]*)"', dom)
    assert rendered, f"the page did not finish loading in chromium; DOM starts {dom[:300]!r}"
    return rendered.group(1).split(",")
