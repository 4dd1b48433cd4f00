"""NEWS2 against the published RCP 2017 chart: every band boundary, both sides, and fractional values.

Fractional values (averages, device readings) are banded as they would be charted: rounded half up to the
chart's resolution (whole numbers; temperature to 0.1 degree), i.e. 20.5 breaths/min scores as 21.
"""

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest

from hamburg_mamba.eval.news2 import (
    PARAMETERS,
    consciousness_points,
    news2_risk_band,
    news2_score,
    oxygen_points,
    pulse_points,
    respiration_points,
    spo2_points,
    systolic_points,
    temperature_points,
)

# (value, points) pairs read off the published table: the last value of each band and the first of the next.
RESPIRATION = [(4, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (40, 3)]
SPO2 = [(80, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SYSTOLIC = [(60, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (250, 3)]
PULSE = [
    (30, 3),
    (40, 3),
    (41, 1),
    (50, 1),
    (51, 0),
    (90, 0),
    (91, 1),
    (110, 1),
    (111, 2),
    (130, 2),
    (131, 3),
    (180, 3),
]
TEMPERATURE = [
    (34.0, 3),
    (35.0, 3),
    (35.1, 1),
    (36.0, 1),
    (36.1, 0),
    (38.0, 0),
    (38.1, 1),
    (39.0, 1),
    (39.1, 2),
    (41.0, 2),
]


@pytest.mark.parametrize(
    "fn, table",
    [
        (respiration_points, RESPIRATION),
        (spo2_points, SPO2),
        (systolic_points, SYSTOLIC),
        (pulse_points, PULSE),
        (temperature_points, TEMPERATURE),
    ],
    ids=["respiration", "spo2_scale1", "systolic", "pulse", "temperature"],
)
def test_band_boundaries_match_published_table(fn, table):
    values = np.array([v for v, _ in table], dtype=np.float64)
    expected = np.array([p for _, p in table])
    np.testing.assert_array_equal(fn(values), expected)
    # float32 storage of one-decimal temperatures must not move a value across a boundary
    np.testing.assert_array_equal(fn(values.astype(np.float32)), expected)


# The chart itself (RCP 2017, chart 1), in recorded values: (lowest, highest, points), and its resolution.
CHART = {
    "respiration": ([(None, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, None, 3)], "1", (0, 60)),
    "spo2_scale1": ([(None, 91, 3), (92, 93, 2), (94, 95, 1), (96, None, 0)], "1", (50, 100)),
    "systolic": ([(None, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0), (220, None, 3)], "1", (40, 260)),
    "pulse": ([(None, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2), (131, None, 3)], "1", (20, 200)),
    "temperature": (
        [(None, "35.0", 3), ("35.1", "36.0", 1), ("36.1", "38.0", 0), ("38.1", "39.0", 1), ("39.1", None, 2)],
        "0.1",
        (32, 43),
    ),
}
FUNCTIONS = {
    "respiration": respiration_points,
    "spo2_scale1": spo2_points,
    "systolic": systolic_points,
    "pulse": pulse_points,
    "temperature": temperature_points,
}


def _charted_points(value: Decimal, bands, resolution: str) -> int:
    """The rule of news2.py, written with decimal arithmetic: round half up to the chart's resolution (as the
    value would be charted), then look the charted value up in the chart's inclusive bands."""
    charted = value.quantize(Decimal(resolution), rounding=ROUND_HALF_UP)
    for lo, hi, points in bands:
        if (lo is None or charted >= Decimal(str(lo))) and (hi is None or charted <= Decimal(str(hi))):
            return points
    raise AssertionError(f"{value} in no band")


@pytest.mark.parametrize("name", list(CHART))
def test_fractional_values_are_banded_as_charted(name):
    """Every value on a 0.01 grid over the parameter's range (both sides of each band edge, the halves
    included), as float64 and as float32 (the connector's storage), against the decimal reference."""
    bands, resolution, (lo, hi) = CHART[name]
    hundredths = np.arange(lo * 100, hi * 100 + 1)
    want = np.array([_charted_points(Decimal(int(h)) / 100, bands, resolution) for h in hundredths])
    values = hundredths / 100
    np.testing.assert_array_equal(FUNCTIONS[name](values), want)
    np.testing.assert_array_equal(FUNCTIONS[name](values.astype(np.float32)), want)


@pytest.mark.parametrize(
    "fn, value, points",
    [
        (respiration_points, 20.5, 2),
        (respiration_points, 20.49, 0),
        (respiration_points, 8.5, 1),
        (respiration_points, 8.49, 3),
        (respiration_points, 24.5, 3),
        (spo2_points, 91.5, 2),
        (spo2_points, 91.49, 3),
        (spo2_points, 95.5, 0),
        (spo2_points, 95.49, 1),
        (temperature_points, 35.05, 1),
        (temperature_points, 35.049, 3),
        (temperature_points, 36.05, 0),
        (temperature_points, 38.05, 1),
        (temperature_points, 38.049, 0),
        (temperature_points, 39.05, 2),
        (systolic_points, 100.5, 1),
        (systolic_points, 100.49, 2),
        (systolic_points, 90.5, 2),
        (systolic_points, 219.5, 3),
        (systolic_points, 219.49, 0),
        (pulse_points, 90.5, 1),
        (pulse_points, 90.49, 0),
        (pulse_points, 40.5, 1),
        (pulse_points, 130.5, 3),
    ],
)
def test_half_values_round_up(fn, value, points):
    assert fn(np.array([value]))[0] == points
    assert fn(np.array([value], dtype=np.float32))[0] == points


def test_oxygen_and_consciousness():
    np.testing.assert_array_equal(oxygen_points([0, 1]), [0, 2])
    # ACVPU: alert 0; new confusion, voice, pain, unresponsive all score 3
    np.testing.assert_array_equal(consciousness_points([0, 1, 2, 3, 4]), [0, 3, 3, 3, 3])


def test_missing_scores_zero_and_is_counted():
    vitals = {p: np.array([np.nan, np.nan]) for p in PARAMETERS}
    vitals["pulse"] = np.array([135.0, np.nan])
    total, missing = news2_score(vitals)
    np.testing.assert_array_equal(total, [3, 0])
    assert missing["pulse"] == 1 and missing["spo2"] == 2


def test_aggregate_of_a_worked_example():
    # RR 22 (2), SpO2 93 (2), oxygen (2), SBP 105 (1), pulse 115 (2), alert (0), temp 38.4 (1) = 10
    v = {
        "respiration_rate": [22],
        "spo2": [93],
        "on_oxygen": [1],
        "systolic_bp": [105],
        "pulse": [115],
        "consciousness": [0],
        "temperature": [38.4],
    }
    total, _ = news2_score({k: np.array(x, dtype=float) for k, x in v.items()})
    assert total.tolist() == [10]
    # all normal = 0
    v0 = {
        "respiration_rate": [16],
        "spo2": [98],
        "on_oxygen": [0],
        "systolic_bp": [125],
        "pulse": [72],
        "consciousness": [0],
        "temperature": [36.8],
    }
    total0, _ = news2_score({k: np.array(x, dtype=float) for k, x in v0.items()})
    assert total0.tolist() == [0]


def test_risk_bands():
    assert news2_risk_band([0, 4, 3, 5, 6, 7, 20], [False, False, True, False, False, False, True]).tolist() == [
        "low",
        "low",
        "low-medium",
        "medium",
        "medium",
        "high",
        "high",
    ]


def test_bad_input_named():
    with pytest.raises(ValueError, match="unknown parameters"):
        news2_score({"heart_rate": np.zeros(1)})
    with pytest.raises(ValueError, match="lacks"):
        news2_score({"pulse": np.zeros(1)})
