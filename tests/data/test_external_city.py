"""The second city: `SyntheticConfig.external()` and `hamburg-mamba generate`'s city options.

The preset is checked against figures written out here by hand (its hospitals, season and crisis dates), and the
hospital table against the generator's own hourly status table, which sizes the same beds independently of it.
"""

import numpy as np
import pandas as pd
import pytest

from hamburg_mamba.cli import HEAT_WAVE_LEVELS, main
from hamburg_mamba.data import read_meds
from hamburg_mamba.data.cities import EXTERNAL_HOSPITALS, HAMBURG_HOSPITALS, HOSPITALS
from hamburg_mamba.data.synthetic import HEAT_WAVE_UPLIFT, SyntheticConfig, generate_synthetic

# The preset at half a percent of the catalogue's volumes: about 400 pathways over the whole spring.
TINY_SCALE = 0.005
EXTERNAL_NAMES = (
    "Universitaetsklinikum Emscherstadt",
    "St. Marien Emscherstadt",
    "Evangelisches Klinikum Emscherstadt-Sued",
    "Knappschaftskrankenhaus Emscherstadt",
    "St. Josef Emscherstadt-Nord",
    "Elisabeth-Krankenhaus Emscherstadt",
)


@pytest.fixture(scope="module")
def external():
    return generate_synthetic(SyntheticConfig.external(scale=TINY_SCALE))


def test_external_preset_is_other_hospitals_in_another_season(external):
    cfg = external.config
    assert cfg.hospitals == EXTERNAL_NAMES
    assert not set(cfg.hospitals) & {h.name for h in HAMBURG_HOSPITALS}
    assert set(external.hospital_hourly["hospital"].unique()) == set(EXTERNAL_NAMES)
    assert set(external.pathways["hospital"].unique()) == set(EXTERNAL_NAMES)
    # spring 2024 (15 February - 15 June), where the default city runs August - November 2023
    times = external.drivers["time"]
    assert times.min() == pd.Timestamp("2024-02-15") and times.max() == pd.Timestamp("2024-06-15 23:00")
    assert cfg.outside_window() == []
    default = SyntheticConfig()
    for field in ("start", "heat_wave_start", "flu_peak", "mci_time"):
        assert getattr(cfg, field)[:4] == "2024" and getattr(default, field)[:4] == "2023"


def test_external_crises_happen_on_their_dates(external):
    drv = external.drivers
    heat = drv.loc[drv["heat_wave"], "time"]
    assert heat.min() == pd.Timestamp("2024-06-03") and heat.max() == pd.Timestamp("2024-06-08 23:00")
    assert len(heat) == 6 * 24
    # the wave is evaluated at each hour's middle, so the peak at midnight lies between the two top hours
    top = drv.nlargest(2, "flu_share_expected")["time"].sort_values().tolist()
    assert top == [pd.Timestamp("2024-03-04 23:00"), pd.Timestamp("2024-03-05 00:00")]
    assert drv["flu_share_expected"].max() == pytest.approx(0.05, rel=1e-3)
    mci = external.pathways[external.pathways["arrival_kind"] == "mci"]
    assert len(mci) == 30
    assert mci["t_onset"].min() >= pd.Timestamp("2024-04-26 08:30")
    assert mci["t_onset"].max() < pd.Timestamp("2024-04-26 10:00")  # casualties within 90 minutes


def test_hospital_table_describes_the_simulated_hospitals(external):
    table = external.hospitals.set_index("hospital")
    assert list(table.index) == list(EXTERNAL_NAMES)
    # annual visits at the preset's scale, by hand: 78,000 x 0.005 = 390 ... 9,500 x 0.005 = 47.5 -> 48
    assert table["ed_visits_per_year"].tolist() == [390, 180, 145, 105, 65, 48]
    assert table["care_level"].tolist() == [3, 2, 3, 2, 1, 1]
    # beds: the ones the hourly status table reports for the same hospital
    hourly = external.hospital_hourly.groupby("hospital", observed=True)[["icu_beds", "ward_beds", "ed_beds"]].first()
    hourly = hourly.loc[table.index]
    np.testing.assert_array_equal(table["icu_beds"], hourly["icu_beds"])
    np.testing.assert_array_equal(table["ward_beds"], hourly["ward_beds"])
    np.testing.assert_array_equal(table["ed_beds"], hourly["ed_beds"])
    np.testing.assert_array_equal(table["beds"], hourly["icu_beds"] + hourly["ward_beds"])


def test_external_hospitals_reach_beyond_hamburgs_range():
    """Transport is tested where the inputs leave the training range: the university hospital is larger than
    any Hamburg ED, two EDs are smaller than the smallest, and level does not follow size as in Hamburg."""
    hamburg = [h.ed_visits_per_year for h in HAMBURG_HOSPITALS]
    external = {h.name: h for h in EXTERNAL_HOSPITALS}
    assert max(h.ed_visits_per_year for h in EXTERNAL_HOSPITALS) > max(hamburg)
    assert sum(h.ed_visits_per_year < min(hamburg) for h in EXTERNAL_HOSPITALS) == 2
    assert external["Evangelisches Klinikum Emscherstadt-Sued"].care_level == 3
    assert external["St. Marien Emscherstadt"].care_level == 2
    assert all(HOSPITALS[h.name] is h for h in (*HAMBURG_HOSPITALS, *EXTERNAL_HOSPITALS))


def test_generate_external_preset_writes_its_hospital_table(tmp_path):
    root = tmp_path / "external"
    assert main(["generate", "--preset", "external", "--scale", "0.003", "--out", str(root)]) == 0
    blob = read_meds(root)
    assert blob["hospitals"]["hospital"].tolist() == list(EXTERNAL_NAMES)
    assert blob["hospitals"]["ed_visits_per_year"].tolist() == [234, 108, 87, 63, 39, 28]  # x 0.003, by hand
    assert set(blob["events"]["hospital"].dropna().unique()) == set(EXTERNAL_NAMES)


def test_generate_builds_another_city_from_options(tmp_path):
    root = tmp_path / "city"
    hospitals = ["Bethesda Bergedorf", "BG Klinikum", "Asklepios West"]
    argv = [
        "generate",
        "--out",
        str(root),
        "--hospitals",
        *hospitals,
        "--scale",
        "0.02",
        "--start",
        "2024-04-01",
        "--days",
        "10",
        "--heat-wave-start",
        "2024-04-03",
        "--heat-wave-days",
        "2",
        "--heat-wave-level",
        "low",
        "--flu-peak",
        "2024-04-05",
        "--mci-time",
        "2024-04-08 11:00",
        "--mci-casualties",
        "5",
        "--seed",
        "3",
    ]
    assert main(argv) == 0
    blob = read_meds(root)
    assert blob["hospitals"]["hospital"].tolist() == hospitals
    assert blob["hospitals"]["care_level"].tolist() == [2, 2, 1]  # 24,550 and 20,341 visits: 2; 17,245: 1
    drivers = blob["system"]["drivers"]
    assert drivers["time"].min() == pd.Timestamp("2024-04-01") and len(drivers) == 10 * 24
    assert drivers["heat_wave"].sum() == 2 * 24
    pathways = blob["system"]["pathways"]
    assert (pathways["arrival_kind"] == "mci").sum() == 5


def cli_error(argv, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


GEN = ["generate", "--out", "x"]


@pytest.mark.parametrize(
    "argv,named",
    [
        (GEN + ["--days", "1"], "--days"),
        (GEN + ["--seed", "-1"], "--seed"),
        (GEN + ["--hospitals", "Nowhere", "Albertinen"], "--hospitals: unknown ['Nowhere']"),
        (GEN + ["--hospitals", "Albertinen"], "--hospitals: expected at least 2"),
        (GEN + ["--hospitals", "Albertinen", "Albertinen"], "--hospitals: listed more than once"),
        (GEN + ["--hospitals", "Albertinen", "St. Marien Emscherstadt"], "--hospitals: hospitals of one city"),
        (GEN + ["--start", "spring"], "--start"),
        (GEN + ["--flu-peak", "2025-01-01"], "--flu-peak: 2025-01-01 lies outside"),
        (GEN + ["--heat-wave-start", "2023-07-31"], "--heat-wave-start: 2023-07-31 lies outside"),
        (GEN + ["--mci-time", "2023-12-01 00:00"], "--mci-time: 2023-12-01 00:00 lies outside"),
        (GEN + ["--mci-time", "noon"], "--mci-time"),
        # another season needs its own crisis dates: the preset's August heat wave is not in a March window
        (GEN + ["--start", "2024-03-01"], "--heat-wave-start: the hamburg preset's 2023-08-14"),
        (
            GEN
            + [
                "--preset",
                "external",
                "--start",
                "2024-06-01",
                "--heat-wave-start",
                "2024-06-05",
                "--mci-time",
                "2024-06-20 10:00",
            ],
            "--flu-peak: the external preset's 2024-03-05",
        ),
        (GEN + ["--heat-wave-level", "tropical"], "--heat-wave-level"),
        (GEN + ["--heat-wave-days", "-2"], "--heat-wave-days"),
        (GEN + ["--mci-casualties", "-1"], "--mci-casualties"),
        (GEN + ["--preset", "external", "--tiny"], "--tiny"),
    ],
)
def test_generate_errors_name_the_option(argv, named, capsys):
    assert named in cli_error(argv, capsys)


def test_a_crisis_switched_off_needs_no_date_in_the_window(capsys):
    """--days shortening the default window leaves the preset's later crises out, reported; a crisis of size 0
    has no date to check."""
    from hamburg_mamba.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(
        GEN + ["--start", "2024-03-01", "--heat-wave-days", "0", "--mci-casualties", "0", "--flu-peak", "2024-03-10"]
    )
    args.check(args, args.parser)
    assert args.config.start == "2024-03-01" and args.config.heat_wave_days == 0


def test_heat_wave_levels_of_the_cli_are_the_generators():
    assert HEAT_WAVE_LEVELS == tuple(HEAT_WAVE_UPLIFT)


@pytest.mark.parametrize(
    "change,named",
    [
        (dict(hospitals=("Albertinen", "Universitaetsklinikum Emscherstadt")), "SyntheticConfig.hospitals"),
        (dict(flu_peak="late"), "SyntheticConfig.flu_peak"),
        (dict(mci_casualties=-3), "SyntheticConfig.mci_casualties"),
        (dict(flu_peak_share=1.5), "SyntheticConfig.flu_peak_share"),
    ],
)
def test_bad_external_config_is_named(change, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        SyntheticConfig.external(**change)
