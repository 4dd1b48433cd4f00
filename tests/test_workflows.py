"""The typed workflows behind the CLI (hamburg_mamba.workflows): bad settings are refused with an error naming
the setting, before any data is read; the CLI shows a workflow's error as the option's; `evaluate --external`
names its option for every malformed city."""

import json
import math

import pytest

from hamburg_mamba import cli, workflows
from hamburg_mamba.data.splits import MEDS_MARKER, TINY_CUTOFFS, DataSpec
from hamburg_mamba.workflows import InvalidArgument


@pytest.fixture
def spec(tmp_path):
    return DataSpec(root=str(tmp_path / "city"), split="temporal", temporal_cutoffs=TINY_CUTOFFS)


def _refused(make, argument: str) -> str:
    with pytest.raises(InvalidArgument) as e:
        make()
    assert e.value.argument == argument, e.value
    return e.value.message


@pytest.mark.parametrize(
    "change,argument",
    [
        ({"lr": 0.0}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1.5}, "epochs"),
        ({"epochs": True}, "epochs"),  # a bool is not a count
        ({"max_steps": 0}, "max_steps"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"seed": -1}, "seed"),
        ({"threads": 0}, "threads"),
        ({"backbone": "lstm"}, "backbone"),
        ({"task_weighting": "equal"}, "task_weighting"),
        ({"overrides": {"d_model": "abc"}}, "overrides"),
        ({"overrides": {"vocab_sizes": {}}}, "overrides"),  # the data decides it
    ],
)
def test_train_settings_name_the_bad_setting(spec, tmp_path, change, argument):
    _refused(lambda: workflows.TrainSettings(data=spec, out=tmp_path / "run", **change), argument)


def test_train_settings_keep_none_where_it_means_the_default_and_make_the_root_absolute(spec, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    relative = DataSpec(root="city", split="temporal", temporal_cutoffs=TINY_CUTOFFS)
    settings = workflows.TrainSettings(data=relative, out="run", max_steps=None, threads=None)
    assert settings.data.root == str(tmp_path / "city")
    tc = settings.train_config()
    assert (tc.max_steps, tc.num_threads, tc.lr) == (None, None, 2e-3)


def _meds_root(path):
    (path / MEDS_MARKER).parent.mkdir(parents=True)
    (path / MEDS_MARKER).write_text("{}")
    return path


def test_evaluate_settings_name_the_bad_setting(spec, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    other = _meds_root(tmp_path / "other")

    def settings(**change):
        return workflows.EvaluateSettings(**{"data": spec, "runs": {"m": run}, "out": tmp_path / "e", **change})

    assert "no such run folder" in _refused(lambda: settings(runs={"m": tmp_path / "none"}), "runs")
    assert "unknown ['bogus']" in _refused(lambda: settings(baselines=("news2", "bogus")), "baselines")
    _refused(lambda: settings(n_boot=0), "n_boot")
    assert "not a MEDS root" in _refused(lambda: settings(external={"X": tmp_path / "none"}), "external")
    _meds_root(tmp_path / "city")
    assert "development data" in _refused(lambda: settings(external={"X": tmp_path / "city"}), "external")
    assert settings(external={"X": str(other)}).external == {"X": other}


def test_demo_monitor_and_replicate_settings_name_the_bad_setting(tmp_path):
    _refused(lambda: workflows.DemoSettings(out=tmp_path, backbones=("mamba", "lstm")), "backbones")
    _refused(lambda: workflows.DemoSettings(out=tmp_path, jobs=0), "jobs")
    _refused(lambda: workflows.MonitorSettings(run=tmp_path, start="someday"), "start")
    _refused(lambda: workflows.MonitorSettings(run=tmp_path, start="2023-08-21", every=0.0), "every")
    _refused(lambda: workflows.MonitorSettings(run=tmp_path / "none", start="2023-08-21"), "run")
    message = _refused(lambda: workflows.replicate(tmp_path, training_seeds=(1, 1), tiny=True), "training_seeds")
    assert message.startswith("expected distinct")
    assert not (tmp_path / "city-0").exists()  # refused before anything was generated


def test_report_names_a_folder_without_an_evaluation(tmp_path):
    assert "metrics.json" in _refused(lambda: workflows.report(tmp_path, tmp_path / "r"), "eval")


def test_generate_refuses_what_is_not_a_city_config(tmp_path):
    _refused(lambda: workflows.generate({"seed": 0}, tmp_path / "x"), "config")


def test_invalid_argument_survives_a_process_boundary():
    import pickle

    e = pickle.loads(pickle.dumps(InvalidArgument("tiny/out", "held another city")))
    assert (e.argument, e.message, str(e)) == ("tiny/out", "held another city", "tiny/out: held another city")


@pytest.mark.parametrize(
    "setting,option", [("batch_size", "--batch-size"), ("overrides", "--set"), ("tiny/out", "--tiny/--out")]
)
def test_a_workflow_setting_is_shown_as_its_option(setting, option):
    assert cli.setting_option(setting) == option


def _cli_error(argv, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_evaluate_external_errors_name_the_option(tmp_path, capsys):
    evaluate = ["evaluate", "--out", str(tmp_path / "e"), "--data", str(_meds_root(tmp_path / "city"))]
    assert "--external: expected NAME=ROOT, got 'Emscherstadt'" in _cli_error(
        evaluate + ["--external", "Emscherstadt"], capsys
    )
    other = str(_meds_root(tmp_path / "other"))
    twice = evaluate + ["--external", f"E={other}", "--external", f"E={other}"]
    assert "--external: the name 'E' is given twice" in _cli_error(twice, capsys)
    message = _cli_error(evaluate + ["--external", f"E={tmp_path / 'none'}"], capsys)
    assert message.startswith("hamburg-mamba evaluate: error: --external: E=") and "not a MEDS root" in message


def test_demo_records_the_external_city_it_generated(tmp_path, capsys):
    """A demo folder holding another external city is refused like its data folder, naming --overwrite."""
    out = tmp_path / "demo"
    (out / "data").mkdir(parents=True)
    (out / workflows.DEMO_DATA_FILE).write_text(json.dumps({"tiny": True, "seed": 0}))
    (out / "external").mkdir()
    (out / workflows.DEMO_EXTERNAL_FILE).write_text(json.dumps({"city": "Emscherstadt", "tiny": False, "seed": 0}))
    message = _cli_error(["demo", "--tiny", "--out", str(out), "--backbones", "mamba", "--jobs", "1"], capsys)
    assert "--tiny/--out" in message and "external" in message and "--overwrite" in message
