"""Stage 5: nurses per hospital, unit and shift.

Nurses are scheduled per unit and shift (PpUGV day 06-22, night 22-06); sick leave rises with the last week's
workload; a ratio violation is mean census / present nurses above the PpUGV limit. The oracle enumerates the
binomial number of nurses present.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hamburg_mamba.data.synthetic.config import SyntheticConfig
from hamburg_mamba.data.synthetic.constants import (
    DAY_SHIFT_START_H,
    NIGHT_SHIFT_START_H,
    SICK_BASE,
    SICK_PER_OVERLOAD,
    SIM_DTYPE,
    UNITS,
)
from hamburg_mamba.data.synthetic.records import City, HospitalState, StaffShifts

RECENT_SHIFTS = 14  # shifts in the last week: sick leave follows the recent workload
MAX_P_SICK = 0.5
DAY_SHIFT_H, NIGHT_SHIFT_H = 16.0, 8.0


def shift_index(cfg: SyntheticConfig, t: np.ndarray) -> np.ndarray:
    """Shift number of simulation time t (hours): 0 is the partial night before the first 06:00, then
    day (06-22) and night (22-06) alternate."""
    x = np.asarray(t, dtype=SIM_DTYPE) + pd.Timestamp(cfg.start).hour - DAY_SHIFT_START_H
    day = np.floor(x / 24.0)
    within = x - 24.0 * day
    return (2 * day + (within >= NIGHT_SHIFT_START_H - DAY_SHIFT_START_H) + 1).astype(np.int64)


def staff_shifts(cfg: SyntheticConfig, city: City, state: HospitalState, rng: np.random.Generator) -> StaffShifts:
    H, n, nu = cfg.hours, city.n_hospitals, len(UNITS)
    beds = state.beds
    shift = shift_index(cfg, np.arange(H) + 0.5)  # (H,)
    S = int(shift.max()) + 1
    n_hours = np.bincount(shift, minlength=S)
    census = np.zeros((S, n, nu))  # mean census per shift
    np.add.at(census, shift, state.census.astype(float))
    census /= n_hours[:, None, None]
    first_hour = np.searchsorted(shift, np.arange(S))
    start_hour = pd.Timestamp(cfg.start).hour
    night = np.array(
        [(start_hour + h) % 24 >= NIGHT_SHIFT_START_H or (start_hour + h) % 24 < DAY_SHIFT_START_H for h in first_hour]
    )  # (S,)
    limit_all = beds.patients_per_nurse_limit[None, :, :].repeat(n, 0)  # (N, U, 2)
    scheduled = np.zeros((S, n, nu), dtype=np.int64)
    sick = np.zeros((S, n, nu), dtype=np.int64)
    p_sick = np.zeros((S, n, nu))
    limit = np.zeros((S, n, nu))
    overload = np.zeros((S, n, nu))
    for s in range(S):  # loop per shift, vectorised over hospitals and units
        k = int(night[s])
        scheduled[s] = beds.nurses[:, :, k]
        limit[s] = limit_all[:, :, k]
        lo = max(0, s - RECENT_SHIFTS)
        recent = overload[lo:s].mean(0) if s > lo else np.zeros((n, nu))
        p_sick[s] = np.clip(SICK_BASE + SICK_PER_OVERLOAD * recent, 0.0, MAX_P_SICK)
        sick[s] = rng.binomial(scheduled[s], p_sick[s])
        present = np.maximum(scheduled[s] - sick[s], 0)
        overload[s] = np.maximum(census[s] / np.maximum(present, 1) / limit[s] - 1.0, 0.0)
    present = scheduled - sick
    per_nurse = census / np.maximum(present, 1)
    violation = per_nurse > limit
    p_violation, expected_per_nurse = _present_nurse_oracles(census, scheduled, p_sick, limit)
    shift_len = np.where(night, NIGHT_SHIFT_H, DAY_SHIFT_H)
    overtime = np.maximum(census / limit - present, 0.0) * shift_len[:, None, None]
    ppugv = np.array([u != "ED" for u in UNITS])
    s_idx, h_idx, u_idx = np.meshgrid(np.arange(S), np.arange(n), np.arange(nu), indexing="ij")
    start_h = np.where(first_hour > 0, first_hour, 0)
    frame = pd.DataFrame(
        {
            "hospital": pd.Categorical.from_codes(h_idx.ravel(), categories=list(cfg.hospitals)),
            "unit": pd.Categorical.from_codes(u_idx.ravel(), categories=list(UNITS)),
            "shift_index": s_idx.ravel(),
            "shift_start": pd.Timestamp(cfg.start) + pd.to_timedelta(start_h[s_idx.ravel()], unit="h"),
            "night": night[s_idx.ravel()],
            "nurses_scheduled": scheduled.ravel(),
            "nurses_sick": sick.ravel(),
            "nurses_present": present.ravel(),
            "mean_census": census.ravel().astype(np.float32),
            "patients_per_nurse": per_nurse.ravel().astype(np.float32),
            "ppugv_limit": np.where(ppugv[u_idx.ravel()], limit.ravel(), np.nan).astype(np.float32),
            "ratio_violation": violation.ravel() & ppugv[u_idx.ravel()],
            "p_ratio_violation": np.where(ppugv[u_idx.ravel()], p_violation.ravel(), np.nan).astype(np.float32),
            "expected_patients_per_nurse": expected_per_nurse.ravel().astype(np.float32),
            "p_sick": p_sick.ravel().astype(np.float32),
            "overtime_h": overtime.ravel().astype(np.float32),
        }
    )
    return StaffShifts(
        n_shifts=S,
        patients_per_nurse=per_nurse,
        violation=violation,
        p_violation=p_violation,
        expected_patients_per_nurse=expected_per_nurse,
        ppugv_unit=ppugv,
        frame=frame,
    )


def _present_nurse_oracles(census, scheduled, p_sick, limit):
    """P(violation) and E[patients per nurse] over the binomial number of nurses present, (S, N, U) each: the pmf
    by its recursion (scheduled is at most a few dozen)."""
    q = 1.0 - p_sick
    pmf = (1.0 - q) ** scheduled  # P(present = 0)
    p_violation = np.zeros_like(census)
    expected = np.zeros_like(census)
    for x in range(int(scheduled.max()) + 1):
        w = census / max(x, 1)
        p_violation += pmf * (w > limit)
        expected += pmf * w
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(q < 1.0, q / np.maximum(1.0 - q, 1e-300), 0.0)
        pmf = np.where(x < scheduled, pmf * (scheduled - x) / (x + 1) * ratio, 0.0)
    return p_violation, expected
