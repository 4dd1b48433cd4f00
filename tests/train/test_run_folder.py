"""A run folder holds one run: it resumes only with its own settings, falls back past a damaged checkpoint, and
works from any working directory."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from hamburg_mamba.cli import main
from hamburg_mamba.data.splits import TINY_CUTOFFS
from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config
from hamburg_mamba.train.checkpoint import (
    CHECKPOINTS,
    MODEL_FILE,
    OPTIMIZER_FILE,
    CorruptCheckpoint,
    RunSettingsMismatch,
    checkpoint_folders,
)


def _trainer(data, run_dir, spec=None, d_model=16, **cfg):
    config = build_model_config(data, preset="tiny", d_model=d_model)
    tc = TrainConfig(
        **{
            "epochs": 1,
            "max_steps": 3,
            "batch_size": 16,
            "warmup_steps": 1,
            "checkpoint_every": 2,
            "eval_max_pathways": 20,
            "progress": False,
            "num_threads": 1,
            "lr": 3e-3,
            **cfg,
        }
    )
    return Trainer(build_model(config, seed=tc.seed), data, tc, run_dir, data_spec=spec)


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.module.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def finished(tiny_data, tiny_spec, tmp_path_factory):
    """A finished 3-step run."""
    run = tmp_path_factory.mktemp("finished") / "run"
    trainer = _trainer(tiny_data, run, spec=tiny_spec.as_dict())
    assert trainer.fit()["steps"] == 3
    return run, _weights(trainer)


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "change,difference",
    [
        (dict(max_steps=5), "train_config.json max_steps: saved 3, now 5"),
        (dict(lr=1e-3), "train_config.json lr: saved 0.003, now 0.001"),
        (dict(seed=1), "train_config.json seed: saved 0, now 1"),
        (dict(d_model=32), "config.json d_model: saved 16, now 32"),
    ],
)
def test_other_settings_are_refused_and_the_run_is_left_alone(tiny_data, tiny_spec, finished, change, difference):
    run, _ = finished
    before = _files(run)
    with pytest.raises(RunSettingsMismatch) as exc:
        _trainer(tiny_data, run, spec=tiny_spec.as_dict(), **change).fit()
    assert difference in str(exc.value) and "overwrite" in str(exc.value)
    assert _files(run) == before


def test_other_data_split_is_refused(tiny_data, tiny_spec, finished):
    run, _ = finished
    spec = {**tiny_spec.as_dict(), "temporal_cutoffs": ("2023-08-17", "2023-08-21")}
    with pytest.raises(RunSettingsMismatch, match="data_spec.json temporal_cutoffs"):
        _trainer(tiny_data, run, spec=spec).fit()


def test_same_settings_resume_the_finished_run_without_training(tiny_data, tiny_spec, finished):
    run, weights = finished
    # threads and the progress bar do not change what is trained
    again = _trainer(tiny_data, run, spec=tiny_spec.as_dict(), num_threads=2, progress=False)
    summary = again.fit()
    assert (summary["steps"], summary["resumed_at_step"], summary["stopped"]) == (3, 3, "max_steps")
    assert _same(_weights(again), weights)


def test_overwrite_trains_afresh_with_the_new_settings(tiny_data, tiny_spec, tmp_path):
    run = tmp_path / "run"
    _trainer(tiny_data, run, spec=tiny_spec.as_dict()).fit()
    stale = run / CHECKPOINTS / "step-0000002"
    assert stale.is_dir()
    longer = _trainer(tiny_data, run, spec=tiny_spec.as_dict(), max_steps=5, lr=1e-3)
    summary = longer.fit(overwrite=True)
    assert (summary["steps"], summary["resumed_at_step"]) == (5, 0)
    assert json.loads((run / "train_config.json").read_text())["lr"] == 1e-3
    assert not stale.exists()  # the old run's checkpoints are gone, not mixed with the new ones
    fresh = _trainer(tiny_data, tmp_path / "fresh", spec=tiny_spec.as_dict(), max_steps=5, lr=1e-3)
    fresh.fit()
    assert _same(_weights(longer), _weights(fresh))


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tiny_data, tmp_path):
    full = _trainer(tiny_data, tmp_path / "full", max_steps=7)
    full.fit()
    assert _trainer(tiny_data, tmp_path / "run", max_steps=7).fit(stop_after=5) == {"interrupted_at": 5}
    latest, previous = checkpoint_folders(tmp_path / "run")[:2]
    (latest / MODEL_FILE).write_bytes(b"\x00" * 7)  # a truncated write: safetensors' "invalid header length"
    resumed = _trainer(tiny_data, tmp_path / "run", max_steps=7)
    with pytest.warns(UserWarning) as caught:
        summary = resumed.fit()
    message = " ".join(str(w.message) for w in caught)
    assert str(latest / MODEL_FILE) in message and str(previous) in message
    assert summary["resumed_at_step"] == int(previous.name.removeprefix("step-")) and summary["steps"] == 7
    assert _same(_weights(resumed), _weights(full))


def test_no_readable_checkpoint_names_every_file(tiny_data, tmp_path):
    assert _trainer(tiny_data, tmp_path / "run", max_steps=7).fit(stop_after=5) == {"interrupted_at": 5}
    latest, previous = checkpoint_folders(tmp_path / "run")[:2]
    (latest / MODEL_FILE).write_bytes(b"garbage")
    (previous / OPTIMIZER_FILE).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the tiny city's training labels of in_hospital_death hold one class: the trainer says so, by design
        warnings.filterwarnings("ignore", message="task .*: every training label is", category=UserWarning)
        with pytest.raises(CorruptCheckpoint) as exc:
            _trainer(tiny_data, tmp_path / "run", max_steps=7).fit()
    assert str(latest / MODEL_FILE) in str(exc.value) and str(previous / OPTIMIZER_FILE) in str(exc.value)


# ----------------------------------------------------------------------------------------------------------
# Through the command line

SPLIT = ["--split", "temporal", "--cutoffs", *TINY_CUTOFFS]


def _train_argv(data, run, *extra):
    return [
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
        *SPLIT,
        *extra,
    ]


def test_cli_refuses_a_rerun_with_other_settings_and_overwrite_applies_them(tiny_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train_argv(tiny_root, run)) == 0
    for extra, named in (
        (["--max-steps", "5"], "max_steps: saved 3, now 5"),
        (["--lr", "0.01"], "lr"),
        (["--set", "d_state=8"], "d_state"),
    ):
        argv = _train_argv(tiny_root, run) + extra
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--out" in err and named in err and "--overwrite" in err
    assert json.loads((run / "train_config.json").read_text())["lr"] == 2e-3
    assert main(_train_argv(tiny_root, run, "--lr", "0.01", "--max-steps", "4", "--overwrite")) == 0
    assert json.loads((run / "train_config.json").read_text())["lr"] == 0.01
    assert json.loads((run / "train_summary.json").read_text())["steps"] == 4


def test_run_folder_works_from_another_directory(tiny_root, tmp_path, monkeypatch, capsys):
    """Trained with a relative --data in one directory, monitored and evaluated from another."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    (here / "city").symlink_to(tiny_root, target_is_directory=True)
    monkeypatch.chdir(here)
    assert main(_train_argv("city", "runs/mamba")) == 0
    run = here / "runs" / "mamba"
    monkeypatch.chdir(elsewhere)
    assert main(["monitor", "--run", str(run), "--start", "2023-08-21 06:00", "--hours", "2"]) == 0
    assert "warning changes" in capsys.readouterr().out
    assert (
        main(
            [
                "evaluate",
                "--runs",
                f"mamba={run}",
                "--out",
                "eval",
                "--baselines",
                "",
                "--n-boot",
                "2",
                "--no-timeline",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert "mamba" in json.loads((elsewhere / "eval" / "metrics.json").read_text())["models"]


def test_old_relative_data_root_is_resolved_from_the_run_folder(tiny_root, tmp_path, monkeypatch, capsys):
    """Run folders written before roots were saved absolute hold the root as typed, relative to where train ran."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "city").symlink_to(tiny_root, target_is_directory=True)
    run = here / "runs" / "mamba"
    assert main(_train_argv(here / "city", run)) == 0
    spec = json.loads((run / "data_spec.json").read_text())
    assert Path(spec["root"]).is_absolute()
    (run / "data_spec.json").write_text(json.dumps({**spec, "root": "city"}))
    monkeypatch.chdir(tmp_path)
    assert main(["monitor", "--run", str(run), "--start", "2023-08-21 06:00", "--hours", "1"]) == 0
    (run / "data_spec.json").write_text(json.dumps({**spec, "root": "no/such/city"}))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["monitor", "--run", str(run), "--start", "2023-08-21 06:00", "--hours", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no/such/city" in err and "--data" in err


def test_demo_refuses_a_folder_holding_another_city(tmp_path, capsys):
    data = tmp_path / "demo" / "data"
    (data / "metadata").mkdir(parents=True)
    (tmp_path / "demo" / "demo_data.json").write_text(json.dumps({"tiny": False, "seed": 0}))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--tiny", "--out", str(tmp_path / "demo"), "--backbones", "mamba", "--jobs", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--tiny" in err and "--overwrite" in err
