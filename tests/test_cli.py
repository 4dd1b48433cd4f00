"""The command line: --help on every command, generate -> train -> evaluate -> report -> monitor on the
two-week test city, and `demo --tiny` (parallel training, the tiny external city)."""

import json
import subprocess
import sys

import pytest
import torch

from hamburg_mamba import workflows
from hamburg_mamba.cli import build_parser, main

COMMANDS = ("generate", "train", "evaluate", "report", "monitor", "demo")


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: hamburg-mamba " + command in capsys.readouterr().out


def test_module_entry_point_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "hamburg_mamba.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


def cli_error(argv: list[str], capsys) -> str:
    """The one-line error `main(argv)` exits with (status 2, argparse style)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_arguments_are_named(capsys):
    assert "--runs: expected NAME=RUN_DIR" in cli_error(["evaluate", "--runs", "no-equals-sign", "--out", "x"], capsys)
    assert "--backbones: unknown ['lstm']" in cli_error(["demo", "--backbones", "lstm", "--out", "x"], capsys)


TRAIN = ["train", "--data", "d", "--out", "o"]


@pytest.mark.parametrize(
    "argv,named",
    [
        (["generate", "--out", "x", "--days", "0"], "--days"),
        (["generate", "--out", "x", "--scale", "-1"], "--scale"),
        (["generate", "--out", "x", "--scale", "nan"], "--scale"),
        (TRAIN + ["--split", "crisis"], "--holdout-window"),
        (TRAIN + ["--split", "temporal", "--holdout-window", "2023-08-01", "2023-08-05"], "--holdout-window"),
        (TRAIN + ["--split", "crisis", "--holdout-window", "2023-08-05", "2023-08-01"], "--holdout-window"),
        (TRAIN + ["--cutoffs", "2023-08-21", "2023-08-18"], "--cutoffs"),
        (TRAIN + ["--cutoffs", "2023-08-18", "soon"], "--cutoffs"),
        (TRAIN + ["--split", "subject", "--cutoffs", "2023-08-18", "2023-08-21"], "--cutoffs"),
        (TRAIN + ["--epochs", "-1"], "--epochs"),
        (TRAIN + ["--epochs", "0"], "--epochs"),
        (TRAIN + ["--batch-size", "0"], "--batch-size"),
        (TRAIN + ["--lr", "-0.1"], "--lr"),
        (TRAIN + ["--lr", "inf"], "--lr"),
        (TRAIN + ["--max-steps", "0"], "--max-steps"),
        (TRAIN + ["--warmup-steps", "-1"], "--warmup-steps"),
        (TRAIN + ["--eval-every", "0"], "--eval-every"),
        (TRAIN + ["--patience", "0"], "--patience"),
        (TRAIN + ["--threads", "0"], "--threads"),
        (TRAIN + ["--set", "d_model=abc"], "d_model"),
        (TRAIN + ["--set", "n_layers=-1"], "n_layers"),
        (TRAIN + ["--set", "dropout=1.5"], "dropout"),
        (TRAIN + ["--set", "vocab_sizes={}"], "--set"),
        (TRAIN + ["--set", "no_such_field=1"], "--set"),
        (["evaluate", "--out", "x", "--data", "d", "--baselines", "bogus"], "--baselines"),
        (["evaluate", "--out", "x", "--data", "d", "--n-boot", "-5"], "--n-boot"),
        (["evaluate", "--out", "x", "--data", "d", "--catboost-iterations", "0"], "--catboost-iterations"),
        (["evaluate", "--out", "x", "--data", "d", "--threads", "-1"], "--threads"),
        (["evaluate", "--out", "x"], "--data"),
        (["evaluate", "--out", "x", "--runs", "a=/no/such/run"], "--runs"),
        (["monitor", "--run", ".", "--start", "2023-08-21", "--every", "0"], "--every"),
        (["monitor", "--run", ".", "--start", "2023-08-21", "--every", "-1"], "--every"),
        (["monitor", "--run", ".", "--start", "2023-08-21", "--hours", "0"], "--hours"),
        (["monitor", "--run", ".", "--start", "someday"], "--start"),
        (["monitor", "--run", "/no/such/run", "--start", "2023-08-21"], "--run"),
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--jobs", "0"], "--jobs"),
        (["demo", "--n-boot", "-1"], "--n-boot"),
    ],
)
def test_bad_argument_values_are_named(argv, named, capsys):
    message = cli_error(argv, capsys)
    assert named in message and "error" in message, message


def test_set_error_names_field_value_and_expectation(capsys):
    message = cli_error(TRAIN + ["--set", "d_model=abc"], capsys)
    assert "d_model" in message and "'abc'" in message and "an int >= 1" in message


def test_malformed_run_files_are_named(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "data_spec.json").write_text("{not json")
    assert "data_spec.json" in cli_error(["monitor", "--run", str(run), "--start", "2023-08-21"], capsys)
    (run / "data_spec.json").write_text(json.dumps({"root": str(tmp_path), "split": "temporal"}))
    (run / "schema.json").write_text('{"categorical_vocab": ')
    message = cli_error(["monitor", "--run", str(run), "--start", "2023-08-21", "--data", str(tmp_path)], capsys)
    assert "--run" in message and "schema.json" in message


def test_pipeline_end_to_end(tmp_path, capsys):
    data, run, ev, rep = (tmp_path / n for n in ("data", "run", "eval", "report"))
    assert main(["generate", "--tiny", "--out", str(data)]) == 0
    split = ["--split", "temporal", "--cutoffs", "2023-08-18", "2023-08-21"]
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(run),
                "--preset",
                "tiny",
                "--max-steps",
                "3",
                "--batch-size",
                "16",
                "--eval-max-pathways",
                "20",
                "--no-progress",
                "--threads",
                "1",
                *split,
            ]
        )
        == 0
    )
    assert json.loads((run / "train_summary.json").read_text())["steps"] == 3
    assert (
        main(
            [
                "evaluate",
                "--runs",
                f"mamba={run}",
                "--out",
                str(ev),
                "--n-boot",
                "5",
                "--catboost-iterations",
                "10",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    metrics = json.loads((ev / "metrics.json").read_text())
    assert {"mamba", "catboost", "news2", "oracle"} <= set(metrics["models"])
    assert "closures" in metrics
    capsys.readouterr()
    assert main(["report", "--eval", str(ev), "--out", str(rep)]) == 0
    printed = capsys.readouterr().out
    assert "| task | prevalence | mamba |" in printed
    for f in ("README.md", "roc.png", "calibration.png", "decision_curves.png", "closure_timeline.png"):
        assert (rep / f).stat().st_size > 0, f
    assert "## Goal check" in (rep / "README.md").read_text()
    assert main(["monitor", "--run", str(run), "--start", "2023-08-21 06:00", "--hours", "4"]) == 0
    assert "warning changes" in capsys.readouterr().out


def test_parser_has_every_command():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(COMMANDS) <= set(sub.choices)


def test_tiny_demo_trains_in_parallel_and_validates_on_the_external_city(tmp_path, capfd):
    """`demo --tiny` end to end: the backbones trained in parallel worker processes give the weights of the same
    training run in this process (seeded, single-threaded), and the evaluation scores the tiny external city:
    the hospitals it reports are the three of the other city the demo configured, none seen in training."""
    from safetensors.torch import load_file

    from hamburg_mamba.data.cities import EXTERNAL, EXTERNAL_HOSPITALS
    from hamburg_mamba.data.splits import TINY_CUTOFFS, DataSpec

    out = tmp_path / "demo"
    argv = ["demo", "--tiny", "--out", str(out), "--backbones", "mamba,gru", "--jobs", "2", "--n-boot", "2"]
    assert main(argv) == 0
    printed = capfd.readouterr().out  # the "started" lines come from the worker processes
    assert "[demo] train mamba: started" in printed and f"report: {out / 'report' / 'README.md'}" in printed
    timings = json.loads((out / "timings.json").read_text())
    assert {"generate", "generate external", "train mamba", "train gru", "evaluate", "report"} <= set(timings)
    external = json.loads((out / "eval" / "metrics.json").read_text())["external"]
    assert list(external) == [EXTERNAL]
    configured = sorted(h.name for h in EXTERNAL_HOSPITALS[: workflows.TINY_EXTERNAL_HOSPITALS])
    assert external[EXTERNAL]["hospitals"] == external[EXTERNAL]["unseen_hospitals"] == configured

    spec = DataSpec(root=str(out / "data"), split="temporal", temporal_cutoffs=TINY_CUTOFFS)
    demo = workflows.DemoSettings(out=tmp_path / "seq", tiny=True, progress=False)
    workflows.train(workflows.demo_train_settings(demo, "mamba", spec), log=lambda line: None)
    par = load_file(str(out / "runs" / "mamba" / "model.safetensors"))
    seq = load_file(str(tmp_path / "seq" / "runs" / "mamba" / "model.safetensors"))
    assert par.keys() == seq.keys() and all(torch.equal(par[k], seq[k]) for k in par)


def test_a_failed_worker_training_is_named_with_its_log(tmp_path):
    """A run that fails in its worker process stops the demo with the run's name and the end of its log."""
    from hamburg_mamba.data.splits import TINY_CUTOFFS, DataSpec

    spec = DataSpec(root=str(tmp_path / "no-city"), split="temporal", temporal_cutoffs=TINY_CUTOFFS)
    runs = {"broken": workflows.TrainSettings(data=spec, out=tmp_path / "run", preset="tiny", threads=1)}
    with pytest.raises(workflows.TrainingFailed, match="training broken failed") as e:
        workflows.train_in_parallel(runs, 2, tmp_path / "logs", lambda name, seconds: None)
    assert "no-city" in str(e.value) and "Traceback" in str(e.value)  # the tail of the worker's log


@pytest.mark.parametrize("hours,every", [(4.0, 0.0), (4.0, -1.0), (4.0, float("nan")), (0.0, 1.0)])
def test_replay_refuses_a_step_that_would_never_advance(hours, every):
    from hamburg_mamba.eval.monitor import replay

    with pytest.raises(ValueError, match="every_h" if hours else "hours"):
        replay(None, None, "2023-08-21 06:00", hours, every_h=every)


def test_evaluate_names_a_malformed_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert "data_spec.json: missing" in cli_error(
        ["evaluate", "--runs", f"m={run}", "--out", str(tmp_path / "e")], capsys
    )
    (run / "schema.json").write_text("[]")
    message = cli_error(
        ["evaluate", "--runs", f"m={run}", "--out", str(tmp_path / "e"), "--data", str(tmp_path)], capsys
    )
    assert "--runs" in message and "schema.json" in message
