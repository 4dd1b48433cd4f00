"""Which data and which split a run uses, written beside the model so evaluation reconnects identically.

The demo holds out time, not random subjects (docs/domain.md, TRIPOD+AI): train before the tuning cut-off,
tune between the cut-offs, evaluate after the second cut-off, which on the default synthetic Hamburg
(2023-08-01 .. 2023-12-01) is the whole rise of the influenza wave (peak 2023-11-24); the heat wave
(14-23 August) and the mass-casualty incident (21 September) fall in the training period.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from hamburg_mamba.data import SyntheticConfig

US_PER_HOUR = 3.6e9
DATA_SPEC_FILE = "data_spec.json"
MEDS_MARKER = Path("metadata") / "dataset.json"  # every MEDS root has it
DEMO_CUTOFFS = ("2023-10-20", "2023-11-06")

# A two-week, three-hospital city with a short heat wave, an MCI and a flu peak inside the window: seconds to
# generate, used by the tests and `hamburg-mamba demo --tiny`.
TINY_SYNTHETIC = dict(
    days=14,
    scale=0.03,
    hospitals=("Asklepios Harburg", "Asklepios Nord", "Asklepios Barmbek"),
    start="2023-08-10",
    heat_wave_start="2023-08-14",
    heat_wave_days=3,
    mci_time="2023-08-18 15:00",
    flu_peak="2023-08-22",
)
TINY_CUTOFFS = ("2023-08-18", "2023-08-21")


def tiny_synthetic_config(seed: int = 0) -> SyntheticConfig:
    return SyntheticConfig(seed=seed, **TINY_SYNTHETIC)


@dataclass
class DataSpec:
    """Arguments of `connect_hamburg_data` that decide the split; saved as data_spec.json with an absolute root,
    so that a run folder works from any directory."""

    root: str
    split: str = "temporal"  # file | subject | temporal | crisis (see connect_hamburg_data)
    temporal_cutoffs: tuple[str, str] | None = DEMO_CUTOFFS
    holdout_window: tuple[str, str] | None = None
    seed: int = 0

    def connect(self, schema=None, oracle=None):
        """The connected data; `oracle` (task -> label table) replaces the folder's oracle for those tasks
        (the fair bound: `connect(oracle=fair_bound.read_bound(root))`)."""
        from hamburg_mamba.data import connect_hamburg_data

        kwargs = dict(split=self.split, seed=self.seed, schema=schema, oracle=oracle)
        if self.split == "temporal":
            kwargs["temporal_cutoffs"] = tuple(self.temporal_cutoffs)
        if self.split == "crisis":
            kwargs["holdout_window"] = tuple(self.holdout_window)
        data = connect_hamburg_data(Path(self.root), **kwargs)
        if self.split == "temporal":
            mask_labels_after_cutoffs(data, self.temporal_cutoffs)
        return data

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, blob: dict) -> DataSpec:
        names = [f.name for f in fields(cls)]
        if not isinstance(blob, dict) or not isinstance(blob.get("root"), str) or set(blob) - set(names):
            raise ValueError(f"DataSpec: expected an object with a string 'root' and fields from {names}, got {blob!r}")
        return cls(**blob)

    @classmethod
    def load(cls, run_dir: str | Path, resolve_root: bool = True) -> DataSpec:
        """The data spec of a run folder, its root made absolute (see `resolve_data_root`); resolve_root=False
        keeps the root as saved (the caller replaces it)."""
        path = Path(run_dir) / DATA_SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (is {run_dir} a run folder written by `hamburg-mamba train`?)")
        try:
            spec = cls.from_dict(json.loads(path.read_text()))
        except ValueError as e:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}: {e}") from None
        if resolve_root:
            spec.root = str(resolve_data_root(spec.root, run_dir))
        return spec


def resolve_data_root(root: str, run_dir: str | Path) -> Path:
    """The absolute MEDS root a run folder's data spec names.

    Roots are saved absolute. Older run folders saved the path as typed, relative to the directory `train` ran
    in, which was not recorded: it is looked up from the run folder upwards (`--out` was most likely typed
    relative to that same directory), then from the working directory. FileNotFoundError lists the places tried.
    """
    path = Path(root)
    if path.is_absolute():
        if not path.is_dir():
            raise FileNotFoundError(f"data root {path} of run folder {run_dir} does not exist (moved? pass --data)")
        return path
    run = Path(run_dir).resolve()
    tried = [base / path for base in (run, *run.parents, Path.cwd())]
    for candidate in tried:
        if (candidate / MEDS_MARKER).is_file():
            return candidate
    raise FileNotFoundError(
        f"data root {root!r} of run folder {run_dir} is relative and no MEDS root (with "
        f"{MEDS_MARKER}) was found at {[str(t) for t in tried]}; pass --data"
    )


def event_times_us(data) -> np.ndarray:
    """(N,) exact absolute time of every laid-out event in microseconds since 1970 (static rows: pathway start)."""
    return data.encoded.time_us


def mask_labels_after_cutoffs(data, cutoffs) -> dict[str, int]:
    """Hide training labels at or after the tuning cut-off, and tuning labels at or after the held-out cut-off.

    The temporal split assigns whole subjects by their first pathway, so a long stay that starts in the
    training period reaches into the tuning and held-out periods. Crisis labels (closures) are shared by every
    patient of a hospital, so training on those late labels would teach the model the held-out closures.
    Returns the number of labels hidden per task (also appended to the data's accounting notes).
    """
    enc = data.encoded
    c0, c1 = (pd.Timestamp(c).to_datetime64().astype("datetime64[us]").astype(np.int64) for c in cutoffs)
    t = event_times_us(data)
    split = np.repeat(enc.split, enc.lengths)
    late = ((split == "train") & (t >= c0)) | ((split == "tuning") & (t >= c1))
    hidden = {}
    for task, (val, mask, orc) in enc.event_labels.items():
        drop = mask & late
        hidden[task] = int(drop.sum())
        enc.event_labels[task] = (val, mask & ~late, orc)
    end = data.pathways["end"].to_numpy().astype("datetime64[us]").astype(np.int64)
    late_p = ((enc.split == "train") & (end >= c0)) | ((enc.split == "tuning") & (end >= c1))
    for task, (val, mask, orc) in enc.pathway_labels.items():
        hidden[task] = int((mask & late_p).sum())
        enc.pathway_labels[task] = (val, mask & ~late_p, orc)
    data.accounting.notes.append(
        f"temporal split: labels after the split's own period hidden from training and "
        f"tuning (cut-offs {tuple(cutoffs)}): {hidden}"
    )
    return hidden
