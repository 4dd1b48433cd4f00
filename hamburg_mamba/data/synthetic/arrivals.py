"""Stage 2: every first arrival of the period, drawn at once (no loop); readmissions join during the simulation.

Poisson counts per hour, hospital district and kind with the diurnal, weekly and seasonal profiles; heat-wave
excess (elderly, dehydration/renal/respiratory), an influenza wave, one mass-casualty incident (MANV, SK I/II/III
40-20-40).
"""

from __future__ import annotations

import numpy as np

from hamburg_mamba.data.synthetic.config import SyntheticConfig
from hamburg_mamba.data.synthetic.constants import (
    EMS_SHARE,
    HEAT_WAVE_UPLIFT,
    ICD_BASE_WEIGHT,
    ICD_FLU,
    ICD_HEAT_WEIGHT,
    ICD_INJURY,
)
from hamburg_mamba.data.synthetic.records import Arrivals, City, Drivers

# Arrival kinds (Arrivals.arrival_kind); readmissions are READMISSION, drawn by course.schedule_readmissions.
WALK_IN, EMS, HEAT_EXCESS, FLU, MCI, READMISSION = range(6)
ARRIVAL_KINDS = ("walk_in", "ems", "heat_excess", "flu", "mci", "readmission")
FLU_BY_EMS = 0.45  # share of the influenza excess that comes by ambulance (assumption)
MCI_SPREAD_H = 1.5  # casualties of the incident reach the system within 90 minutes
MCI_SK_SHARES = (0.4, 0.2, 0.4)  # SK I/II/III planning split


def draw_arrivals(cfg: SyntheticConfig, city: City, drivers: Drivers, rng: np.random.Generator) -> Arrivals:
    """All first arrivals of the period, sorted by time (then district hospital)."""
    base = drivers.diurnal * drivers.weekly * drivers.seasonal  # (H,)
    rate = base[:, None] * city.arrivals_per_hour[None, :]  # (H, N) expected arrivals without crises
    heat_up = HEAT_WAVE_UPLIFT[cfg.heat_wave_level] * drivers.heat_wave
    flu_extra = drivers.flu_share / (1.0 - drivers.flu_share)  # flu share of *all* visits equals flu_share
    # the first four kinds; the flu excess is split into walk-ins and ambulances below
    rate_by_kind = np.stack(
        [
            rate * (1 - EMS_SHARE),
            rate * EMS_SHARE,
            rate * EMS_SHARE * heat_up[:, None],
            rate * flu_extra[:, None],
        ],
        axis=-1,
    )  # (H, N, 4)
    counts = rng.poisson(rate_by_kind)
    hour, hospital, kind = np.nonzero(counts)
    repeat = counts[hour, hospital, kind]
    hour, hospital, kind = np.repeat(hour, repeat), np.repeat(hospital, repeat), np.repeat(kind, repeat)
    t = hour + rng.random(hour.size)
    m = t.size
    ems = (kind == EMS) | (kind == HEAT_EXCESS) | ((kind == FLU) & (rng.random(m) < FLU_BY_EMS))
    # Age: walk-ins younger; EMS older; heat excess concentrated in the elderly (85+), docs/domain.md.
    age = np.where(ems, rng.normal(66, 20, m), rng.normal(43, 20, m))
    age = np.where(kind == HEAT_EXCESS, rng.normal(84, 7, m), age)
    age = np.clip(age, 0.5, 102.0)
    icd_base = ICD_BASE_WEIGHT / ICD_BASE_WEIGHT.sum()
    icd_heat = ICD_HEAT_WEIGHT / ICD_HEAT_WEIGHT.sum()
    icd = np.where(kind == HEAT_EXCESS, choice(rng, icd_heat, m), choice(rng, icd_base, m))
    icd = np.where(kind == FLU, ICD_FLU, icd)
    mci_category = np.full(m, -1, dtype=np.int64)

    # Mass-casualty incident: casualties within 90 minutes, SK I/II/III allocated 40-20-40 (planning split).
    n_mci = int(cfg.mci_casualties)
    if n_mci > 0:
        t_mci = cfg.hours_since_start(cfg.mci_time)
        categories = np.repeat([0, 1, 2], split_counts(n_mci, MCI_SK_SHARES))
        origin = int(np.argmin(city.distance_km.sum(1)))  # the most central hospital's district
        t = np.concatenate([t, t_mci + rng.random(n_mci) * MCI_SPREAD_H])
        hospital = np.concatenate([hospital, np.full(n_mci, origin)])
        kind = np.concatenate([kind, np.full(n_mci, MCI)])
        ems = np.concatenate([ems, np.ones(n_mci, bool)])
        age = np.concatenate([age, np.clip(rng.normal(40, 16, n_mci), 4, 90)])
        icd = np.concatenate([icd, np.full(n_mci, ICD_INJURY)])
        mci_category = np.concatenate([mci_category, categories])
    order = np.lexsort((hospital, t))
    return Arrivals(
        onset_time=t,
        district_hospital=hospital,
        arrival_kind=kind,
        ems=ems,
        age=age,
        icd_chapter=icd,
        mci_category=mci_category,
    ).select(order)


def choice(rng: np.random.Generator, p: np.ndarray, m: int) -> np.ndarray:
    """m draws of an index with probabilities proportional to p (one uniform each)."""
    return np.searchsorted(np.cumsum(p), rng.random(m) * p.sum(), side="right").clip(0, p.size - 1)


def split_counts(n: int, shares: tuple[float, ...]) -> np.ndarray:
    """Largest-remainder rounding of n into the given shares (exact planning split)."""
    raw = np.array(shares) * n
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: n - out.sum()]] += 1
    return out
