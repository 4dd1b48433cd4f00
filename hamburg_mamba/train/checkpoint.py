"""Atomic, resumable checkpoints: safetensors for every tensor, JSON for everything else.

A run directory holds the best model in `save_pretrained` layout plus the training state:

    run/config.json, run/model.safetensors     best weights so far (tuning loss), loadable with from_pretrained
    run/schema.json                             fitted vocabularies and normalisation (DatasetSchema)
    run/train_config.json, run/data_spec.json   how it was trained and on which split
    run/history.json, run/train_summary.json    one row per evaluation; the last call's summary
    run/checkpoints/step-000120/                model.safetensors, optimizer.safetensors, state.json
    run/checkpoints/LATEST                      name of the newest complete checkpoint

Writes go to a temporary name and are renamed into place (`os.replace` is atomic on POSIX), and LATEST is
updated only after the checkpoint folder is complete, so a kill at any moment leaves either the old or the new
checkpoint, never a torn one. Leftover `*.tmp` folders from a killed write are ignored and removed. A checkpoint
damaged after it was written (a full disk, a bad copy) is skipped with a warning naming it, and resuming falls
back to the one before it, which is kept for this purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"
LATEST = "LATEST"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
KEEP_CHECKPOINTS = 2  # the newest and the one before it: enough to survive a kill during the next write
# What a run writes into its folder besides checkpoints/ (removed by clear_run_folder).
RUN_FILES = (
    "config.json",
    MODEL_FILE,
    "schema.json",
    "train_config.json",
    "data_spec.json",
    "history.json",
    "train_summary.json",
)
# Training settings that do not change what is trained, so a run may resume with other values.
RUNTIME_ONLY = {"train_config.json": ("progress", "num_threads")}
SHOWN_CHARS = 160  # a difference's values are cut to this length in messages


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def save_model(directory: Path, model, schema=None) -> None:
    """`save_pretrained` layout (config.json + model.safetensors) written atomically, plus schema.json."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "config.json", model.config.to_json())
    atomic_save_tensors(directory / MODEL_FILE, model.state_dict())
    if schema is not None:
        atomic_write_text(directory / "schema.json", schema.to_json())


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten an optimizer state_dict: tensors for safetensors ("state/<param>/<key>"), the rest as JSON."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"state/{idx}/{key}"] = value
            else:
                scalars[f"{idx}/{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, idx, key = name.split("/", 2)
        state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split("/", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(run_dir: Path, step: int, model, optimizer, state: dict) -> Path:
    """Write checkpoints/step-<step>/ completely, then point LATEST at it, then prune older ones."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    tmp = root / (name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / MODEL_FILE))
    opt_tensors, opt_meta = optimizer_tensors(optimizer)
    save_file({k: v.detach().cpu().contiguous() for k, v in opt_tensors.items()}, str(tmp / OPTIMIZER_FILE))
    rng = {"torch": torch.get_rng_state().tolist()}
    (tmp / STATE_FILE).write_text(json.dumps({**state, "optimizer": opt_meta, "rng": rng}))
    (tmp / "config.json").write_text(model.config.to_json())
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    atomic_write_text(root / LATEST, name)
    for old in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))[:-KEEP_CHECKPOINTS]:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """Complete checkpoints of the run, newest first: the one LATEST names, then the others by step. Leftover
    `*.tmp` folders of a killed write are removed."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    for stale in root.glob("*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    folders = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")), reverse=True)
    pointer = root / LATEST
    named = root / pointer.read_text().strip() if pointer.is_file() else None
    if named in folders:
        folders.remove(named)
        folders.insert(0, named)
    return folders


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint folder (see `checkpoint_folders`), or None when the run has none."""
    folders = checkpoint_folders(run_dir)
    return folders[0] if folders else None


class CorruptCheckpoint(ValueError):
    """No checkpoint of a run folder could be read."""


def load_latest_checkpoint(run_dir: Path, model, optimizer) -> tuple[Path, dict] | None:
    """Restore the newest readable checkpoint (see `load_checkpoint`); returns (its folder, the trainer state),
    or None when the run has no checkpoint. An unreadable one is skipped with a warning that names it and the
    one used instead; CorruptCheckpoint names every file tried when none can be read."""
    failures = []
    for folder in checkpoint_folders(run_dir):
        try:
            files = read_checkpoint(folder)
        except CorruptCheckpoint as e:
            failures.append(str(e))
            continue
        if failures:
            warnings.warn(
                f"resume: skipped unreadable checkpoint(s): {'; '.join(failures)}; resuming from {folder}", stacklevel=2
            )
        return folder, apply_checkpoint(files, model, optimizer)
    if failures:
        raise CorruptCheckpoint(
            f"resume: no checkpoint of {run_dir} can be read: {'; '.join(failures)} "
            "(train with --overwrite to start afresh)"
        )
    return None


def read_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    """(model tensors, optimizer tensors, state) of a checkpoint folder, read completely before any is applied;
    CorruptCheckpoint names the file that cannot be read."""
    path = Path(path)
    try:
        model_tensors = load_file(str(path / MODEL_FILE))
    except (OSError, SafetensorError) as e:
        raise CorruptCheckpoint(f"{path / MODEL_FILE} ({e})") from None
    try:
        opt_tensors = load_file(str(path / OPTIMIZER_FILE))
    except (OSError, SafetensorError) as e:
        raise CorruptCheckpoint(f"{path / OPTIMIZER_FILE} ({e})") from None
    try:
        state = json.loads((path / STATE_FILE).read_text())
        if not isinstance(state, dict) or not {"optimizer", "rng", "step"} <= set(state):
            raise ValueError("expected an object with optimizer, rng and step")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CorruptCheckpoint(f"{path / STATE_FILE} ({e})") from None
    return model_tensors, opt_tensors, state


def apply_checkpoint(files: tuple[dict, dict, dict], model, optimizer) -> dict:
    """Restore weights, optimizer and torch RNG from `read_checkpoint`'s result; returns the trainer state."""
    model_tensors, opt_tensors, state = files
    state = dict(state)
    model.load_state_dict(model_tensors)
    load_optimizer(optimizer, opt_tensors, state.pop("optimizer"))
    torch.set_rng_state(torch.tensor(state.pop("rng")["torch"], dtype=torch.uint8))
    return state


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore weights, optimizer and torch RNG; returns the trainer state saved with them."""
    return apply_checkpoint(read_checkpoint(path), model, optimizer)


# ----------------------------------------------------------------------------------------------------------
# One run per folder


class RunSettingsMismatch(ValueError):
    """The run folder holds a run whose saved settings differ from those asked for."""

    def __init__(self, run_dir: Path, differences: list[str]):
        super().__init__(
            f"run folder {run_dir} holds a run with other settings:\n  "
            + "\n  ".join(differences)
            + "\nA run folder holds one run, and a finished run is not extended (its learning-rate schedule was "
            "laid out for its own number of steps): overwrite (--overwrite) discards it and trains afresh; "
            "or choose another folder."
        )
        self.differences = differences


def settings_differences(run_dir: Path, settings: dict[str, dict]) -> list[str] | None:
    """Differences between `settings` (run file name -> its content as JSON would hold it) and the files the
    run folder holds, one line each; None when the folder holds no run."""
    run_dir = Path(run_dir)
    if not any((run_dir / f).exists() for f in RUN_FILES) and not (run_dir / CHECKPOINTS).exists():
        return None
    differences = []
    for name, now in settings.items():
        path = run_dir / name
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            differences.append(f"{name}: missing from the run folder")
            continue
        except (OSError, UnicodeDecodeError, ValueError) as e:
            differences.append(f"{name}: unreadable ({e})")
            continue
        now = json.loads(json.dumps(now, default=str))  # tuples -> lists, as saved
        if not isinstance(saved, dict):
            differences.append(f"{name}: expected a JSON object, got {_shown(saved)}")
            continue
        differences += _field_differences(name, _comparable(name, saved, run_dir), _comparable(name, now, run_dir))
    return differences


def _comparable(name: str, blob: dict, run_dir: Path) -> dict:
    """A settings file's content in the form the current code writes: old configs' object-form vocab_sizes and
    tasks as [name, value] pairs, an old data spec's relative root resolved (see resolve_data_root)."""
    from hamburg_mamba.data.splits import resolve_data_root

    blob = {k: v for k, v in blob.items() if k not in RUNTIME_ONLY.get(name, ())}
    if name == "config.json":
        for key in ("vocab_sizes", "tasks"):
            if isinstance(blob.get(key), dict):
                blob[key] = [[k, v] for k, v in blob[key].items()]
    if name == "data_spec.json" and isinstance(blob.get("root"), str):
        try:
            blob["root"] = str(resolve_data_root(blob["root"], run_dir))
        except FileNotFoundError:
            pass  # compared as written
    return blob


def _field_differences(name: str, saved: dict, now: dict) -> list[str]:
    absent = "(absent)"
    out = []
    for key in list(saved) + [k for k in now if k not in saved]:
        old, new = saved.get(key, absent), now.get(key, absent)
        if old != new:
            out.append(f"{name} {key}: saved {_shown(old)}, now {_shown(new)}")
    return out


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def clear_run_folder(run_dir: Path) -> None:
    """Remove what an earlier run wrote into the folder (RUN_FILES and checkpoints/); other files stay."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
