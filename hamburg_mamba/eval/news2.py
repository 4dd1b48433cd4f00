"""NEWS2 (Royal College of Physicians, 2017): the aggregate early-warning score from seven vital signs.

Bands are the published chart (RCP 2017, chart 1), SpO2 scale 1; a fractional value is banded as it would be
charted, rounded half up to the chart's resolution (`_chart_points`). Each function
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


INF = np.inf
# The published chart, as (lowest, highest, points) in the values a clinician records: whole numbers, and
# temperature to one decimal (RCP 2017, chart 1; SpO2 scale 1).
RESPIRATION_BANDS = [(-INF, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, INF, 3)]
SPO2_SCALE1_BANDS = [(-INF, 91, 3), (92, 93, 2), (94, 95, 1), (96, INF, 0)]
SYSTOLIC_BANDS = [(-INF, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, INF, 3)]
PULSE_BANDS = [(-INF, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, INF, 3)]
TEMPERATURE_BANDS = [(-INF, 35.0, 3), (35.1, 36.0, 1), (36.1, 38.0, 0), (38.1, 39.0, 1), (39.1, INF, 2)]
WHOLE, TENTH = 1.0, 0.1  # the chart's resolution: whole numbers; temperature in tenths of a degree
# Values are compared at this many decimals: float32 storage (a few 1e-6 off at 40 degrees) must not move
# 35.05 below its band edge, and no charted or averaged value has finer meaningful digits.
COMPARE_DECIMALS = 4


def _chart_points(x, bands, resolution: float) -> np.ndarray:
    """Points of the chart band x falls in once rounded half up to the chart's resolution; 0 where x is NaN.

    The chart lists only recordable values (20 and 21 breaths/min, 35.0 and 35.1 degrees), so a fractional
    value (an average, a device reading) is read the way it would be charted: rounded to the chart's
    resolution, halves upwards. Equivalently each band is the half-open interval
    [lowest - resolution / 2, highest + resolution / 2): 20.5 breaths/min scores as 21, 35.05 degrees as 35.1.
    Halves go up because that is the common convention (and the cautious one above the normal range); below
    it the bands are read the same way so that every parameter follows one rule.
    """
    x = np.round(np.asarray(x, dtype=np.float64), COMPARE_DECIMALS)
    points = np.zeros(x.shape, dtype=np.int64)
    for lo, hi, p in bands:
        lower = np.round(lo - resolution / 2, COMPARE_DECIMALS)
        upper = np.round(hi + resolution / 2, COMPARE_DECIMALS)
        points[(x >= lower) & (x < upper)] = p  # NaN compares False: 0 points
    return points


def respiration_points(rr) -> np.ndarray:
    return _chart_points(rr, RESPIRATION_BANDS, WHOLE)


def spo2_points(spo2) -> np.ndarray:
    """SpO2 scale 1 (patients without hypercapnic respiratory failure)."""
    return _chart_points(spo2, SPO2_SCALE1_BANDS, WHOLE)


def oxygen_points(on_oxygen) -> np.ndarray:
    """Supplemental oxygen (1) scores 2, air (0) scores 0."""
    o2 = np.asarray(on_oxygen, dtype=np.float64)
    return np.where(np.nan_to_num(o2, nan=0.0) > 0.5, 2, 0).astype(np.int64)


def systolic_points(sbp) -> np.ndarray:
    return _chart_points(sbp, SYSTOLIC_BANDS, WHOLE)


def pulse_points(pulse) -> np.ndarray:
    return _chart_points(pulse, PULSE_BANDS, WHOLE)


def consciousness_points(acvpu) -> np.ndarray:
    """ACVPU coded 0 alert, 1 new confusion, 2 voice, 3 pain, 4 unresponsive: anything but alert scores 3."""
    a = np.asarray(acvpu, dtype=np.float64)
    return np.where(np.nan_to_num(a, nan=0.0) > 0.5, 3, 0).astype(np.int64)


def temperature_points(temp) -> np.ndarray:
    return _chart_points(temp, TEMPERATURE_BANDS, TENTH)


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
    band = np.where(
        total >= HIGH_MIN, "high", np.where(total >= MEDIUM_MIN, "medium", np.where(any_three, "low-medium", "low"))
    )
    return band
