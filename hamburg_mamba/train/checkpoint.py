"""Atomic, resumable checkpoints: safetensors for every tensor, JSON for everything else.

A run directory holds the best model in `save_pretrained` layout plus the training state:

    run/config.json, run/model.safetensors     best weights so far (tuning loss), loadable with from_pretrained
    run/schema.json                             fitted vocabularies and normalisation (DatasetSchema)
    run/train_config.json, run/data_spec.json   how it was trained and on which split
    run/history.json                            one row per evaluation
    run/checkpoints/step-000120/                model.safetensors, optimizer.safetensors, state.json
    run/checkpoints/LATEST                      name of the newest complete checkpoint

Writes go to a temporary name and are renamed into place (`os.replace` is atomic on POSIX), and LATEST is
updated only after the checkpoint folder is complete, so a kill at any moment leaves either the old or the new
checkpoint, never a torn one. Leftover `*.tmp` folders from a killed write are ignored and removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"
LATEST = "LATEST"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
KEEP_CHECKPOINTS = 2  # the newest and the one before it: enough to survive a kill during the next write


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


def latest_checkpoint(run_dir: Path) -> Path | None:
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if not pointer.exists():
        return None
    for stale in root.glob("*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    path = root / pointer.read_text().strip()
    if not (path / STATE_FILE).exists():
        raise FileNotFoundError(f"checkpoint {path}: LATEST points at a folder without {STATE_FILE}")
    return path


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore weights, optimizer and torch RNG; returns the trainer state saved with them."""
    path = Path(path)
    model.load_state_dict(load_file(str(path / MODEL_FILE)))
    state = json.loads((path / STATE_FILE).read_text())
    load_optimizer(optimizer, load_file(str(path / OPTIMIZER_FILE)), state.pop("optimizer"))
    torch.set_rng_state(torch.tensor(state.pop("rng")["torch"], dtype=torch.uint8))
    return state
