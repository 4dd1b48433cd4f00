"""Calibration of the synthetic city against published aggregates (docs/domain.md): target vs generated.

Each row names the figure, its source, the target, the generated value, the tolerance and whether it holds.
Tolerances are stated per row: relative (x/÷ factor or ± %) or absolute (± points).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hamburg_mamba.data.cities import HOSPITALS
from hamburg_mamba.data.synthetic import (
    CLOSURE_ALLOWED_FROM_H,
    CLOSURE_ALLOWED_UNTIL_H,
    EMS_SHARE,
    HEAT_WAVE_UPLIFT,
    UNIT_LOS_DAYS,
    SyntheticData,
)

# First half of 2023: > 1,000 closures longer than 2 h and > 500 longer than 6 h city-wide, about 20 EDs.
H1_2023_DAYS, HAMBURG_EDS = 181, 20
CLOSURES_GT2H_PER_HOSPITAL_DAY = 1000 / H1_2023_DAYS / HAMBURG_EDS
CLOSURES_GT6H_PER_HOSPITAL_DAY = 500 / H1_2023_DAYS / HAMBURG_EDS
WARMUP_DAYS = 14  # the simulation starts with empty wards; occupancy is measured after this
# Published targets of the rows below (sources at each row and in docs/domain.md, "Calibration targets").
WARD_OCCUPANCY, ICU_OCCUPANCY = 0.77, 0.80
ADMISSION_RATE, ADMISSION_RATE_EMS = 0.45, 0.60
MTS_SHARES = (0.01, 0.12, 0.37, 0.44, 0.06)
ICU_MORTALITY, HOSPITAL_MORTALITY = 0.125, 0.025


def calibration_table(data: SyntheticData) -> pd.DataFrame:
    cfg = data.config
    pw = data.pathways
    drv = data.drivers
    day = lambda ts: (ts - pd.Timestamp(cfg.start)).dt.days
    first = pw[pw["arrival_kind"] != "readmission"].copy()
    first["day"] = day(first["t_onset"])
    heat_days = set(day(drv.loc[drv["heat_wave"], "time"]).unique())
    flu_daily = drv.groupby(day(drv["time"]))["flu_share_expected"].mean()
    mci_day = (pd.Timestamp(cfg.mci_time) - pd.Timestamp(cfg.start)).days
    quiet = [d for d in range(cfg.days) if d not in heat_days and flu_daily[d] < 0.002 and d != mci_day]
    base = first[first["day"].isin(quiet) & (first["arrival_kind"] != "mci")]
    rows = []

    def add(figure, source, target, generated, tol, kind):
        if kind == "rel":
            ok = abs(generated - target) <= tol * abs(target)
            tol_s = f"±{tol:.0%}"
        elif kind == "factor":
            ok = target / tol <= generated <= target * tol
            tol_s = f"x/÷{tol:g}"
        elif kind == "at least":
            ok = generated >= target
            tol_s = "at least"
        elif kind == "at most":
            ok = generated <= target
            tol_s = "at most"
        else:
            ok = abs(generated - target) <= tol
            tol_s = f"±{tol:g}"
        rows.append(
            {
                "figure": figure,
                "source": source,
                "target": float(target),
                "generated": float(generated),
                "tolerance": tol_s,
                "ok": bool(ok),
            }
        )

    vol = sum(HOSPITALS[h].ed_visits_per_year for h in cfg.hospitals) * cfg.scale / 365.0
    add(
        "ED arrivals per day (quiet days)",
        "Drs. 21/8379 2016 volumes x scale",
        vol,
        len(base) / len(quiet),
        0.06,
        "rel",
    )
    add(
        "EMS share of ED arrivals",
        "279,471 EMS missions/yr x 70 % transport / 600 k ED visits (derived)",
        EMS_SHARE,
        base["ems"].mean(),
        0.03,
        "abs",
    )
    ems = first[first["ems"] & (first["arrival_kind"] != "mci")]
    per_day = ems.groupby("day").size().reindex(range(cfg.days), fill_value=0)
    hw = per_day[list(heat_days)].mean()
    ref = per_day[quiet].mean()
    # two Poisson standard errors of the ratio of the heat-wave to the quiet-day EMS counts (at least 0.06): about
    # 190 heat-wave ambulances in the demo city give a standard error of 0.08, so a fixed ±0.06 was 0.8 of one
    se = hw / ref * np.sqrt(1 / per_day[list(heat_days)].sum() + 1 / per_day[quiet].sum())
    add(
        f"EMS dispatch uplift in the heat wave ({cfg.heat_wave_level})",
        "meta-analysis of 48 studies",
        HEAT_WAVE_UPLIFT[cfg.heat_wave_level],
        hw / ref - 1.0,
        max(0.06, 2 * se),
        "abs",
    )
    old_hw = (ems[ems["day"].isin(heat_days)]["age"] >= 85).mean()
    old_ref = (ems[ems["day"].isin(quiet)]["age"] >= 85).mean()
    add(
        "85+ share of EMS arrivals, heat wave minus quiet days (0 to 0.10: excess in the elderly)",
        "docs/domain.md heat effects (direction only)",
        0.05,
        old_hw - old_ref,
        0.05,
        "abs",
    )
    peak = (pd.Timestamp(cfg.flu_peak) - pd.Timestamp(cfg.start)).days
    wk = first[(first["day"] >= peak - 3) & (first["day"] <= peak + 3)]
    add(
        "flu share of ED visits in the peak week",
        "docs/domain.md (severe week about 8 %)",
        cfg.flu_peak_share,
        (wk["icd_chapter"] == "J09-J18").mean(),
        0.015,
        "abs",
    )
    mci = pw[pw["arrival_kind"] == "mci"]
    for k, share in enumerate((0.4, 0.2, 0.4)):
        add(
            f"MANV SK {'I' * (k + 1)} casualties",
            "planned split 40-20-40",
            share * cfg.mci_casualties,
            (mci["mci_sk"] == k).sum(),
            1,
            "abs",
        )
    hh = data.hospital_hourly
    n_h = len(cfg.hospitals)
    starts = hh[hh["closure_start"]]
    # closure durations from the hourly closed flags: consecutive closed hours per hospital
    closed = hh.pivot(index="time", columns="hospital", values="closed_to_ems").to_numpy()
    lens = _run_lengths(closed)
    add(
        "closures > 2 h per hospital-day",
        "> 1,000 in H1 2023 / 181 d / 20 EDs",
        CLOSURES_GT2H_PER_HOSPITAL_DAY,
        (lens > 2).sum() / (cfg.days * n_h),
        1.5,
        "factor",
    )
    add(
        "closures > 6 h per hospital-day",
        "> 500 in H1 2023 / 181 d / 20 EDs",
        CLOSURES_GT6H_PER_HOSPITAL_DAY,
        (lens > 6).sum() / (cfg.days * n_h),
        1.5,
        "factor",
    )
    night = starts["time"].dt.hour
    add(
        "closure starts 21:00-06:00",
        "not allowed at night (Hamburg)",
        0,
        ((night >= CLOSURE_ALLOWED_UNTIL_H) | (night < CLOSURE_ALLOWED_FROM_H)).sum(),
        0,
        "abs",
    )
    warm = hh[hh["time"] >= pd.Timestamp(cfg.start) + pd.Timedelta(days=WARMUP_DAYS)]
    _add_occupancy_rows(add, warm)
    _add_ed_rows(add, pw)
    _add_mortality_rows(add, pw)
    # admissions early enough that every stay has ended inside the window (no right-censoring bias)
    last_adm = pd.Timestamp(cfg.start) + pd.Timedelta(days=cfg.days - 2 * cfg.max_los_days / 2 - 3)
    done = pw[pw["t_bed"].notna() & (pw["t_bed"] < last_adm)]  # all cases, as Destatis counts them
    # Germany's 7.1 d mean covers specialties the ED-admitted mix lacks (psychiatry, rehabilitation, ...); the
    # four simulated specialties give about 6.45 d in expectation, at the edge of a ±10 % band around 7.1, so the
    # row failed on about 40 % of seeds. The target is the sourced per-specialty LOS at the generated mix.
    mix_target = done["unit"].map(UNIT_LOS_DAYS).mean()
    add(
        "mean inpatient length of stay, days (per-specialty LOS at the generated specialty mix)",
        "Destatis 2024 by specialty (Germany overall 7.1 d)",
        mix_target,
        done["los_h"].mean() / 24,
        0.10,
        "rel",
    )
    for unit, name in (("IM", "internal medicine"), ("SURG", "general surgery")):
        d = done[(done["unit"] == unit) & ~done["icu"]]
        add(
            f"mean length of stay, {name}, days",
            "Destatis 2024",
            UNIT_LOS_DAYS[unit],
            d["los_h"].mean() / 24,
            0.10,
            "rel",
        )
    # ±6 %: two standard errors of the mean of about 200 geriatric stays (coefficient of variation about 0.45) is
    # 6 %; the published figure is a point (Destatis 15.1 d, inside InEK's 14-20 d for early rehabilitation).
    # The generator gave 13.7 d (-9 %) before the geriatric stay got its own spread.
    d = done[(done["unit"] == "GER") & ~done["icu"]]
    add(
        "mean length of stay, geriatrics, days",
        "Destatis 2024 (15.1 d); InEK early rehabilitation 14-20 d",
        UNIT_LOS_DAYS["GER"],
        d["los_h"].mean() / 24,
        0.06,
        "rel",
    )
    return pd.DataFrame(rows)


def _add_occupancy_rows(add, warm: pd.DataFrame) -> None:
    """Bed occupancy after the warm-up: wards overall and per hospital, ICUs."""
    add(
        "ward bed occupancy",
        "Destatis Grunddaten der Krankenhaeuser 2019 (about 77 %; 69-72 % 2020-2023)",
        WARD_OCCUPANCY,
        warm["ward_census"].sum() / warm["ward_beds"].sum(),
        0.06,
        "abs",
    )
    by = warm.groupby("hospital", observed=True)
    per_hospital = by["ward_census"].sum() / by["ward_beds"].sum()
    # every hospital inside the German band (Destatis 2019-2023: 69-77 %) widened by the spread between
    # hospitals; the 14-ED city ran three small wards at 95-97 % before ward beds counted diverted ambulances
    add(
        "lowest ward bed occupancy of a hospital",
        "Destatis 2019-2023 band, widened",
        0.65,
        per_hospital.min(),
        0,
        "at least",
    )
    add(
        "highest ward bed occupancy of a hospital",
        "Destatis 2019-2023 band, widened",
        0.90,
        per_hospital.max(),
        0,
        "at most",
    )
    # DIVI reports 75-85 %; over about 100 days of 4-8-bed ICUs with 3-day stays the estimate's standard error
    # is about 1.5 points, inside the published range's half-width (the demo city gave 0.23 before)
    add(
        "ICU bed occupancy",
        "DIVI-Intensivregister daily reports 2023 (75-85 %)",
        ICU_OCCUPANCY,
        warm["icu_census"].sum() / warm["icu_beds"].sum(),
        0.05,
        "abs",
    )


def _add_ed_rows(add, pw: pd.DataFrame) -> None:
    """Triage and admission of ED visits (MANV casualties excluded: their triage follows the SK category)."""
    ed = pw[pw["arrival_kind"] != "mci"]
    admitted = ed["disposition"] != "home"
    # ±0.05: AKTIN's range across years and EDs (40-50 %; ambulance about 60 %); the sampling error of about
    # 8,000 visits (0.6 points) is small beside it. Before: 30 % overall, 43 % of ambulance arrivals.
    add(
        "admission rate of ED visits (ward or ICU)",
        "AKTIN Notaufnahmeregister annual reports 2019-2022 (40-50 %)",
        ADMISSION_RATE,
        admitted.mean(),
        0.05,
        "abs",
    )
    add(
        "admission rate of ambulance arrivals",
        "AKTIN Notaufnahmeregister annual reports 2019-2022 (about 60 %)",
        ADMISSION_RATE_EMS,
        admitted[ed["ems"]].mean(),
        0.05,
        "abs",
    )
    shares = ed["triage_group"].value_counts(normalize=True)
    # ±0.02 (±0.01 for MTS 1): two standard errors of a share near 40 % in 8,000 visits plus a point of
    # registry variation. Before: 2/12/34/38/14 % (MTS 5 over-represented).
    for group, (target, tol) in enumerate(zip(MTS_SHARES, (0.01, 0.02, 0.02, 0.02, 0.02), strict=True), start=1):
        add(
            f"share of Manchester triage group {group}",
            "AKTIN Notaufnahmeregister (about 1/12/37/44/6 %)",
            target,
            shares.get(group, 0.0),
            tol,
            "abs",
        )


def _add_mortality_rows(add, pw: pd.DataFrame) -> None:
    """Deaths of admitted pathways, every course simulated to its end (past the window as well)."""
    admitted = pw[pw["t_bed"].notna()]
    icu = admitted[admitted["icu"]]
    # ±0.05: the published 10-15 % plus two standard errors of about 200-400 ICU patients (2-3 points). Before: 2-6 %
    # (death and ICU transfer were competing outcomes of one adverse event; the ICU had no mortality of its own).
    add(
        "deaths among ICU patients",
        "DIVI-Intensivregister / German ICU mortality (10-15 %)",
        ICU_MORTALITY,
        icu["died"].mean(),
        0.05,
        "abs",
    )
    # ±0.01: the published 2-3 % (all inpatient cases) plus two standard errors of about 4,000 admissions
    add(
        "in-hospital deaths among admitted patients",
        "Destatis Grunddaten der Krankenhaeuser (about 2-3 %)",
        HOSPITAL_MORTALITY,
        admitted["died"].mean(),
        0.01,
        "abs",
    )


def _run_lengths(closed: np.ndarray) -> np.ndarray:
    """Lengths (hours) of runs of True down each column of an (hours, hospitals) bool array."""
    pad = np.zeros((1, closed.shape[1]), bool)
    c = np.vstack([pad, closed, pad]).astype(np.int8)
    d = np.diff(c, axis=0)
    starts = np.nonzero(d.T == 1)
    ends = np.nonzero(d.T == -1)
    return ends[1] - starts[1]


def markdown(table: pd.DataFrame) -> str:
    lines = ["| figure | source | target | generated | tolerance | ok |", "|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(
            f"| {r.figure} | {r.source} | {r.target:.4g} | {r.generated:.4g} | {r.tolerance} | "
            f"{'yes' if r.ok else 'NO'} |"
        )
    return "\n".join(lines)
