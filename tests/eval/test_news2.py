"""NEWS2 against the published RCP 2017 table (DOMAIN.md): every band boundary, both sides."""

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
PULSE = [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2), (131, 3),
         (180, 3)]
TEMPERATURE = [(34.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2),
               (41.0, 2)]


@pytest.mark.parametrize("fn, table", [
    (respiration_points, RESPIRATION), (spo2_points, SPO2), (systolic_points, SYSTOLIC), (pulse_points, PULSE),
    (temperature_points, TEMPERATURE),
], ids=["respiration", "spo2_scale1", "systolic", "pulse", "temperature"])
def test_band_boundaries_match_published_table(fn, table):
    values = np.array([v for v, _ in table], dtype=np.float64)
    expected = np.array([p for _, p in table])
    np.testing.assert_array_equal(fn(values), expected)
    # float32 storage of one-decimal temperatures must not move a value across a boundary
    np.testing.assert_array_equal(fn(values.astype(np.float32)), expected)


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
    v = {"respiration_rate": [22], "spo2": [93], "on_oxygen": [1], "systolic_bp": [105], "pulse": [115],
         "consciousness": [0], "temperature": [38.4]}
    total, _ = news2_score({k: np.array(x, dtype=float) for k, x in v.items()})
    assert total.tolist() == [10]
    # all normal = 0
    v0 = {"respiration_rate": [16], "spo2": [98], "on_oxygen": [0], "systolic_bp": [125], "pulse": [72],
          "consciousness": [0], "temperature": [36.8]}
    total0, _ = news2_score({k: np.array(x, dtype=float) for k, x in v0.items()})
    assert total0.tolist() == [0]


def test_risk_bands():
    assert news2_risk_band([0, 4, 3, 5, 6, 7, 20], [False, False, True, False, False, False, True]).tolist() == [
        "low", "low", "low-medium", "medium", "medium", "high", "high"]


def test_bad_input_named():
    with pytest.raises(ValueError, match="unknown parameters"):
        news2_score({"heart_rate": np.zeros(1)})
    with pytest.raises(ValueError, match="lacks"):
        news2_score({"pulse": np.zeros(1)})
