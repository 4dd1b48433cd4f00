"""NEWS2 (Royal College of Physicians, 2017): the aggregate early-warning score from seven vital signs.

Bands are the published table (../shared/DOMAIN.md, "Early-warning baselines"), SpO2 scale 1. Each function
takes raw measurements (numpy arrays, any shape) and returns the points 0-3 of that parameter; a missing
measurement (NaN) scores 0 points, as a ward does not score what was not measured, and `news2_score` reports
how many rows had no measurement of each parameter so the caller can say so.
"""

from __future__ import annotations

import numpy as np

# Aggregate-score bands of the clinical response (RCP 2017).
LOW_MAX = 4  # 0-4 low
MEDIUM_MIN, HIGH_MIN = 5, 7  # 5-6 medium (urgent response), >= 7 high (emergency)
SINGLE_PARAMETER_RED = 3  # a 3 in any one parameter: low-medium

PARAMETERS = ("respiration_rate", "spo2", "on_oxygen", "systolic_bp", "pulse", "consciousness", "temperature")


def _bands(x: np.ndarray, edges: list[tuple[float, float, int]]) -> np.ndarray:
    """Points of the first inclusive band [lo, hi] containing x; 0 where none does or x is NaN."""
    x = np.asarray(x, dtype=np.float64)
    points = np.zeros(x.shape, dtype=np.int64)
    done = np.isnan(x)
    for lo, hi, p in edges:
        hit = ~done & (x >= lo) & (x <= hi)
        points[hit] = p
        done |= hit
    return points


INF = np.inf
# (lowest, highest, points): inclusive bounds. Integer-valued parameters use the table's integers directly;
# temperature (one decimal) uses the half-way points between the table's adjacent decimals so that a value
# such as 35.05 (between 35.0 and 35.1) falls in a defined band.
RESPIRATION_BANDS = [(-INF, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, INF, 3)]
SPO2_SCALE1_BANDS = [(-INF, 91, 3), (92, 93, 2), (94, 95, 1), (96, INF, 0)]
SYSTOLIC_BANDS = [(-INF, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, INF, 3)]
PULSE_BANDS = [(-INF, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, INF, 3)]
TEMPERATURE_BANDS = [(-INF, 35.05, 3), (35.05, 36.05, 1), (36.05, 38.05, 0), (38.05, 39.05, 1), (39.05, INF, 2)]


def _integer_bands(x, bands):
    # Between two integer bands (e.g. 8.5 breaths/min after averaging) round half up, as a chart would.
    x = np.asarray(x, dtype=np.float64)
    return _bands(np.floor(x + 0.5), bands)


def respiration_points(rr) -> np.ndarray:
    return _integer_bands(rr, RESPIRATION_BANDS)


def spo2_points(spo2) -> np.ndarray:
    """SpO2 scale 1 (patients without hypercapnic respiratory failure)."""
    return _integer_bands(spo2, SPO2_SCALE1_BANDS)


def oxygen_points(on_oxygen) -> np.ndarray:
    """Supplemental oxygen (1) scores 2, air (0) scores 0."""
    o2 = np.asarray(on_oxygen, dtype=np.float64)
    return np.where(np.nan_to_num(o2, nan=0.0) > 0.5, 2, 0).astype(np.int64)


def systolic_points(sbp) -> np.ndarray:
    return _integer_bands(sbp, SYSTOLIC_BANDS)


def pulse_points(pulse) -> np.ndarray:
    return _integer_bands(pulse, PULSE_BANDS)


def consciousness_points(acvpu) -> np.ndarray:
    """ACVPU coded 0 alert, 1 new confusion, 2 voice, 3 pain, 4 unresponsive: anything but alert scores 3."""
    a = np.asarray(acvpu, dtype=np.float64)
    return np.where(np.nan_to_num(a, nan=0.0) > 0.5, 3, 0).astype(np.int64)


def temperature_points(temp) -> np.ndarray:
    return _bands(temp, TEMPERATURE_BANDS)


POINTS = {
    "respiration_rate": respiration_points,
    "spo2": spo2_points,
    "on_oxygen": oxygen_points,
    "systolic_bp": systolic_points,
    "pulse": pulse_points,
    "consciousness": consciousness_points,
    "temperature": temperature_points,
}


def news2_score(vitals: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """Aggregate NEWS2 (0-20) per row and, per parameter, the number of rows where it was missing (NaN).

    vitals: parameter name (PARAMETERS) -> raw values, all the same shape.
    """
    unknown = sorted(set(vitals) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"news2_score: unknown parameters {unknown}; expected names from {PARAMETERS}")
    missing_params = [p for p in PARAMETERS if p not in vitals]
    if missing_params:
        raise ValueError(f"news2_score: vitals lacks {missing_params} (pass NaN arrays for unmeasured values)")
    shapes = {np.shape(v) for v in vitals.values()}
    if len(shapes) != 1:
        raise ValueError(f"news2_score: every parameter needs the same shape, got {shapes}")
    total = sum(POINTS[p](vitals[p]) for p in PARAMETERS)
    missing = {p: int(np.isnan(np.asarray(vitals[p], dtype=np.float64)).sum()) for p in PARAMETERS}
    return total, missing


def news2_risk_band(total, any_three) -> np.ndarray:
    """'low', 'low-medium', 'medium' or 'high' from the aggregate and whether any parameter scored 3."""
    total = np.asarray(total)
    any_three = np.asarray(any_three, dtype=bool)
    band = np.where(total >= HIGH_MIN, "high", np.where(total >= MEDIUM_MIN, "medium",
                    np.where(any_three, "low-medium", "low")))
    return band
