"""The command line: --help on every command, and generate -> train -> evaluate -> report -> monitor on the
two-week test city."""

import json
import subprocess
import sys

import pytest
import torch

from hamburg_mamba.cli import build_parser, main

COMMANDS = ("generate", "train", "evaluate", "report", "monitor", "demo")


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: hamburg-mamba " + command in capsys.readouterr().out


def test_module_entry_point_lists_commands():
    out = subprocess.run([sys.executable, "-m", "hamburg_mamba.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


def test_bad_arguments_are_named(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--runs", "no-equals-sign", "--out", "x"])
    with pytest.raises(SystemExit, match="--backbones: unknown"):
        main(["demo", "--backbones", "lstm", "--out", "x"])


def test_pipeline_end_to_end(tmp_path, capsys):
    data, run, ev, rep = (tmp_path / n for n in ("data", "run", "eval", "report"))
    assert main(["generate", "--tiny", "--out", str(data)]) == 0
    split = ["--split", "temporal", "--cutoffs", "2023-08-18", "2023-08-21"]
    assert main(["train", "--data", str(data), "--out", str(run), "--preset", "tiny", "--max-steps", "3",
                 "--batch-size", "16", "--eval-max-pathways", "20", "--no-progress", "--threads", "1", *split]) == 0
    assert json.loads((run / "train_summary.json").read_text())["steps"] == 3
    assert main(["evaluate", "--runs", f"mamba={run}", "--out", str(ev), "--n-boot", "5",
                 "--catboost-iterations", "10", "--threads", "1"]) == 0
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


def test_demo_trains_in_parallel_processes_with_the_in_process_results(tmp_path):
    """`demo` trains backbones in parallel processes; each run is seeded and single-threaded, so its weights are
    bit-identical to the same `train` command run in this process."""
    from safetensors.torch import load_file

    from hamburg_mamba.cli import _train_in_parallel

    data = tmp_path / "data"
    assert main(["generate", "--tiny", "--out", str(data)]) == 0
    split = ["--split", "temporal", "--cutoffs", "2023-08-18", "2023-08-21"]

    def command(bb, out):
        return ["train", "--data", str(data), "--out", str(out), "--backbone", bb, "--preset", "tiny",
                "--max-steps", "3", "--batch-size", "16", "--eval-max-pathways", "20", "--threads", "1", *split]

    stamps = []
    _train_in_parallel({bb: command(bb, tmp_path / "par" / bb) for bb in ("mamba", "gru")}, 2, tmp_path / "par",
                       lambda name, t: stamps.append(name))
    assert sorted(stamps) == ["train gru", "train mamba"]
    assert main(command("mamba", tmp_path / "seq") + ["--no-progress"]) == 0
    par = load_file(str(tmp_path / "par" / "mamba" / "model.safetensors"))
    seq = load_file(str(tmp_path / "seq" / "model.safetensors"))
    assert par.keys() == seq.keys() and all(torch.equal(par[k], seq[k]) for k in par)
    with pytest.raises(SystemExit, match="training lstm failed"):
        _train_in_parallel({"lstm": command("lstm", tmp_path / "bad")}, 2, tmp_path / "bad", lambda *a: None)
