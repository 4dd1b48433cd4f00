"""Which data and which split a run uses, written beside the model so evaluation reconnects identically.

The demo holds out time, not random subjects (DOMAIN.md, TRIPOD+AI): train before the tuning cut-off,
tune between the cut-offs, evaluate after the second cut-off, which on the default synthetic Hamburg
(2023-08-01 .. 2023-12-01) is the whole rise of the influenza wave (peak 2023-11-24); the heat wave
(14-23 August) and the mass-casualty incident (21 September) fall in the training period.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from hamburg_mamba.data import SyntheticConfig

DEMO_CUTOFFS = ("2023-10-20", "2023-11-06")

# A two-week, three-hospital city with a short heat wave, an MCI and a flu peak inside the window: seconds to
# generate, used by the tests and `hamburg-mamba demo --tiny`.
TINY_SYNTHETIC = dict(days=14, scale=0.03, hospitals=("Asklepios Harburg", "Asklepios Nord", "Asklepios Barmbek"),
                      start="2023-08-10", heat_wave_start="2023-08-14", heat_wave_days=3,
                      mci_time="2023-08-18 15:00", flu_peak="2023-08-22")
TINY_CUTOFFS = ("2023-08-18", "2023-08-21")


def tiny_synthetic_config(seed: int = 0) -> SyntheticConfig:
    return SyntheticConfig(seed=seed, **TINY_SYNTHETIC)


@dataclass
class DataSpec:
    """Arguments of `connect_hamburg_data` that decide the split; saved as data_spec.json."""

    root: str
    split: str = "temporal"  # file | subject | temporal | crisis (see connect_hamburg_data)
    temporal_cutoffs: tuple[str, str] | None = DEMO_CUTOFFS
    holdout_window: tuple[str, str] | None = None
    seed: int = 0

    def connect(self, schema=None):
        from hamburg_mamba.data import connect_hamburg_data

        kwargs = dict(split=self.split, seed=self.seed, schema=schema)
        if self.split == "temporal":
            kwargs["temporal_cutoffs"] = tuple(self.temporal_cutoffs)
        if self.split == "crisis":
            kwargs["holdout_window"] = tuple(self.holdout_window)
        return connect_hamburg_data(Path(self.root), **kwargs)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, blob: dict) -> DataSpec:
        return cls(**blob)
