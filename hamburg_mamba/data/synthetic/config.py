"""What the generator is asked for (`SyntheticConfig`, the external city's preset) and what it returns
(`SyntheticData`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hamburg_mamba.data.cities import EXTERNAL_HOSPITALS, check_hospital_set
from hamburg_mamba.data.synthetic.constants import DEFAULT_HOSPITALS, HEAT_WAVE_UPLIFT


@dataclass
class SyntheticConfig:
    """Everything the generator draws from; same config and seed give byte-identical output."""

    seed: int = 0  # all randomness flows from this through numpy SeedSequence.spawn
    start: str = "2023-08-01"  # about four months: a summer heat wave and the start of the flu season
    days: int = 122
    hospitals: tuple[str, ...] = DEFAULT_HOSPITALS  # names of one city of cities.HOSPITALS
    scale: float = 0.08  # fraction of the 2016 ED volume simulated (demo cohort: about 8.5 k pathways)
    heat_wave_start: str = "2023-08-14"
    heat_wave_days: int = 9
    heat_wave_level: str = "extreme"  # key of HEAT_WAVE_UPLIFT
    flu_peak: str = "2023-11-24"
    flu_peak_share: float = 0.08  # flu share of ED visits in a severe week (docs/domain.md)
    flu_width_days: float = 14.0  # Gaussian sd of the wave around its peak
    mci_time: str = "2023-09-21 15:00"  # mass-casualty incident
    mci_casualties: int = 40  # SK I/II/III split 40-20-40
    seasonal_amplitude: float = 0.04  # annual cosine, peak mid-January (assumption)
    readmission_base: float = 0.08  # baseline 30-day readmission probability at average risk (assumption)
    # Closure trigger: NEDOCS as a z-score against the hospital's own running baseline (CLOSURE_BASELINE_H), so a
    # 4-bed and a 30-bed ED close equally often when equally strained relative to their usual state (an absolute
    # NEDOCS threshold calibrated on the default city gave 3.4x the target with all 14 EDs at scale 0.63).
    closure_z_mid: float = 2.6  # z at which the hourly closure hazard is CLOSURE_HAZARD_MAX / 2
    closure_z_width: float = 0.35
    max_los_days: float = 60.0  # planned stays are capped here so the hazard grid stays bounded

    def __post_init__(self):
        self.hospitals = check_hospital_set(self.hospitals, "SyntheticConfig.hospitals")
        if self.heat_wave_level not in HEAT_WAVE_UPLIFT:
            raise ValueError(f"SyntheticConfig.heat_wave_level: expected one of {list(HEAT_WAVE_UPLIFT)}")
        if self.days < 2 or self.scale <= 0:
            raise ValueError("SyntheticConfig: days must be >= 2 and scale > 0")
        for name in ("start", *CRISIS_DATES):
            try:
                pd.Timestamp(getattr(self, name))
            except (ValueError, TypeError):
                raise ValueError(
                    f"SyntheticConfig.{name}: expected a date such as 2023-08-14 or "
                    f'"2023-09-21 15:00", got {getattr(self, name)!r}'
                ) from None
        for name, low in (("seed", 0), ("heat_wave_days", 0), ("mci_casualties", 0)):
            if not isinstance(getattr(self, name), (int, np.integer)) or getattr(self, name) < low:
                raise ValueError(f"SyntheticConfig.{name}: expected an int >= {low}, got {getattr(self, name)!r}")
        if not 0.0 <= self.flu_peak_share < 1.0:
            raise ValueError(f"SyntheticConfig.flu_peak_share: expected a share in [0, 1), got {self.flu_peak_share!r}")
        if not self.flu_width_days > 0:
            raise ValueError(f"SyntheticConfig.flu_width_days: expected > 0, got {self.flu_width_days!r}")

    @classmethod
    def external(cls, **changes) -> SyntheticConfig:
        """The second city for external validation (cities.EXTERNAL_HOSPITALS, all figures synthetic) in another
        season: spring 2024 with a late influenza wave, an incident in April and an early-summer heat wave.
        `changes` override any field (e.g. scale=0.01 for a test)."""
        return cls(**{**EXTERNAL_PRESET, **changes})

    @property
    def hours(self) -> int:
        return self.days * 24

    @property
    def end(self) -> pd.Timestamp:
        """The first instant after the simulated window [start, end)."""
        return pd.Timestamp(self.start) + pd.Timedelta(days=self.days)

    def outside_window(self) -> list[str]:
        """The crisis date fields (CRISIS_DATES) that lie outside [start, end): such a crisis is not simulated,
        or only its tail (a flu wave whose peak lies after the window)."""
        return [
            name
            for name in CRISIS_DATES
            if not pd.Timestamp(self.start) <= pd.Timestamp(getattr(self, name)) < self.end
        ]

    def hours_since_start(self, when: str) -> float:
        return (pd.Timestamp(when) - pd.Timestamp(self.start)) / pd.Timedelta(hours=1)


# Fields of SyntheticConfig that date a crisis: the heat wave's first day, the flu wave's peak, the incident.
CRISIS_DATES = ("heat_wave_start", "flu_peak", "mci_time")
# The external city: another hospital set (cities.py), another season and crisis timing. Spring: influenza
# waves in Germany peak between January and March (RKI seasonal reports), so a late wave peaks in early March;
# the early-summer heat wave is shorter and one level milder than Hamburg's August one (assumptions).
EXTERNAL_PRESET = dict(
    start="2024-02-15",
    days=122,
    hospitals=tuple(h.name for h in EXTERNAL_HOSPITALS),
    heat_wave_start="2024-06-03",
    heat_wave_days=6,
    heat_wave_level="severe",
    flu_peak="2024-03-05",
    flu_peak_share=0.05,
    flu_width_days=12.0,
    mci_time="2024-04-26 08:30",
    mci_casualties=30,
)


@dataclass
class SyntheticData:
    """The generator's output as pandas tables (MEDS layout for events and labels)."""

    events: pd.DataFrame  # MEDS data: subject_id, time, code, numeric_value, text_value + extra columns
    labels: dict[str, pd.DataFrame]  # task -> MEDS label table
    # task -> MEDS label table whose float_value is the clairvoyant reference: the probability given the realised
    # path (future bed times, plans, dispositions, closure hazards), beyond any model's reach; see fair_bound.py
    oracle: dict[str, pd.DataFrame]
    hospital_hourly: pd.DataFrame  # one row per hospital and hour
    staff_shifts: pd.DataFrame  # one row per hospital, unit and shift
    pathways: pd.DataFrame  # one row per pathway with its latent quantities (ground truth)
    config: SyntheticConfig
    drivers: pd.DataFrame = field(default=None)  # city-level hourly drivers: temperature, flu share, heat flag
    # task -> fair bound (subject_id, prediction_time, value, se): P(label | simulator state at the prediction
    # time), the label table's rows; the course tasks and readmission_30d (hamburg_mamba.data.fair_bound)
    bound: dict[str, pd.DataFrame] = field(default=None)
    # one row per hospital: what a model may know of it (hamburg_mamba.data.hospitals): name, ED visits per
    # year as simulated, beds by unit as sized, level of care; written as metadata/hospitals.parquet
    hospitals: pd.DataFrame = field(default=None)
