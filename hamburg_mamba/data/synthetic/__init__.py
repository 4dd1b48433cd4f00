"""Synthetic Hamburg: a seeded city simulation of emergency-care pathways with known true risks.

The simulation runs hour by hour (one Python iteration per simulated hour; everything inside is vectorised over
the patients and hospitals of that hour). Mechanisms, in the order a patient meets them:

1. Arrivals (`_draw_arrivals`, no loop): Poisson counts per hour, hospital and mode with diurnal, weekly and
   seasonal profiles; heat-wave excess (elderly, dehydration/renal/respiratory), an influenza wave, one
   mass-casualty incident (MANV, SK I/II/III 40-20-40). Readmissions join later from the loop.
2. EMS routing: an ambulance takes its patient to the nearest hospital that is open to ambulances.
3. ED: Manchester triage from latent severity; wait for the first physician grows with ED crowding; delay
   beyond the triage target raises severity (untreated drift); treatment; disposition home / ward / ICU.
4. Beds: admitted patients board in the ED until a bed in their unit is free (priority ICU, then triage).
5. Inpatient course: severity relaxes towards a patient-specific level; one adverse-event process with hazard
   exp(a + b severity + c strain); an adverse event is fatal with a logistic probability, else leads to ICU
   transfer with a fixed probability. Strain = patients per scheduled nurse relative to the PpUGV limit at
   admission, boarding hours and delay beyond the triage target.
6. Hospital closure to ambulances: hazard per daytime hour (never 21:00-06:00) rising with NEDOCS (Weiss 2004)
   measured against the hospital's own running baseline (a z-score, so the rate does not depend on ED size);
   closures last a log-normal time and end by 21:00. Diverted ambulances cascade load.
7. Staff: nurses scheduled per unit and shift (PpUGV day 06-22, night 22-06), sick leave rising with the last
   week's workload; ratio violation = mean census / present nurses above the PpUGV limit.

Ground truth ("oracle"): every label comes with the probability (or expected value) the generator drew it
from, conditional on the realised system path (bed times, disposition, planned length of stay, strain);
what is integrated out are the outcome draws themselves (adverse-event time, fatality, ICU decision,
readmission, sick leave, closure start). See docs/data.md ("Ground truth").

Time inside the simulation is float64 hours since `SyntheticConfig.start` (local time, no DST shift).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hamburg_mamba.data.cities import EXTERNAL_HOSPITALS, HAMBURG_HOSPITALS, HOSPITALS, check_hospital_set
from hamburg_mamba.data.schema import TASKS

# ----------------------------------------------------------------------------------------------------------
# Published figures (docs/domain.md) and the generator's own assumptions, each named once.

# Hamburg's EDs (visits 2016, Drs. 21/8379; positions) and the second city's live in cities.py.
ED_VISITS_2016 = {h.name: h.ed_visits_per_year for h in HAMBURG_HOSPITALS}
DEFAULT_HOSPITALS = (
    "Asklepios Harburg",
    "Asklepios Nord",
    "Asklepios Barmbek",
    "Asklepios Altona",
    "Albertinen",
    "Asklepios St. Georg",
)

# Share of ED arrivals by ambulance, derived (uncertain): 279,471 EMS missions/yr (Feuerwehr Hamburg 2023)
# x an assumed 70 % transport rate / about 600 k ED visits per year (Hamburger Abendblatt) = 0.33.
EMS_SHARE = 0.33
# Heat-wave excess in EMS dispatches by heat-wave level (meta-analysis of 48 studies, docs/domain.md).
HEAT_WAVE_UPLIFT = {"low": 0.06, "severe": 0.07, "extreme": 0.18}
# Manchester Triage System: max wait to first physician, minutes, groups 1..5.
MTS_TARGET_MIN = np.array([0.0, 10.0, 30.0, 90.0, 120.0])
# PpUGV patients per nurse (day, night).
PPUGV_LIMIT = {"ICU": (2.0, 3.0), "IM": (10.0, 22.0), "SURG": (10.0, 20.0), "GER": (10.0, 20.0), "NEURO": (10.0, 20.0)}
# Mean length of stay in days, Destatis 2024 (IM 5.2, surgery 5.0, geriatrics 15.1); neurology and ICU assumed.
UNIT_LOS_DAYS = {"IM": 5.2, "SURG": 5.0, "GER": 15.1, "NEURO": 6.0}
ICU_LOS_DAYS = 3.0
LOS_SIGMA = 0.7  # log-normal spread of the planned ward stay (assumption)
# Geriatric early rehabilitation (OPS 8-550) needs at least 14 treatment days, so geriatric stays cluster at
# 14-20 days (InEK): a narrower spread. With 0.7 the geriatric mean came out at 13.7 d: the short plans of the
# wide spread end more often in death or an ICU transfer, which leave the per-specialty mean.
GER_LOS_SIGMA = 0.3
# The planned geriatric stay is the one without death or ICU transfer; deaths (about 8 % of geriatric stays) end
# stays early, so the plan's mean is set 6 % above Destatis' 15.1 d for the realised mean to meet it (measured).
GER_PLAN_FACTOR = 1.06
# Ward beds are sized so that ED-admitted patients fill this share: German general wards ran at about 77 % in
# 2019 and 69-72 % after 2020 (Destatis, Grunddaten der Krankenhaeuser); Hamburg 2017 was 82.8 % (medconweb).
# At 0.828, 14 EDs at scale 0.63 ran three small wards at 95-97 % (overall 87 %).
TARGET_OCCUPANCY = 0.77
# ICUs run at 75-85 % (DIVI-Intensivregister daily reports). ED admissions fill about half of an ICU's bed-days
# (assumption); the rest are elective post-operative and in-house stays, admitted 08-16 when a bed is free and
# moved out early (the one nearest its planned step-down first) when an emergency needs the bed, as ICUs do
# under bed pressure. Without them an ICU sized for its ED patients alone ran at 23 % in the demo city (MIN_UNIT_BEDS)
# or queued its emergencies for days when sized to 80 %.
TARGET_ICU_OCCUPANCY, ICU_ED_SHARE = 0.80, 0.5
ICU_ELECTIVE_LOS_DAYS, ICU_ELECTIVE_SIGMA = 1.5, 0.6
ELECTIVE_FROM_H, ELECTIVE_UNTIL_H = 8, 16
# Expected share of hours a hospital is closed to ambulances (about 0.28 closures a day of about 7 h, the
# calibration target); bed sizing sends this share of its ambulance patients to the nearest other hospital.
EXPECTED_CLOSED_SHARE = 0.08
# German day/night shift boundaries for PpUGV (day 06-22, night 22-06) and the ambulance closure window.
DAY_SHIFT_START_H, NIGHT_SHIFT_START_H = 6, 22
CLOSURE_ALLOWED_FROM_H, CLOSURE_ALLOWED_UNTIL_H = 6, 21

UNITS = ("ED", "ICU", "IM", "SURG", "GER", "NEURO")
U_ED, U_ICU = 0, 1
WARD_POOL = 2  # unit index under which the pooled ward beds are counted during bed assignment
WARD_UNITS = ("IM", "SURG", "GER", "NEURO")

# ICD-10-GM chapters (block ranges) with base weights of ED visits; an assumption of plausible orders.
ICD_CHAPTERS = (
    "A00-B99",
    "E00-E90",
    "F00-F99",
    "G00-G99",
    "I00-I99",
    "J00-J99",
    "K00-K93",
    "N00-N99",
    "R00-R99",
    "S00-T98",
    "J09-J18",
)
ICD_BASE_WEIGHT = np.array([0.05, 0.03, 0.05, 0.05, 0.14, 0.10, 0.10, 0.05, 0.18, 0.25, 0.0])
ICD_FLU = ICD_CHAPTERS.index("J09-J18")
ICD_INJURY = ICD_CHAPTERS.index("S00-T98")
# Heat excess causes: dehydration (E86), renal (N), respiratory (J), docs/domain.md.
ICD_HEAT_WEIGHT = np.array([0, 0.45, 0, 0, 0.05, 0.25, 0, 0.25, 0, 0, 0], dtype=float)
# Ward unit by chapter (non-geriatric patients); age >= GERIATRIC_AGE on a medical unit goes to GER.
ICD_WARD_UNIT = ("IM", "IM", "IM", "NEURO", "IM", "IM", "SURG", "IM", "IM", "SURG", "IM")
GERIATRIC_AGE = 80

VITALS = ("RESP_RATE", "SPO2", "O2", "SBP", "PULSE", "ACVPU", "TEMP")

SIM_DTYPE = np.float64


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


# Behavioural constants of the mechanisms (assumptions; calibrated where docs/data.md says so).
ED_MEAN_WAIT_MIN = np.array([2.0, 8.0, 25.0, 55.0, 70.0])  # at an ED occupancy of 0.7
# Manchester group from triage severity (plus assessment noise): severity above the k-th cut is group k + 1 or
# worse. The cuts are the quantiles of the simulated triage severity at the AKTIN registry's shares of groups
# 1-5 (about 1/12/37/44/6 %); the earlier cuts gave 2/12/34/38/14 (MTS 5 over-represented).
MTS_SEVERITY_CUTS = np.array([2.8, 1.45, 0.12, -1.65])
# Disposition at the end of ED treatment: multinomial logit against home, ward (intercept, per severity, per year
# of age over 50) and ICU (intercept, per severity). The ward intercept gives about 45 % admitted overall and
# 60 % of ambulance arrivals (AKTIN; calibration.py); it was -1.3 (30 % and 43 %).
DISPOSITION_WARD, DISPOSITION_ICU = (-0.35, 0.9, 0.012), (-3.9, 1.5)
ED_TREAT_MEDIAN_H = np.array([3.0, 3.5, 3.0, 2.0, 1.2])
UNTREATED_DRIFT_PER_H = 0.15  # severity rise per hour of waiting for patients with positive drift
MAX_UNTREATED_H = 12.0  # the drift stops here (patients are seen by then, or leave)
ED_MEAN_STAY_H, ED_BED_MARGIN = 6.0, 1.1
MAX_CROWDING_FACTOR = 4.0  # waits grow with crowding but stay bounded (fast-track, extra staff)
EMS_RESPONSE_MEDIAN_MIN, EMS_ON_SCENE_MIN, EMS_KMH = 7.5, 20.0, 35.0
DIVERSION_DELAY_MIN = 8.0
ED_NURSES_PER_BED = 0.35
MIN_UNIT_BEDS = 4  # a unit smaller than this is not run as a separate unit
SEVERITY_SD = 0.9  # spread of latent severity at onset around its mean by age, mode and MANV category
STAFF_SLACK = 1.08  # nurses scheduled per nurse needed for the PpUGV limit at expected census
SICK_BASE, SICK_PER_OVERLOAD = 0.06, 0.10
CLOSURE_HAZARD_MAX = 0.35
# A hospital's usual crowding: exponentially weighted mean and variance of its hourly NEDOCS with this time
# constant (hours; long enough that a 9-day heat wave or a flu peak still reads as unusual). The trigger waits
# for a day of history and treats a spread below CLOSURE_MIN_SD NEDOCS points as that minimum.
CLOSURE_BASELINE_H, CLOSURE_MIN_HISTORY_H, CLOSURE_MIN_SD = 28 * 24.0, 24, 5.0
# ICU demand beyond the direct ICU dispositions the bed sizing predicts from triage-time severity: untreated
# drift before the physician (+22 %), ward-to-ICU transfers after adverse events and readmissions (+22 %).
# Measured on the 14-hospital scale-0.63 run; without it ICUs ran above 100 % and their boarding queue grew
# without bound (mean ICU boarding 80 h), which is what drove closures to 3-4x the target there.
ICU_DEMAND_FACTOR = 1.5
CLOSURE_MEDIAN_H, CLOSURE_SIGMA = 9.0, 0.6
AE_INTERCEPT, AE_SEVERITY, AE_STRAIN = -8.6, 1.05, 0.9
FATAL_INTERCEPT, FATAL_SEVERITY, FATAL_STRAIN = -1.2, 0.7, 0.6
# ICU mortality: an hourly death hazard exp(a + b s) during every ICU stay, s the severity at ICU admission (as
# SAPS II scores the first ICU day). Before, an ICU stay could only follow a non-fatal adverse event, so ICU
# patients hardly died (2-3.5 % against 10-15 %, calibration.py). The adverse-event process models ward
# deterioration: a direct ICU admission meets it from its step-down to the ward on.
ICU_DEATH_INTERCEPT, ICU_DEATH_SEVERITY = -7.2, 0.5
# strain index at admission: patients per scheduled nurse above the PpUGV limit, boarding, delay beyond target
STRAIN_OVER_RATIO, STRAIN_BOARDING, STRAIN_DELAY, MAX_DELAY_EFFECT_H = 1.5, 0.3, 0.3, 4.0
ICU_AFTER_AE = 0.6
ICU_AFTER_AE_DELAY_H, DEATH_AFTER_AE_DELAY_H = 1.0, 0.5
READMIT_SEVERITY, READMIT_AGE_PER_10Y, READMIT_CROWDING = 0.35, 0.12, 1.2
VITALS_EVERY_H = {"ED": 2.0, "ward": 8.0, "ward_sick": 4.0, "ICU": 2.0}


def generate_synthetic(config: SyntheticConfig | None = None) -> SyntheticData:
    """Simulate the configured city and return events, labels, oracles and system tables."""
    cfg = config or SyntheticConfig()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(8)]
    rng_arr, rng_loop, rng_course, rng_staff, rng_obs, rng_readmit, rng_close, _ = streams

    city = _city(cfg)
    drivers = _drivers(cfg)
    arr = _draw_arrivals(cfg, city, drivers, rng_arr)
    sim = _simulate(cfg, city, drivers, arr, rng_loop, rng_course, rng_readmit, rng_close)
    staff = _staff(cfg, city, sim, rng_staff)
    pw = sim["pathways"]
    events, order = _events_frame(cfg, city, pw, _events(cfg, city, pw, rng_obs))
    labels, oracle, bound = _labels(cfg, sim, staff, pw, events["subject_id"].to_numpy(), order)
    return SyntheticData(
        events=events,
        labels=labels,
        oracle=oracle,
        hospital_hourly=_hourly_frame(cfg, city, sim),
        staff_shifts=staff["frame"],
        pathways=_pathway_frame(cfg, city, pw),
        config=cfg,
        drivers=drivers["frame"],
        bound=bound,
        hospitals=_hospital_frame(cfg, city, sim),
    )


# ----------------------------------------------------------------------------------------------------------
# City, drivers, arrivals


def _city(cfg: SyntheticConfig) -> dict:
    vol = np.array([HOSPITALS[h].ed_visits_per_year for h in cfg.hospitals], dtype=SIM_DTYPE) * cfg.scale  # per year
    xy = np.array([HOSPITALS[h].xy_km for h in cfg.hospitals])
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))  # (n, n) km
    per_hour = vol / (365.0 * 24.0)
    # ED beds: mean census (arrivals/h x mean stay) with a margin; crowding happens at the midday peak.
    ed_beds = np.maximum(4, np.round(per_hour * ED_MEAN_STAY_H * ED_BED_MARGIN)).astype(np.int64)
    return {"n": len(cfg.hospitals), "vol": vol, "per_hour": per_hour, "dist": dist, "ed_beds": ed_beds}


def _drivers(cfg: SyntheticConfig) -> dict:
    H = cfg.hours
    t = np.arange(H, dtype=SIM_DTYPE) + 0.5
    stamp = pd.Timestamp(cfg.start)
    hod = (stamp.hour + t) % 24.0
    day = np.floor((stamp.hour + t) / 24.0).astype(np.int64)
    dow = (stamp.day_of_week + day) % 7
    doy = (stamp.day_of_year + day) % 365
    hw0 = cfg.hours_since_start(cfg.heat_wave_start)
    heat = (t >= hw0) & (t < hw0 + 24 * cfg.heat_wave_days)
    # Temperature (daily max proxy, degC): seasonal cosine, heat wave +11 degC, smooth daily wave.
    temp = 14.0 + 9.0 * np.cos(2 * np.pi * (doy - 200) / 365.0) + 11.0 * heat + 4.0 * np.sin(2 * np.pi * (hod - 9) / 24)
    fp = cfg.hours_since_start(cfg.flu_peak)
    flu_share = cfg.flu_peak_share * np.exp(-0.5 * ((t - fp) / (24.0 * cfg.flu_width_days)) ** 2)
    # Diurnal ED arrival profile (low 04:00, peak late morning) and weekday profile; both mean 1.
    diurnal = 1.0 + 0.55 * np.sin(2 * np.pi * (hod - 7.0) / 24.0) + 0.15 * np.sin(4 * np.pi * (hod - 9.0) / 24.0)
    weekly = np.array([1.12, 1.02, 0.99, 0.98, 1.01, 0.93, 0.95])[dow]
    weekly = weekly / np.array([1.12, 1.02, 0.99, 0.98, 1.01, 0.93, 0.95]).mean()
    seasonal = 1.0 + cfg.seasonal_amplitude * np.cos(2 * np.pi * (doy - 15) / 365.0)
    frame = pd.DataFrame(
        {
            "time": stamp + pd.to_timedelta(np.arange(H), unit="h"),
            "temperature_c": temp.astype(np.float32),
            "heat_wave": heat,
            "flu_share_expected": flu_share.astype(np.float32),
        }
    )
    return {
        "hod": hod,
        "dow": dow,
        "day": day,
        "heat": heat,
        "flu_share": flu_share,
        "diurnal": diurnal,
        "weekly": weekly,
        "seasonal": seasonal,
        "frame": frame,
    }


def _draw_arrivals(cfg: SyntheticConfig, city: dict, drv: dict, rng: np.random.Generator) -> dict:
    """All first arrivals of the period, sorted by time (readmissions are added by the loop)."""
    base = drv["diurnal"] * drv["weekly"] * drv["seasonal"]  # (H,)
    lam = base[:, None] * city["per_hour"][None, :]  # (H, n) expected arrivals without crises
    heat_up = HEAT_WAVE_UPLIFT[cfg.heat_wave_level] * drv["heat"]
    flu_extra = drv["flu_share"] / (1.0 - drv["flu_share"])  # flu share of *all* visits equals flu_share
    # kinds: 0 ordinary walk-in, 1 ordinary EMS, 2 heat excess (EMS), 3 flu (split walk-in/EMS later)
    lam_kind = np.stack(
        [
            lam * (1 - EMS_SHARE),
            lam * EMS_SHARE,
            lam * EMS_SHARE * heat_up[:, None],
            lam * flu_extra[:, None],
        ],
        axis=-1,
    )  # (H, n, 4)
    counts = rng.poisson(lam_kind)
    hh, hosp, kind = np.nonzero(counts)
    rep = counts[hh, hosp, kind]
    hh, hosp, kind = np.repeat(hh, rep), np.repeat(hosp, rep), np.repeat(kind, rep)
    t = hh + rng.random(hh.size)
    m = t.size
    ems = (kind == 1) | (kind == 2) | ((kind == 3) & (rng.random(m) < 0.45))
    # Age: walk-ins younger; EMS older; heat excess concentrated in the elderly (85+), docs/domain.md.
    age = np.where(ems, rng.normal(66, 20, m), rng.normal(43, 20, m))
    age = np.where(kind == 2, rng.normal(84, 7, m), age)
    age = np.clip(age, 0.5, 102.0)
    icd_base = ICD_BASE_WEIGHT / ICD_BASE_WEIGHT.sum()
    icd_heat = ICD_HEAT_WEIGHT / ICD_HEAT_WEIGHT.sum()
    icd = np.where(kind == 2, _choice(rng, icd_heat, m), _choice(rng, icd_base, m))
    icd = np.where(kind == 3, ICD_FLU, icd)
    sk = np.full(m, -1, dtype=np.int64)

    # Mass-casualty incident: casualties within 90 minutes, SK I/II/III allocated 40-20-40 (planning split).
    n_mci = int(cfg.mci_casualties)
    if n_mci > 0:
        t_mci = cfg.hours_since_start(cfg.mci_time)
        sk_mci = np.repeat([0, 1, 2], _split_counts(n_mci, (0.4, 0.2, 0.4)))
        origin = int(np.argmin(city["dist"].sum(1)))  # the most central hospital's district
        t = np.concatenate([t, t_mci + rng.random(n_mci) * 1.5])
        hosp = np.concatenate([hosp, np.full(n_mci, origin)])
        kind = np.concatenate([kind, np.full(n_mci, 4)])
        ems = np.concatenate([ems, np.ones(n_mci, bool)])
        age = np.concatenate([age, np.clip(rng.normal(40, 16, n_mci), 4, 90)])
        icd = np.concatenate([icd, np.full(n_mci, ICD_INJURY)])
        sk = np.concatenate([sk, sk_mci])
    order = np.lexsort((hosp, t))
    return {k: v[order] for k, v in dict(t=t, hosp=hosp, kind=kind, ems=ems, age=age, icd=icd, sk=sk).items()}


def _choice(rng: np.random.Generator, p: np.ndarray, m: int) -> np.ndarray:
    return np.searchsorted(np.cumsum(p), rng.random(m) * p.sum(), side="right").clip(0, p.size - 1)


def _split_counts(n: int, shares: tuple[float, ...]) -> np.ndarray:
    """Largest-remainder rounding of n into the given shares (exact planning split)."""
    raw = np.array(shares) * n
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: n - out.sum()]] += 1
    return out


# ----------------------------------------------------------------------------------------------------------
# The hourly simulation


def _simulate(cfg, city, drv, arr, rng, rng_course, rng_readmit, rng_close) -> dict:
    H, n = cfg.hours, city["n"]
    pad = int(24 * (cfg.max_los_days * 2 + 40))  # census deltas of stays that end after the window
    nu = len(UNITS)
    delta = np.zeros((H + pad + 2, n, nu), dtype=np.int64)  # census change at the start of each hour
    census = np.zeros((H, n, nu), dtype=np.int64)  # census during hour h (after its arrivals)
    boarders = np.zeros((H, n), dtype=np.int64)
    longest_board = np.zeros((H, n))
    last_wait = np.zeros((H, n))
    closed = np.zeros((H, n), dtype=bool)
    closure_start = np.zeros((H, n), dtype=bool)
    hazard_open = np.zeros((H, n))
    nedocs = np.zeros((H, n))
    ems_in = np.zeros((H, n), dtype=np.int64)
    walk_in = np.zeros((H, n), dtype=np.int64)
    diverted_out = np.zeros((H, n), dtype=np.int64)
    eligible = np.zeros((H, n), dtype=bool)
    closed_until = np.zeros(
        (H, n)
    )  # end time of the latest closure, as known after hour h  # open at the start of the hour: a closure may start
    closure_end_t = np.full(n, -1.0)
    closures = []  # (hospital, start_h, end_h)
    base_mean, base_var = np.zeros(n), np.zeros(n)  # running NEDOCS baseline per hospital (before hour h)
    base_w = 1.0 - math.exp(-1.0 / CLOSURE_BASELINE_H)

    beds = _size_beds(cfg, city, arr)
    # Pathway store: growing lists of per-hour arrays, concatenated at the end (readmissions append).
    P = _PathwayStore()
    next_subject = 1
    pending = {}  # hour -> list of readmission dicts
    queue = np.zeros(0, dtype=np.int64)  # pathway rows waiting for a bed
    q_ready = np.zeros(0)
    q_unit = np.zeros(0, dtype=np.int64)
    q_hosp = np.zeros(0, dtype=np.int64)
    q_prio = np.zeros(0)
    bounds = np.searchsorted(arr["t"], np.arange(H + 1))
    ward_nurses_day = beds["nurses"][:, :, 0]
    electives = _ElectiveIcu(cfg, drv, beds, n)

    for h in range(H):
        cur = census[h - 1] if h > 0 else np.zeros((n, nu), dtype=np.int64)
        cur = cur + delta[h]
        # ---- arrivals of this hour: first arrivals and due readmissions
        sl = slice(bounds[h], bounds[h + 1])
        a = {k: v[sl] for k, v in arr.items()}
        m0 = a["t"].size
        subj = np.arange(next_subject, next_subject + m0, dtype=np.int64)
        next_subject += m0
        sex = (rng.random(m0) < 0.5).astype(np.int64)
        birth_age = a["age"]
        readm_prev = np.full(m0, -1, dtype=np.int64)
        if h in pending:
            due = pending.pop(h)
            r = {k: np.concatenate([d[k] for d in due]) for k in pending_keys()}
            a = {k: np.concatenate([a[k], r[k]]) for k in a}
            subj = np.concatenate([subj, r["subject"]])
            sex = np.concatenate([sex, r["sex"]])
            birth_age = np.concatenate([birth_age, r["age"]])
            readm_prev = np.concatenate([readm_prev, r["prev"]])
        m = a["t"].size
        if m:
            rows = P.add_arrivals(
                cfg,
                city,
                drv,
                a,
                subj,
                sex,
                readm_prev,
                rng,
                h,
                cur,
                closed[h - 1] if h else np.zeros(n, bool),
                beds,
                ward_nurses_day,
            )
            dest = P.col("hosp")[rows]
            np.add.at(ems_in[h], dest[P.col("ems")[rows]], 1)
            np.add.at(walk_in[h], dest[~P.col("ems")[rows]], 1)
            np.add.at(diverted_out[h], P.col("origin")[rows][P.col("diverted")[rows]], 1)
            ta = P.col("t_arrive")[rows]
            ha = np.floor(ta).astype(np.int64)
            now = ha <= h  # EMS patients dispatched this hour may reach the ED in a later hour
            np.add.at(cur, (dest[now], U_ED), 1)
            np.add.at(delta, (np.minimum(ha[~now], H + pad), dest[~now], U_ED), 1)
            # home from the ED: leave the ED census at t_ready; readmission draw now
            home = P.col("disp")[rows] == 0
            hr = rows[home]
            np.add.at(
                delta,
                (np.minimum(np.floor(P.col("t_ready")[hr]).astype(np.int64) + 1, H + pad), P.col("hosp")[hr], U_ED),
                -1,
            )
            P.set("t_end", hr, P.col("t_ready")[hr])
            _schedule_readmission(cfg, P, hr, rng_readmit, pending, cur, beds)
            adm = rows[~home]
            queue = np.concatenate([queue, adm])
            q_ready = np.concatenate([q_ready, P.col("t_ready")[adm]])
            q_unit = np.concatenate([q_unit, P.col("first_unit")[adm]])
            q_hosp = np.concatenate([q_hosp, P.col("hosp")[adm]])
            q_prio = np.concatenate([q_prio, (P.col("first_unit")[adm] != U_ICU) * 10.0 + P.col("mts")[adm]])
            last_wait[h] = _group_mean(P.col("wait_h")[rows], P.col("hosp")[rows], n)

        # ---- beds: patients ready by the end of this hour, in priority order, while beds are free
        ready = q_ready < h + 1
        if ready.any():
            # ward beds are one pool per hospital (patients lie on another specialty's ward when theirs is
            # full, as "Fremdlieger"); the census stays per specialty, so its nurses carry the overflow
            free = np.maximum(beds["beds"] - cur, 0)  # (n, nu)
            free[:, WARD_POOL] = np.maximum(beds["beds"][:, 2:].sum(1) - cur[:, 2:].sum(1), 0)
            free[:, U_ICU] += electives.movable(h)
            idx = np.nonzero(ready)[0]
            key = q_hosp[idx] * nu + np.where(q_unit[idx] >= WARD_POOL, WARD_POOL, q_unit[idx])
            order = np.lexsort((q_ready[idx], q_prio[idx], key))
            idx, key = idx[order], key[order]
            first = np.searchsorted(key, key)  # rank within (hospital, unit)
            rank = np.arange(idx.size) - first
            take = rank < free.reshape(-1)[key]
            got = idx[take]
            if got.size:
                rows = queue[got]
                t_bed = np.maximum(q_ready[got], h + rng.random(got.size) * 0.5)
                t_bed = np.minimum(t_bed, h + 0.999)
                ed_exit = np.minimum(np.floor(t_bed).astype(np.int64) + 1, H + pad)
                np.add.at(delta, (ed_exit, q_hosp[got], U_ED), -1)
                P.set("t_bed", rows, t_bed)
                # patients per scheduled day nurse relative to the PpUGV limit (1 = exactly at the limit)
                cap = beds["nurses"][q_hosp[got], q_unit[got], 0] * beds["limit"][q_unit[got], 0]
                strain = cur[q_hosp[got], q_unit[got]] / np.maximum(cap, 1.0)
                P.set("strain_ratio", rows, strain)
                _inpatient_course(cfg, P, rows, rng_course)
                _add_stay_census(P, rows, delta, H + pad)
                alive = ~P.col("died")[rows]
                _schedule_readmission(cfg, P, rows[alive], rng_readmit, pending, cur, beds)
                keep = np.ones(queue.size, bool)
                keep[got] = False
                queue, q_ready, q_unit, q_hosp, q_prio = (x[keep] for x in (queue, q_ready, q_unit, q_hosp, q_prio))
        waiting = q_ready < h + 1
        electives.make_room(h, cur, delta)
        electives.admit(h, cur, delta, np.bincount(q_hosp[waiting & (q_unit == U_ICU)], minlength=n))
        np.add.at(boarders[h], q_hosp[waiting], 1)
        if waiting.any():
            longest_board[h] = _group_max(h + 1 - q_ready[waiting], q_hosp[waiting], n)
        census[h] = cur

        # ---- closure to ambulances (Abmeldung): NEDOCS-driven hazard in the allowed daytime window
        hosp_beds = beds["beds"][:, 1:].sum(1)
        nedocs[h] = (
            -20
            + 85.8 * cur[:, U_ED] / city["ed_beds"]
            + 600 * boarders[h] / hosp_beds
            + 0.93 * longest_board[h]
            + 5.64 * last_wait[h]
        )
        hod = drv["hod"][h]
        daytime = CLOSURE_ALLOWED_FROM_H <= hod < CLOSURE_ALLOWED_UNTIL_H
        is_closed = closure_end_t > h
        eligible[h] = ~is_closed
        z = (nedocs[h] - base_mean) / np.maximum(np.sqrt(base_var), CLOSURE_MIN_SD)
        haz = CLOSURE_HAZARD_MAX / (1 + np.exp(-(z - cfg.closure_z_mid) / cfg.closure_z_width))
        haz = haz * (daytime and h >= CLOSURE_MIN_HISTORY_H)
        if h == 0:
            base_mean = nedocs[0].copy()
        else:
            d = nedocs[h] - base_mean
            base_mean = base_mean + base_w * d
            base_var = (1.0 - base_w) * (base_var + base_w * d * d)
        hazard_open[h] = haz
        draws = rng_close.random(n)
        dur = np.exp(np.log(CLOSURE_MEDIAN_H) + CLOSURE_SIGMA * rng_close.standard_normal(n))
        start_now = (~is_closed) & (draws < haz)
        if start_now.any():
            t0 = h + rng_close.random(n)
            day_end = (h - hod + 0.5) + CLOSURE_ALLOWED_UNTIL_H  # 21:00 of this day
            t1 = np.minimum(t0 + dur, day_end)
            for i in np.nonzero(start_now)[0]:  # loop per hospital (closures are rare)
                closures.append((i, t0[i], t1[i]))
                closure_end_t[i] = t1[i]
            closure_start[h] = start_now
        closed[h] = closure_end_t > h + 0.5
        closed_until[h] = closure_end_t

    pw = P.finish()
    return {
        "pathways": pw,
        "census": census,
        "boarders": boarders,
        "closed": closed,
        "closure_start": closure_start,
        "hazard_open": hazard_open,
        "eligible": eligible,
        "closed_until": closed_until,
        "nedocs": nedocs,
        "ems_in": ems_in,
        "walk_in": walk_in,
        "diverted_out": diverted_out,
        "beds": beds,
        "closures": np.array(closures, dtype=float).reshape(-1, 3),
        "longest_board": longest_board,
        "icu_electives": {
            "admitted": electives.admitted,
            "cancelled": electives.cancelled,
            "moved_out": electives.moved_out,
        },
    }


class _ElectiveIcu:
    """Elective post-operative ICU stays: census only (no pathways, events or labels), see TARGET_ICU_OCCUPANCY.

    Arrivals come daily ELECTIVE_FROM_H-ELECTIVE_UNTIL_H; one is admitted when the ICU's census of the next
    hour leaves a bed free and no emergency waits for one, else it is cancelled (counted). An elective stay is cut
    short at the next hour when an emergency took its bed. Census moves through the loop's `delta` like every
    other stay: +1 from the hour after admission, -1 at the hour of leaving.
    """

    def __init__(self, cfg, drv, beds, n):
        window = (drv["hod"] >= ELECTIVE_FROM_H) & (drv["hod"] < ELECTIVE_UNTIL_H)
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 11]))
        self.arrivals = self.rng.poisson(window[:, None] * beds["elective_per_h"][None, :])  # (H, n)
        self.icu_beds = beds["beds"][:, U_ICU]
        self.last = cfg.hours + int(24 * (cfg.max_los_days * 2 + 40))  # the loop's last delta row
        self.hosp = np.zeros(0, dtype=np.int64)
        self.leave = np.zeros(0, dtype=np.int64)  # hour whose delta holds the stay's -1
        self.admitted = self.cancelled = self.moved_out = 0

    def movable(self, h):
        """(n,) elective patients still in the ICU at hour h + 1, whose beds an emergency may take."""
        return np.bincount(self.hosp[self.leave > h + 1], minlength=self.icu_beds.size)

    def make_room(self, h, cur, delta):
        """Move elective patients out at h + 1 where the emergencies bedded in hour h overfill the ICU."""
        over = cur[:, U_ICU] + delta[h + 1, :, U_ICU] - self.icu_beds
        for i in np.nonzero(over > 0)[0]:  # rare: only hospitals whose ICU is full
            mine = np.nonzero((self.hosp == i) & (self.leave > h + 1))[0]
            out = mine[np.argsort(self.leave[mine], kind="stable")[: over[i]]]
            np.add.at(delta, (self.leave[out], i, U_ICU), 1)
            delta[h + 1, i, U_ICU] -= out.size
            self.leave[out] = h + 1
            self.moved_out += out.size

    def admit(self, h, cur, delta, icu_waiting):
        """Admit this hour's elective arrivals into the beds free at h + 1; cancel the rest."""
        self.hosp, self.leave = self.hosp[self.leave > h], self.leave[self.leave > h]
        room = self.icu_beds - (cur[:, U_ICU] + delta[h + 1, :, U_ICU])
        k = np.where(icu_waiting > 0, 0, np.minimum(self.arrivals[h], np.maximum(room, 0)))
        self.cancelled += int(self.arrivals[h].sum() - k.sum())
        if not k.any():
            return
        hosp = np.repeat(np.arange(k.size), k)
        los_h = np.exp(
            np.log(24.0 * ICU_ELECTIVE_LOS_DAYS)
            - ICU_ELECTIVE_SIGMA**2 / 2
            + ICU_ELECTIVE_SIGMA * self.rng.standard_normal(hosp.size)
        )
        leave = np.minimum(h + 1 + np.maximum(np.round(los_h), 1).astype(np.int64), self.last)
        np.add.at(delta, (np.full(hosp.size, h + 1), hosp, U_ICU), 1)
        np.add.at(delta, (leave, hosp, U_ICU), -1)
        self.hosp, self.leave = np.concatenate([self.hosp, hosp]), np.concatenate([self.leave, leave])
        self.admitted += hosp.size


def pending_keys():
    return ("t", "hosp", "kind", "ems", "age", "icd", "sk", "subject", "sex", "prev")


def _group_mean(x, g, n):
    s = np.bincount(g, weights=x, minlength=n)
    c = np.bincount(g, minlength=n)
    return np.where(c > 0, s / np.maximum(c, 1), 0.0)


def _group_max(x, g, n):
    out = np.zeros(n)
    np.maximum.at(out, g, x)
    return out


def _size_beds(cfg, city, arr) -> dict:
    """Beds per hospital and unit so that ED-admitted patients fill TARGET_OCCUPANCY on average.

    The expected census uses the arrival list and the disposition model with its own noise draw (a fixed
    stream), ignoring waits and readmissions; the realised occupancy is a calibration check.
    """
    n, nu = city["n"], len(UNITS)
    noise = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7])).normal(0, SEVERITY_SD, arr["t"].size)
    sev = _triage_severity_mean(arr) + noise
    p_icu, p_ward = _disposition_probs(sev, arr["age"])
    unit = _ward_unit(arr["icd"], arr["age"])
    los = np.array([UNIT_LOS_DAYS.get(u, 0.0) for u in UNITS])
    # an ambulance patient goes to the nearest other hospital while its own is closed (small EDs next to large
    # ones absorbed enough of this to run their wards at 95-97 % when beds were sized without it)
    dist = city["dist"] + np.diag(np.full(n, np.inf))
    diverted = arr["ems"] * EXPECTED_CLOSED_SHARE
    hosp = np.concatenate([arr["hosp"], np.argmin(dist, axis=1)[arr["hosp"]]])
    weight = np.concatenate([1.0 - diverted, diverted]) / cfg.days
    p_icu, p_ward, unit = (np.tile(x, 2) for x in (p_icu, p_ward, unit))
    census = np.zeros((n, nu))
    np.add.at(census, (hosp, U_ICU), weight * p_icu * ICU_DEMAND_FACTOR * ICU_LOS_DAYS)
    np.add.at(census, (hosp, unit), weight * (p_ward + p_icu) * los[unit])
    beds = np.maximum(MIN_UNIT_BEDS, np.round(census / TARGET_OCCUPANCY)).astype(np.int64)
    beds[:, U_ICU] = np.maximum(MIN_UNIT_BEDS, np.round(census[:, U_ICU] / ICU_ED_SHARE / TARGET_ICU_OCCUPANCY))
    # elective ICU admissions per hour of their daily window: an elective finding no free bed is cancelled, so the
    # offered load is the one whose carried load fills the target (Erlang's loss formula, emergencies included)
    offered = _offered_load(beds[:, U_ICU], beds[:, U_ICU] * TARGET_ICU_OCCUPANCY)
    window_share = (ELECTIVE_UNTIL_H - ELECTIVE_FROM_H) / 24
    elective_per_h = np.maximum(offered - census[:, U_ICU], 0.0) / (24.0 * ICU_ELECTIVE_LOS_DAYS) / window_share
    beds[:, U_ED] = city["ed_beds"]
    limit_day = np.array([1.0 / ED_NURSES_PER_BED / 1.0, *[PPUGV_LIMIT[u][0] for u in UNITS[1:]]])
    limit_night = np.array([1.5 / ED_NURSES_PER_BED, *[PPUGV_LIMIT[u][1] for u in UNITS[1:]]])
    expected = beds * TARGET_OCCUPANCY
    expected[:, U_ED] = beds[:, U_ED] * 0.8
    expected[:, U_ICU] = beds[:, U_ICU] * TARGET_ICU_OCCUPANCY
    nurses = np.stack(
        [np.ceil(expected / limit_day * STAFF_SLACK), np.ceil(expected / limit_night * STAFF_SLACK)], axis=-1
    ).astype(np.int64)  # (n, nu, 2) day, night
    return {
        "beds": beds,
        "nurses": nurses,
        "limit": np.stack([limit_day, limit_night], -1),
        "elective_per_h": elective_per_h,
    }


def _offered_load(servers: np.ndarray, carried: np.ndarray) -> np.ndarray:
    """Offered load a with a (1 - B(c, a)) = carried for c servers, B Erlang's loss formula (bisection)."""
    lo, hi = carried.astype(float), 10.0 * servers.astype(float) + 10.0
    for _ in range(60):
        a = (lo + hi) / 2
        b = np.ones_like(a)
        for k in range(1, int(servers.max()) + 1):  # B(k) = a B(k-1) / (k + a B(k-1)), kept at k = c
            b = np.where(k <= servers, a * b / (k + a * b), b)
        low = a * (1 - b) < carried
        lo, hi = np.where(low, a, lo), np.where(low, hi, a)
    return (lo + hi) / 2


def _triage_severity_mean(arr):
    return 0.02 * (arr["age"] - 50) + 0.35 * arr["ems"] + np.where(arr["sk"] >= 0, 1.8 - 1.2 * arr["sk"], 0.0)


def _disposition_probs(sev, age):
    """P(ICU), P(ward) from triage severity: multinomial logit against home (softmax, overflow-safe)."""
    ward_a, ward_s, ward_age = DISPOSITION_WARD
    icu_a, icu_s = DISPOSITION_ICU
    z = np.stack([np.zeros_like(sev), ward_a + ward_s * sev + ward_age * (age - 50), icu_a + icu_s * sev])
    z = z - z.max(0)
    e = np.exp(z)
    e /= e.sum(0)
    return e[2], e[1]


def _ward_unit(icd, age):
    base = np.array([UNITS.index(u) for u in ICD_WARD_UNIT])[icd]
    medical = np.isin(base, [UNITS.index("IM"), UNITS.index("NEURO")])
    return np.where(medical & (age >= GERIATRIC_AGE), UNITS.index("GER"), base)


class _PathwayStore:
    """Column store of pathways; rows appended per hour as numpy arrays, concatenated on finish."""

    FLOAT = (
        "t_onset",
        "t_arrive",
        "t_phys",
        "t_ready",
        "t_bed",
        "t_end",
        "t_ae",
        "t_icu_in",
        "t_icu_out",
        "t_death",
        "age",
        "s0",
        "s_phys",
        "s_inf",
        "tau",
        "drift",
        "wait_h",
        "delay_h",
        "treat_h",
        "strain_ratio",
        "ward_los_h",
        "icu_los_h",
        "e_ae",
        "q_fatal",
        "p_icu",
        "p_ward",
        "p_readmit",
        "response_min",
        "transport_min",
        "crowding",
        "ae_strain",
        "e_icu_death",
    )
    INT = (
        "subject",
        "hosp",
        "origin",
        "kind",
        "icd",
        "sk",
        "mts",
        "disp",
        "first_unit",
        "ward_unit",
        "sex",
        "prev",
        "row",
    )
    BOOL = ("ems", "diverted", "ae", "fatal", "icu_after_ae", "died", "readmit_drawn")

    def __init__(self):
        self.parts = []
        self.n = 0
        self.cols = None  # live view for the current simulation: dict of growable arrays
        self.cap = 0

    def _grow(self, need):
        if self.cols is None:
            self.cap = max(1024, need * 2)
            self.cols = {}
            for k in self.FLOAT:
                self.cols[k] = np.full(self.cap, np.nan)
            for k in self.INT:
                self.cols[k] = np.full(self.cap, -1, dtype=np.int64)
            for k in self.BOOL:
                self.cols[k] = np.zeros(self.cap, dtype=bool)
        elif need > self.cap:
            new = max(need, self.cap * 2)
            for k, v in self.cols.items():
                fill = np.nan if v.dtype == np.float64 else (-1 if v.dtype == np.int64 else False)
                w = np.full(new, fill, dtype=v.dtype)
                w[: self.n] = v[: self.n]
                self.cols[k] = w
            self.cap = new

    def col(self, k):
        return self.cols[k]

    def set(self, k, rows, v):
        self.cols[k][rows] = v

    def add_arrivals(self, cfg, city, drv, a, subj, sex, prev, rng, h, cur, closed_prev, beds, nurses_day):
        m = a["t"].size
        self._grow(self.n + m)
        rows = np.arange(self.n, self.n + m)
        self.n += m
        c = self.cols
        c["row"][rows] = rows
        c["subject"][rows], c["sex"][rows], c["prev"][rows] = subj, sex, prev
        for k in ("kind", "icd", "sk"):
            c[k][rows] = a[k]
        c["ems"][rows] = a["ems"]
        c["age"][rows] = a["age"]
        c["origin"][rows] = a["hosp"]
        c["t_onset"][rows] = a["t"]
        # EMS routing: nearest hospital open to ambulances (walk-ins come regardless of closure).
        dist = city["dist"][a["hosp"]] + np.where(closed_prev, 1e6, 0.0)[None, :]  # (m, n)
        dest = np.where(a["ems"], np.argmin(dist, axis=1), a["hosp"])
        diverted = a["ems"] & (dest != a["hosp"])
        km = city["dist"][a["hosp"], dest] + 3.0  # 3 km within the district
        night = (drv["hod"][h] < 6) | (drv["hod"][h] >= 22)
        response = np.exp(np.log(EMS_RESPONSE_MEDIAN_MIN * (1.15 if night else 1.0)) + 0.35 * rng.standard_normal(m))
        transport = km / EMS_KMH * 60.0 + DIVERSION_DELAY_MIN * diverted
        t_arr = np.where(a["ems"], a["t"] + (response + EMS_ON_SCENE_MIN + transport) / 60.0, a["t"])
        c["hosp"][rows], c["diverted"][rows] = dest, diverted
        c["response_min"][rows] = np.where(a["ems"], response, np.nan)
        c["transport_min"][rows] = np.where(a["ems"], transport, np.nan)
        c["t_arrive"][rows] = t_arr
        # Latent severity at onset and Manchester triage (the worse, the lower the group).
        s0 = _triage_severity_mean(a) + rng.normal(0, SEVERITY_SD, m)
        s0 = s0 + np.where(a["icd"] == ICD_FLU, 0.3 * (a["age"] > 70), 0.0)
        mts = np.digitize(-(s0 + rng.normal(0, 0.45, m)), -MTS_SEVERITY_CUTS) + 1
        mts = np.where(
            a["sk"] >= 0, np.array([1, 3, 4])[np.maximum(a["sk"], 0)] + (a["sk"] == 0) * (rng.random(m) < 0.5), mts
        )
        c["s0"][rows], c["mts"][rows] = s0, mts
        # ED wait grows with crowding (occupancy at arrival); delay beyond the MTS target raises severity.
        occ = cur[dest, U_ED] / city["ed_beds"][dest]
        crowd = np.minimum(0.4 + 0.6 * (occ / 0.7) ** 2, MAX_CROWDING_FACTOR)
        wait_h = rng.exponential(ED_MEAN_WAIT_MIN[mts - 1] * crowd) / 60.0
        delay = np.maximum(0.0, wait_h - MTS_TARGET_MIN[mts - 1] / 60.0)
        drift = np.maximum(0.0, rng.normal(0.3, 0.5, m)) * UNTREATED_DRIFT_PER_H
        t_phys = t_arr + wait_h
        s_phys = s0 + drift * np.minimum(t_phys - a["t"], MAX_UNTREATED_H)
        treat = np.exp(np.log(ED_TREAT_MEDIAN_H[mts - 1]) + 0.45 * rng.standard_normal(m))
        c["crowding"][rows] = occ
        c["wait_h"][rows], c["delay_h"][rows], c["drift"][rows] = wait_h, delay, drift
        c["t_phys"][rows], c["s_phys"][rows], c["treat_h"][rows] = t_phys, s_phys, treat
        c["t_ready"][rows] = t_phys + treat
        c["s_inf"][rows] = s_phys - rng.normal(1.0, 0.7, m)
        c["tau"][rows] = rng.uniform(12.0, 48.0, m)
        # Disposition at the end of ED treatment, from severity at first physician contact.
        p_icu, p_ward = _disposition_probs(s_phys, a["age"])
        u = rng.random(m)
        disp = np.where(u < p_icu, 2, np.where(u < p_icu + p_ward, 1, 0))
        c["p_icu"][rows], c["p_ward"][rows], c["disp"][rows] = p_icu, p_ward, disp
        wu = _ward_unit(a["icd"], a["age"])
        c["ward_unit"][rows] = wu
        c["first_unit"][rows] = np.where(disp == 2, U_ICU, np.where(disp == 1, wu, U_ED))
        los_mean_h = np.array([UNIT_LOS_DAYS.get(x, 1.0) for x in UNITS])[wu] * 24.0
        los_mean_h = np.where(wu == UNITS.index("GER"), GER_PLAN_FACTOR * los_mean_h, los_mean_h)
        sigma = np.where(wu == UNITS.index("GER"), GER_LOS_SIGMA, LOS_SIGMA)
        ward_los = np.exp(np.log(los_mean_h) - sigma**2 / 2 + sigma * rng.standard_normal(m))
        c["ward_los_h"][rows] = np.minimum(ward_los, 24.0 * cfg.max_los_days)
        icu_los = np.exp(np.log(ICU_LOS_DAYS * 24.0) - 0.5 + 1.0 * rng.standard_normal(m))
        c["icu_los_h"][rows] = np.minimum(icu_los, 24.0 * cfg.max_los_days)
        c["e_ae"][rows] = rng.exponential(1.0, m)  # unit-exponential threshold of the cumulative AE hazard
        c["q_fatal"][rows] = rng.random(m)  # uniform for the fatality draw
        c["icu_after_ae"][rows] = rng.random(m) < ICU_AFTER_AE
        c["e_icu_death"][rows] = rng.exponential(1.0, m)  # threshold of the cumulative ICU death hazard
        c["t_ae"][rows] = np.nan
        return rows

    def finish(self):
        return {k: v[: self.n].copy() for k, v in self.cols.items()}


def severity_at(pw: dict, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Latent severity s(t): untreated drift until the first physician, then relaxation to s_inf (time tau)."""
    t_phys = pw["t_phys"][rows]
    before = pw["s0"][rows] + pw["drift"][rows] * np.clip(t - pw["t_onset"][rows], 0.0, MAX_UNTREATED_H)
    s_inf, s_phys = pw["s_inf"][rows], pw["s_phys"][rows]
    after = s_inf + (s_phys - s_inf) * np.exp(-np.maximum(t - t_phys, 0.0) / pw["tau"][rows])
    return np.where(t < t_phys, before, after)


def _ae_log_hazard(pw, rows, s):
    """log hourly adverse-event hazard: a + b severity + c strain (strain fixed at admission)."""
    return AE_INTERCEPT + AE_SEVERITY * s + AE_STRAIN * pw["ae_strain"][rows]


def _fatal_prob(pw, rows, s):
    z = FATAL_INTERCEPT + FATAL_SEVERITY * s + FATAL_STRAIN * pw["ae_strain"][rows]
    return 1.0 / (1.0 + np.exp(-z))


def hazard_grid(pw: dict, rows: np.ndarray):
    """Hourly grid of the adverse-event process over each planned inpatient stay (t_bed to planned end).

    Returns (owner, t0, dt, log_h) flat arrays (one row per bin) plus per-row offsets. The grid covers the ward
    part of the plan: a direct ICU admission meets the process from its planned step-down on (in the ICU its
    risk is the ICU death hazard). Used both to draw adverse events and to compute the oracles.
    """
    start = _ward_plan_start(pw, rows)
    plan = pw["ward_los_h"][rows]
    nb = np.ceil(plan).astype(np.int64).clip(min=1)
    offsets = np.concatenate([[0], np.cumsum(nb)])
    owner = np.repeat(np.arange(rows.size), nb)
    k = np.arange(offsets[-1]) - offsets[owner]
    t0 = start[owner] + k
    dt = np.minimum(1.0, start[owner] + plan[owner] - t0)
    s_mid = severity_at(pw, rows[owner], t0 + dt / 2)
    log_h = _ae_log_hazard(pw, rows[owner], s_mid)
    return owner, t0, dt, log_h, offsets, s_mid


def _inpatient_course(cfg, P, rows, rng):
    pw = P.cols
    # strain at admission: unit census per scheduled-nurse capacity, boarding and delay beyond the MTS target
    boarding_h = pw["t_bed"][rows] - pw["t_ready"][rows]
    pw["ae_strain"][rows] = (
        STRAIN_OVER_RATIO * np.maximum(pw["strain_ratio"][rows] - 1.0, 0.0)
        + STRAIN_BOARDING * np.log1p(boarding_h)
        + STRAIN_DELAY * np.minimum(pw["delay_h"][rows], MAX_DELAY_EFFECT_H)
    )
    owner, t0, dt, log_h, offsets, s_mid = hazard_grid(pw, rows)
    cum = np.cumsum(np.exp(log_h) * dt)
    base = np.concatenate([[0.0], cum])[offsets[:-1]]
    cum_rel = cum - base[owner]
    total = cum_rel[offsets[1:] - 1]
    e = pw["e_ae"][rows]
    t_bed, icu_los = pw["t_bed"][rows], pw["icu_los_h"][rows]
    direct_icu = pw["disp"][rows] == 2
    # a direct ICU admission dies in the ICU or reaches the ward, where its adverse-event grid starts
    h_direct = _icu_death_hazard(severity_at(pw, rows, t_bed))
    died_direct = direct_icu & (pw["e_icu_death"][rows] < h_direct * icu_los)
    has = (total >= e) & ~died_direct
    # the first bin where the cumulative hazard passes the threshold, interpolated inside the bin
    first = np.searchsorted(cum, base + e)  # global bin index (cum is non-decreasing)
    first = np.minimum(first, offsets[1:] - 1)
    prev = np.where(first > offsets[:-1], cum[np.maximum(first - 1, 0)] - base, 0.0)
    rate = np.exp(log_h[first])
    t_ae = t0[first] + (e - prev) / rate
    t_ae = np.where(has, t_ae, np.nan)
    s_ae = severity_at(pw, rows, np.where(has, t_ae, pw["t_bed"][rows]))
    fatal = has & (pw["q_fatal"][rows] < _fatal_prob(pw, rows, s_ae))
    to_icu = has & ~direct_icu & ~fatal & pw["icu_after_ae"][rows]  # one ICU episode per pathway
    t_icu_in = np.where(direct_icu, t_bed, np.where(to_icu, t_ae + ICU_AFTER_AE_DELAY_H, np.nan))
    t_icu_out = t_icu_in + icu_los
    h_icu = np.where(direct_icu, h_direct, _icu_death_hazard(s_ae))
    died_icu = died_direct | (to_icu & (pw["e_icu_death"][rows] < h_icu * icu_los))
    t_icu_death = np.where(died_icu, t_icu_in + pw["e_icu_death"][rows] / h_icu, np.nan)
    plan_end = t_bed + pw["ward_los_h"][rows] + np.where(direct_icu, icu_los, 0.0)
    # the ICU stay is inserted into the plan; an adverse event in the plan's last hour ends the stay in the ICU
    # (before: discharge came first and ICU vitals followed it, a readmission label with no pathway end)
    t_end = np.where(to_icu, np.maximum(plan_end + icu_los, t_icu_out), plan_end)
    t_death = np.where(fatal, t_ae + DEATH_AFTER_AE_DELAY_H, t_icu_death)
    died = fatal | died_icu
    t_end = np.where(died, t_death, t_end)
    t_icu_out = np.where(died_icu, t_icu_death, t_icu_out)
    for k, v in (
        ("t_ae", t_ae),
        ("ae", has),
        ("fatal", fatal),
        ("died", died),
        ("t_icu_in", t_icu_in),
        ("t_icu_out", t_icu_out),
        ("t_end", t_end),
        ("t_death", t_death),
    ):
        pw[k][rows] = v


def _ward_plan_start(pw, rows):
    """Start of the planned ward stay: the bed time, or the planned step-down of a direct ICU admission."""
    return pw["t_bed"][rows] + np.where(pw["disp"][rows] == 2, pw["icu_los_h"][rows], 0.0)


def _icu_death_hazard(s):
    """Hourly death hazard in the ICU, fixed by the severity s at ICU admission."""
    return np.exp(ICU_DEATH_INTERCEPT + ICU_DEATH_SEVERITY * s)


def _icu_death_within(h, start, end, t):
    """P(death in the ICU after t) for an ICU stay [start, end) with hazard h, alive at t."""
    return 1.0 - np.exp(-h * np.maximum(end - np.maximum(t, start), 0.0))


def _add_stay_census(P, rows, delta, last):
    pw = P.cols

    def seg(unit, a, b):
        ok = ~np.isnan(a) & ~np.isnan(b) & (b > a)
        ia = np.minimum(np.floor(a[ok]).astype(np.int64) + 1, last)  # occupied from the next hour on
        ib = np.minimum(np.floor(b[ok]).astype(np.int64) + 1, last)
        np.add.at(delta, (ia, pw["hosp"][rows][ok], unit[ok]), 1)
        np.add.at(delta, (ib, pw["hosp"][rows][ok], unit[ok]), -1)

    t_bed, t_end = pw["t_bed"][rows], pw["t_end"][rows]
    icu_in, icu_out = pw["t_icu_in"][rows], pw["t_icu_out"][rows]
    ward = pw["ward_unit"][rows]
    icu = np.full(rows.size, U_ICU)
    has_icu = ~np.isnan(icu_in)
    seg(icu, icu_in, icu_out)
    # ward before the ICU (or the whole stay) and ward after the ICU
    seg(ward, t_bed, np.where(has_icu, icu_in, t_end))
    seg(ward, np.where(has_icu, icu_out, np.nan), t_end)


def _schedule_readmission(cfg, P, rows, rng, pending, cur, beds):
    """30-day readmission: logistic in end-of-stay severity, age and ward crowding at discharge."""
    if rows.size == 0:
        return
    pw = P.cols
    s_end = severity_at(pw, rows, pw["t_end"][rows])
    occ = cur[pw["hosp"][rows], 2:].sum(1) / np.maximum(beds["beds"][pw["hosp"][rows], 2:].sum(1), 1)
    z = (
        math.log(cfg.readmission_base / (1 - cfg.readmission_base))
        + READMIT_SEVERITY * s_end
        + READMIT_AGE_PER_10Y * (pw["age"][rows] - 60) / 10
        + READMIT_CROWDING * np.maximum(occ - TARGET_OCCUPANCY, 0)
    )
    p = 1 / (1 + np.exp(-z))
    pw["p_readmit"][rows] = p
    back = rng.random(rows.size) < p
    gap = 24.0 + rng.random(rows.size) * (30 * 24.0 - 24.0)  # returns 1-30 days after discharge
    t_back = pw["t_end"][rows] + gap
    pw["readmit_drawn"][rows] = back
    sel = back & (t_back < cfg.hours)
    r = rows[sel]
    if r.size == 0:
        return
    tb = t_back[sel]
    hours = np.floor(tb).astype(np.int64)
    ems = rng.random(r.size) < 0.5
    icd = np.where(
        rng.random(r.size) < 0.6, pw["icd"][r], _choice(rng, ICD_BASE_WEIGHT / ICD_BASE_WEIGHT.sum(), r.size)
    )
    rec = dict(
        t=tb,
        hosp=pw["hosp"][r],
        kind=np.full(r.size, 5),
        ems=ems,
        age=pw["age"][r] + gap[sel] / 8760.0,
        icd=icd,
        sk=np.full(r.size, -1),
        subject=pw["subject"][r],
        sex=pw["sex"][r],
        prev=r,
    )
    order = np.argsort(hours, kind="stable")
    hours = hours[order]
    cut = np.nonzero(np.diff(hours))[0] + 1
    for lo, hi in zip(np.concatenate([[0], cut]), np.concatenate([cut, [hours.size]]), strict=True):
        pending.setdefault(int(hours[lo]), []).append({k: v[order][lo:hi] for k, v in rec.items()})


# ----------------------------------------------------------------------------------------------------------
# Staff per unit and shift


def shift_index(cfg: SyntheticConfig, t: np.ndarray) -> np.ndarray:
    """Shift number of simulation time t (hours): 0 is the partial night before the first 06:00, then
    day (06-22) and night (22-06) alternate."""
    x = np.asarray(t, dtype=SIM_DTYPE) + pd.Timestamp(cfg.start).hour - DAY_SHIFT_START_H
    day = np.floor(x / 24.0)
    within = x - 24.0 * day
    return (2 * day + (within >= NIGHT_SHIFT_START_H - DAY_SHIFT_START_H) + 1).astype(np.int64)


def _staff(cfg, city, sim, rng) -> dict:
    H, n, nu = cfg.hours, city["n"], len(UNITS)
    beds = sim["beds"]
    sh = shift_index(cfg, np.arange(H) + 0.5)  # (H,)
    S = int(sh.max()) + 1
    n_hours = np.bincount(sh, minlength=S)
    census = np.zeros((S, n, nu))
    np.add.at(census, sh, sim["census"].astype(float))
    census /= n_hours[:, None, None]
    first_hour = np.searchsorted(sh, np.arange(S))
    night = np.array(
        [
            (pd.Timestamp(cfg.start).hour + h) % 24 >= NIGHT_SHIFT_START_H
            or (pd.Timestamp(cfg.start).hour + h) % 24 < DAY_SHIFT_START_H
            for h in first_hour
        ]
    )
    limit = beds["limit"][None, :, :].repeat(n, 0)  # (n, nu, 2)
    sched = np.zeros((S, n, nu), dtype=np.int64)
    sick = np.zeros((S, n, nu), dtype=np.int64)
    p_sick = np.zeros((S, n, nu))
    lim = np.zeros((S, n, nu))
    overload_hist = np.zeros((S, n, nu))
    window = 14  # shifts in the last week: sick leave follows the recent workload
    for s in range(S):  # loop per shift, vectorised over hospitals and units
        k = int(night[s])
        sched[s] = beds["nurses"][:, :, k]
        lim[s] = limit[:, :, k]
        lo = max(0, s - window)
        recent = overload_hist[lo:s].mean(0) if s > lo else np.zeros((n, nu))
        p_sick[s] = np.clip(SICK_BASE + SICK_PER_OVERLOAD * recent, 0.0, 0.5)
        sick[s] = rng.binomial(sched[s], p_sick[s])
        present = np.maximum(sched[s] - sick[s], 0)
        overload_hist[s] = np.maximum(census[s] / np.maximum(present, 1) / lim[s] - 1.0, 0.0)
    present = sched - sick
    ppn = census / np.maximum(present, 1)
    violation = ppn > lim
    # Oracle: enumerate the binomial number of nurses present (recursion on the pmf; n <= a few dozen).
    q = 1.0 - p_sick
    pmf = (1.0 - q) ** sched  # P(present = 0)
    p_viol = np.zeros_like(ppn)
    e_work = np.zeros_like(ppn)
    for x in range(int(sched.max()) + 1):
        w = census / max(x, 1)
        p_viol += pmf * (w > lim)
        e_work += pmf * w
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(q < 1.0, q / np.maximum(1.0 - q, 1e-300), 0.0)
        pmf = np.where(x < sched, pmf * (sched - x) / (x + 1) * ratio, 0.0)
    shift_len = np.where(night, 8.0, 16.0)
    overtime = np.maximum(census / lim - present, 0.0) * shift_len[:, None, None]
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
            "nurses_scheduled": sched.ravel(),
            "nurses_sick": sick.ravel(),
            "nurses_present": present.ravel(),
            "mean_census": census.ravel().astype(np.float32),
            "patients_per_nurse": ppn.ravel().astype(np.float32),
            "ppugv_limit": np.where(ppugv[u_idx.ravel()], lim.ravel(), np.nan).astype(np.float32),
            "ratio_violation": violation.ravel() & ppugv[u_idx.ravel()],
            "p_ratio_violation": np.where(ppugv[u_idx.ravel()], p_viol.ravel(), np.nan).astype(np.float32),
            "expected_patients_per_nurse": e_work.ravel().astype(np.float32),
            "p_sick": p_sick.ravel().astype(np.float32),
            "overtime_h": overtime.ravel().astype(np.float32),
        }
    )
    return {
        "S": S,
        "ppn": ppn,
        "violation": violation,
        "p_viol": p_viol,
        "e_work": e_work,
        "ppugv": ppugv,
        "frame": frame,
    }


# ----------------------------------------------------------------------------------------------------------
# Events


class _Codes:
    """Code strings by id; ids are assigned in first-use order, which is fixed by the code below."""

    def __init__(self):
        self.names: list[str] = []
        self.ids: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        if name not in self.ids:
            self.ids[name] = len(self.names)
            self.names.append(name)
        return self.ids[name]


STAGE_ID = {"static": 0, "EMS": 1, "ED": 2, "ward": 3, "ICU": 4, "discharge": 5}

# What a real record holds on each event row, and from when: every column of `_events_frame` -> the event of the
# pathway from which it is known (the time-travel tests check the rows against rules of their own). THE_EVENT:
# the column describes the event itself and is written by the code that emits it: a value is a measurement taken
# at the event or a duration that ends at it (the transport minutes go on ED//ARRIVAL, not on the departure),
# the unit is where the event happens (the ED from ED//ARRIVAL, a bed from ADT//ADMIT or a transfer). The other
# columns are attributes of the pathway, stamped on its events from the first of the listed events on and null
# before; inclusive, as in MEDS a prediction at time t may use everything up to and including t.
THE_EVENT = ()
FIELD_KNOWN_FROM = {
    "subject_id": THE_EVENT,
    "time": THE_EVENT,
    "code": THE_EVENT,
    "numeric_value": THE_EVENT,
    "text_value": THE_EVENT,
    "stage": THE_EVENT,
    "unit": THE_EVENT,
    "pathway_id": ("EMS//DISPATCH", "ED//ARRIVAL"),  # the encounter opens with the first contact
    "arrival_mode": ("EMS//DISPATCH", "ED//ARRIVAL"),  # an emergency call, or a walk-in registering at the ED
    "hospital": ("EMS//TRANSPORT", "ED//ARRIVAL"),  # the crew chooses the destination when it leaves the scene
    "triage_group": ("ED//TRIAGE",),  # Manchester triage, minutes after the ED arrival (not in the ambulance)
}


def _events(cfg, city, pw, rng) -> dict:
    codes = _Codes()
    fam = []  # per family: dict(p, t, code, value, stage, unit, order, text)

    def add(p, t, code, value=None, stage="ED", unit=None, order=0, text=None):
        p = np.asarray(p, dtype=np.int64)
        code = np.full(p.size, codes(code)) if isinstance(code, str) else np.asarray(code)
        fam.append(
            dict(
                p=p,
                t=np.asarray(t, dtype=SIM_DTYPE) if t is not None else np.full(p.size, np.nan),
                code=code,
                value=np.full(p.size, np.nan) if value is None else np.asarray(value, dtype=SIM_DTYPE),
                stage=np.full(p.size, STAGE_ID[stage]) if isinstance(stage, str) else np.asarray(stage),
                unit=np.full(p.size, -1) if unit is None else np.asarray(unit),
                order=np.full(p.size, order),
                text=text,
            )
        )

    N = pw["row"].size
    allp = np.arange(N)
    # Static subject facts, emitted with the subject's first pathway: sex (null time) and birth.
    first = pw["prev"] < 0
    fp = allp[first]
    sex_code = np.where(pw["sex"][fp] == 1, codes("SEX//F"), codes("SEX//M"))
    add(fp, None, sex_code, stage="static", order=-2)
    birth_t = pw["t_onset"][fp] - pw["age"][fp] * 24 * 365.25
    add(fp, birth_t, "MEDS_BIRTH", stage="static", order=-1)

    # EMS prelude
    e = allp[pw["ems"]]
    t_scene = pw["t_onset"][e] + pw["response_min"][e] / 60
    t_leave = t_scene + EMS_ON_SCENE_MIN / 60
    add(e, pw["t_onset"][e], "EMS//DISPATCH", stage="EMS", order=0)
    add(e, t_scene, "EMS//ON_SCENE", pw["response_min"][e], stage="EMS", order=1)
    mci = e[pw["sk"][e] >= 0]
    sk_names = np.array([codes("MANV//SK_I"), codes("MANV//SK_II"), codes("MANV//SK_III")])
    add(mci, pw["t_onset"][mci] + pw["response_min"][mci] / 60, sk_names[pw["sk"][mci]], stage="EMS", order=2)
    vit = [(e, t_scene + 5 / 60, STAGE_ID["EMS"], -1)]
    # the departure: the destination is chosen now; the transport's duration is known at the arrival (below)
    add(e, t_leave, "EMS//TRANSPORT", stage="EMS", order=3, text=np.where(pw["diverted"][e], "diverted", None))

    # ED
    add(allp, pw["t_arrive"], "ED//ARRIVAL", pw["transport_min"], stage="ED", unit=np.full(N, U_ED), order=0)
    t_tri = pw["t_arrive"] + 5 / 60
    add(allp, t_tri, "ED//TRIAGE", pw["mts"], stage="ED", unit=np.full(N, U_ED), order=1)
    add(allp, pw["t_phys"], "ED//PHYSICIAN", pw["wait_h"] * 60, stage="ED", unit=np.full(N, U_ED), order=1)
    icd_ids = np.array([codes(f"ICD10GM//{c}") for c in ICD_CHAPTERS])
    add(allp, pw["t_ready"], icd_ids[pw["icd"]], stage="ED", unit=np.full(N, U_ED), order=2)
    disp_ids = np.array([codes("ED//DISPOSITION//HOME"), codes("ED//DISPOSITION//WARD"), codes("ED//DISPOSITION//ICU")])
    add(allp, pw["t_ready"], disp_ids[pw["disp"]], stage="ED", unit=np.full(N, U_ED), order=3)
    home = allp[pw["disp"] == 0]
    add(home, pw["t_ready"][home], "ED//DISCHARGE", stage="discharge", unit=np.full(home.size, U_ED), order=9)
    admitted = allp[(pw["disp"] > 0) & ~np.isnan(pw["t_bed"])]
    queued = allp[(pw["disp"] > 0) & np.isnan(pw["t_bed"])]  # still boarding when the window closes
    ed_exit = np.where(pw["disp"] == 0, pw["t_ready"], pw["t_bed"])
    ed_exit = np.where(np.isnan(ed_exit), cfg.hours, ed_exit)
    sick_ed = pw["mts"] <= 2
    vit.append((allp, t_tri, STAGE_ID["ED"], U_ED, ed_exit, np.where(sick_ed, VITALS_EVERY_H["ED"], 4.0)))
    del queued

    # Inpatient stay
    a = admitted
    first_unit = pw["first_unit"][a]
    add(
        a,
        pw["t_bed"][a],
        "ADT//ADMIT",
        pw["t_bed"][a] - pw["t_ready"][a],
        stage=np.where(first_unit == U_ICU, STAGE_ID["ICU"], STAGE_ID["ward"]),
        unit=first_unit,
        order=0,
    )
    has_icu = ~np.isnan(pw["t_icu_in"][a])
    t_end = pw["t_end"][a]
    ward_every = np.where(pw["s_phys"][a] > 1.5, VITALS_EVERY_H["ward_sick"], VITALS_EVERY_H["ward"])
    w1_end = np.where(has_icu, pw["t_icu_in"][a], t_end)
    direct = pw["disp"][a] == 2
    vit.append(
        (
            a[~direct],
            pw["t_bed"][a][~direct] + 0.25,
            STAGE_ID["ward"],
            pw["ward_unit"][a][~direct],
            w1_end[~direct],
            ward_every[~direct],
        )
    )
    ai = a[has_icu]
    vit.append(
        (
            ai,
            pw["t_icu_in"][ai] + 0.25,
            STAGE_ID["ICU"],
            np.full(ai.size, U_ICU),
            pw["t_icu_out"][ai],
            np.full(ai.size, VITALS_EVERY_H["ICU"]),
        )
    )
    step_down = ai[pw["t_icu_out"][ai] < pw["t_end"][ai]]
    vit.append(
        (
            step_down,
            pw["t_icu_out"][step_down] + 0.25,
            STAGE_ID["ward"],
            pw["ward_unit"][step_down],
            pw["t_end"][step_down],
            ward_every[has_icu][pw["t_icu_out"][ai] < pw["t_end"][ai]],
        )
    )
    transfer = ai[~direct[has_icu]]
    add(
        transfer,
        pw["t_icu_in"][transfer],
        "ADT//TRANSFER_ICU",
        stage="ICU",
        unit=np.full(transfer.size, U_ICU),
        order=1,
    )
    add(
        step_down,
        pw["t_icu_out"][step_down],
        "ADT//TRANSFER_WARD",
        stage="ward",
        unit=pw["ward_unit"][step_down],
        order=1,
    )
    ae = a[pw["ae"][a]]
    in_icu = (
        (~np.isnan(pw["t_icu_in"][ae]))
        & (pw["t_icu_in"][ae] <= pw["t_ae"][ae])
        & (pw["t_ae"][ae] < pw["t_icu_out"][ae])
    )
    add(
        ae,
        pw["t_ae"][ae],
        "ADVERSE_EVENT",
        stage=np.where(in_icu, STAGE_ID["ICU"], STAGE_ID["ward"]),
        unit=np.where(in_icu, U_ICU, pw["ward_unit"][ae]),
        order=5,
    )
    dead = a[pw["died"][a]]
    alive = a[~pw["died"][a]]
    last_unit = lambda r: np.where(
        ~np.isnan(pw["t_icu_out"][r]) & (pw["t_icu_out"][r] >= pw["t_end"][r]), U_ICU, pw["ward_unit"][r]
    )
    add(dead, pw["t_death"][dead], "MEDS_DEATH", stage="discharge", unit=last_unit(dead), order=9)
    add(alive, pw["t_end"][alive], "ADT//DISCHARGE", stage="discharge", unit=last_unit(alive), order=9)

    # Vitals series (7 codes per measurement time), vectorised over all segments.
    vp, vt, vs, vu = [], [], [], []
    for item in vit:
        if len(item) == 4:  # a single measurement
            p, t0, st, u = item
            vp.append(p)
            vt.append(t0)
            vs.append(np.full(p.size, st))
            vu.append(np.full(p.size, u))
            continue
        p, t0, st, u, t1, every = item
        nmeas = np.maximum(np.floor((t1 - t0) / every).astype(np.int64) + 1, 0)
        nmeas = np.where(t1 > t0, nmeas, 1)  # a segment shorter than its first offset still gets one set,
        off = np.concatenate([[0], np.cumsum(nmeas)])
        own = np.repeat(np.arange(p.size), nmeas)
        k = np.arange(off[-1]) - off[own]  # taken at the segment's end, never after it (nor after discharge)
        vp.append(p[own])
        vt.append(np.minimum(t0[own] + k * every[own], t1[own]))
        vs.append(np.full(own.size, st))
        vu.append(np.broadcast_to(u, p.shape)[own])
    vp, vt, vs, vu = (np.concatenate(x) for x in (vp, vt, vs, vu))
    vals = _vitals(pw, vp, vt, rng)  # (n_meas, 7)
    vcodes = np.array([codes(f"VITAL//{v}") for v in VITALS])
    nm = vp.size
    add(
        np.repeat(vp, 7),
        np.repeat(vt, 7),
        np.tile(vcodes, nm),
        vals.reshape(-1),
        stage=np.repeat(vs, 7),
        unit=np.repeat(vu, 7),
        order=np.tile(np.arange(7) + 10, nm) * 0 + 4,
    )
    fam[-1]["order"] = np.full(nm * 7, 4)

    out = {k: np.concatenate([f[k] for f in fam]) for k in ("p", "t", "code", "value", "stage", "unit", "order")}
    texts = np.concatenate(
        [f["text"] if f["text"] is not None else np.full(f["p"].size, None, dtype=object) for f in fam]
    )
    out["text"] = texts
    # Administrative censoring: nothing after the end of the simulated window is emitted.
    keep = np.isnan(out["t"]) | (out["t"] < cfg.hours)
    out = {k: v[keep] for k, v in out.items()}
    out["codes"] = codes.names
    return out


def _vitals(pw, p, t, rng) -> np.ndarray:
    """Seven vitals per measurement from the latent severity at time t, clipped to physiological ranges."""
    s = severity_at(pw, p, t)
    m = p.size
    resp = (pw["icd"][p] == ICD_CHAPTERS.index("J00-J99")) | (pw["icd"][p] == ICD_FLU)
    infect = resp | (pw["icd"][p] == 0)
    rr = np.clip(np.round(15 + 3.2 * s + 2 * resp + rng.normal(0, 1.5, m)), 4, 60)
    spo2_true = 97.5 - 2.2 * np.maximum(s, 0) - 2.0 * resp + rng.normal(0, 1.0, m)
    o2 = (spo2_true < 92) | (s > 2.2)
    spo2 = np.clip(np.round(spo2_true + 3.0 * o2), 60, 100)
    sbp = np.clip(np.round(128 - 11 * s + rng.normal(0, 10, m)), 50, 250)
    pulse = np.clip(np.round(78 + 11 * s + 6 * infect + rng.normal(0, 8, m)), 25, 220)
    acvpu = np.clip(np.floor((s - 2.2) * 1.2 + rng.random(m)), 0, 4)
    temp = np.clip(np.round(36.9 + 0.25 * s + 1.0 * infect * (s > 0) + rng.normal(0, 0.3, m), 1), 33, 42)
    return np.stack([rr, spo2, o2.astype(float), sbp, pulse, acvpu, temp], axis=1)


# Physiological ranges of the vitals codes (inclusive), used by the connector's range check.
VITAL_RANGES = {
    "VITAL//RESP_RATE": (0, 80),
    "VITAL//SPO2": (40, 100),
    "VITAL//O2": (0, 1),
    "VITAL//SBP": (30, 300),
    "VITAL//PULSE": (20, 300),
    "VITAL//ACVPU": (0, 4),
    "VITAL//TEMP": (25, 45),
}


def _events_frame(cfg, city, pw, ev) -> pd.DataFrame:
    """MEDS data table, sorted by subject then time (null times first), with typed extra columns."""
    p = ev["p"]
    subject = pw["subject"][p]
    t = ev["t"]
    tnan = np.isnan(t)
    order = np.lexsort((ev["code"], ev["order"], np.where(tnan, -np.inf, t), ~tnan, subject))
    p, t, tnan = p[order], t[order], tnan[order]
    start = np.datetime64(pd.Timestamp(cfg.start).to_datetime64(), "us")
    micro = np.round(np.where(tnan, 0, t) * 3.6e9).astype(np.int64)
    times = start + micro.astype("timedelta64[us]")
    times = np.where(tnan, np.datetime64("NaT"), times)
    codes = np.array(ev["codes"], dtype=object)
    code = ev["code"][order]
    value = ev["value"][order].astype(np.float32)
    unit = ev["unit"][order]
    stage = ev["stage"][order]
    attr = _pathway_attributes(cfg, pw, p, t, code, ev["codes"])
    frame = pd.DataFrame(
        {
            "subject_id": subject[order],
            "time": pd.array(times, dtype="datetime64[us]"),
            "code": pd.array(codes[code], dtype="str"),
            "numeric_value": pd.array(np.where(np.isnan(value), None, value), dtype="Float32"),
            "text_value": pd.array(ev["text"][order], dtype="str"),
            "pathway_id": pd.array(attr["pathway_id"], dtype="Int64"),
            "hospital": pd.array(attr["hospital"], dtype="str"),
            "stage": pd.array(np.array(list(STAGE_ID), dtype=object)[stage], dtype="str"),
            "unit": pd.array(np.where(unit >= 0, np.array(UNITS, dtype=object)[unit], None), dtype="str"),
            "triage_group": pd.array(attr["triage_group"], dtype="Int8"),
            "arrival_mode": pd.array(attr["arrival_mode"], dtype="str"),
        }
    )
    return frame, {"t": t, "p": p, "unit": unit, "stage": stage}


def _pathway_attributes(cfg, pw, p, t, code, code_names) -> dict[str, np.ndarray]:
    """Each pathway attribute of FIELD_KNOWN_FROM per event row (object arrays): the pathway's value from the
    first of its revealing events on, None before (and on static rows, which precede every pathway event).

    p, t, code: (E,) pathway row, time (NaN for static facts) and code id of each event row."""
    per_pathway = {
        "pathway_id": pw["row"] + 1,
        "arrival_mode": np.where(pw["ems"], "ambulance", "walk_in"),
        "hospital": np.array(cfg.hospitals, dtype=object)[pw["hosp"]],
        "triage_group": pw["mts"],
    }
    out = {}
    for name, revealed_by in FIELD_KNOWN_FROM.items():
        if revealed_by == THE_EVENT:
            continue
        revealing = np.isin(code, [code_names.index(c) for c in revealed_by if c in code_names])
        known_from = np.full(pw["row"].size, np.inf)
        np.minimum.at(known_from, p[revealing], t[revealing])
        known = t >= known_from[p]  # False for NaN times
        out[name] = np.where(known, per_pathway[name][p].astype(object), None)
    return out


def _hourly_frame(cfg, city, sim) -> pd.DataFrame:
    H, n = cfg.hours, city["n"]
    hh, ii = np.meshgrid(np.arange(H), np.arange(n), indexing="ij")
    c = sim["census"]
    beds = sim["beds"]["beds"]
    return pd.DataFrame(
        {
            "hospital": pd.Categorical.from_codes(ii.ravel(), categories=list(cfg.hospitals)),
            "time": pd.Timestamp(cfg.start) + pd.to_timedelta(hh.ravel(), unit="h"),
            "ed_census": c[:, :, U_ED].ravel(),
            "ed_beds": np.broadcast_to(beds[:, U_ED], (H, n)).ravel(),
            "ed_boarders": sim["boarders"].ravel(),
            "longest_boarder_h": sim["longest_board"].ravel().astype(np.float32),
            "icu_census": c[:, :, U_ICU].ravel(),
            "icu_beds": np.broadcast_to(beds[:, U_ICU], (H, n)).ravel(),
            "ward_census": c[:, :, 2:].sum(-1).ravel(),
            "ward_beds": np.broadcast_to(beds[:, 2:].sum(-1), (H, n)).ravel(),
            "nedocs": sim["nedocs"].ravel().astype(np.float32),
            "ems_arrivals": sim["ems_in"].ravel(),
            "walk_in_arrivals": sim["walk_in"].ravel(),
            "ems_diverted_away": sim["diverted_out"].ravel(),
            "closed_to_ems": sim["closed"].ravel(),
            "closure_start": sim["closure_start"].ravel(),
            # a closure is running at the hour's start, so no new one can start in it (eval/closures.py's unit)
            "closed_at_hour_start": ~sim["eligible"].ravel(),
            "closure_hazard": sim["hazard_open"].ravel().astype(np.float32),
        }
    )


def _hospital_frame(cfg, city, sim) -> pd.DataFrame:
    """One row per hospital of the simulated city, as a hospital would describe itself: the simulated volume
    (scale x the catalogue's visits), the sized beds, the level of care (cities.py)."""
    beds = sim["beds"]["beds"]  # (n, units)
    return pd.DataFrame(
        {
            "hospital": list(cfg.hospitals),
            "ed_visits_per_year": np.round(city["vol"]).astype(np.int64),
            "beds": beds[:, 1:].sum(1),  # inpatient: ICU and wards
            "icu_beds": beds[:, U_ICU],
            "ward_beds": beds[:, 2:].sum(1),
            "ed_beds": beds[:, U_ED],
            "care_level": np.array([HOSPITALS[h].care_level for h in cfg.hospitals], dtype=np.int64),
        }
    )


def _pathway_frame(cfg, city, pw) -> pd.DataFrame:
    start = pd.Timestamp(cfg.start)
    to_ts = lambda x: start + pd.to_timedelta(np.where(np.isnan(x), np.nan, x), unit="h")
    kinds = np.array(["walk_in", "ems", "heat_excess", "flu", "mci", "readmission"], dtype=object)
    return pd.DataFrame(
        {
            "pathway_id": pw["row"] + 1,
            "subject_id": pw["subject"],
            "previous_pathway_id": np.where(pw["prev"] >= 0, pw["prev"] + 1, -1),
            "hospital": np.array(cfg.hospitals, dtype=object)[pw["hosp"]],
            "arrival_kind": kinds[pw["kind"]],
            "ems": pw["ems"],
            "diverted": pw["diverted"],
            "age": pw["age"],
            "sex": np.where(pw["sex"] == 1, "F", "M"),
            "icd_chapter": np.array(ICD_CHAPTERS, dtype=object)[pw["icd"]],
            "mci_sk": pw["sk"],
            "triage_group": pw["mts"],
            "disposition": np.array(["home", "ward", "ICU"], dtype=object)[pw["disp"]],
            "unit": np.array(UNITS, dtype=object)[pw["ward_unit"]],
            "t_onset": to_ts(pw["t_onset"]),
            "t_arrive": to_ts(pw["t_arrive"]),
            "t_bed": to_ts(pw["t_bed"]),
            "t_end": to_ts(pw["t_end"]),
            "wait_h": pw["wait_h"],
            "delay_beyond_target_h": pw["delay_h"],
            "boarding_h": pw["t_bed"] - pw["t_ready"],
            "severity_onset": pw["s0"],
            "severity_physician": pw["s_phys"],
            "strain": pw["ae_strain"],
            "ed_occupancy_at_arrival": pw["crowding"],
            "adverse_event": pw["ae"],
            "icu": ~np.isnan(pw["t_icu_in"]),
            "died": pw["died"],
            "readmitted_30d": pw["readmit_drawn"],
            "p_readmission_30d": pw["p_readmit"],
            "los_h": pw["t_end"] - pw["t_bed"],
        }
    )


# ----------------------------------------------------------------------------------------------------------
# Labels and their oracles


def _labels(cfg, sim, staff, pw, subject, ev) -> tuple[dict, dict, dict]:
    """MEDS label tables (one per task) and matching oracle tables (float_value = true probability).

    Event-level labels are issued once per (subject, time) at the last event of that time (MEDS: a
    prediction at `prediction_time` may use everything up to and including it).
    """
    t, p, unit, stage = ev["t"], ev["p"], ev["unit"], ev["stage"]
    timed = ~np.isnan(t) & (stage != STAGE_ID["static"])
    idx = np.nonzero(timed)[0]
    # last event of each (subject, time): the file is sorted by subject, then time
    last = np.ones(idx.size, bool)
    last[:-1] = (subject[idx][1:] != subject[idx][:-1]) | (t[idx][1:] != t[idx][:-1])
    idx = idx[last]
    t, p, unit = t[idx], p[idx], unit[idx]
    subj = subject[idx]
    start = np.datetime64(pd.Timestamp(cfg.start).to_datetime64(), "us")
    ptime = start + np.round(t * 3.6e9).astype(np.int64).astype("timedelta64[us]")
    out_y, out_o = {}, {}

    has_course = ~np.isnan(pw["t_bed"][p]) | (pw["disp"][p] == 0)
    inpatient = ~np.isnan(pw["t_bed"][p])
    orc = _course_oracles(pw, p, t, inpatient)

    t_ae = pw["t_ae"][p]
    y = (t_ae > t) & (t_ae <= t + 24)
    m = has_course & ~(t >= t_ae)
    out_y["adverse_event"], out_o["adverse_event"] = (y, m), orc["ae24"]

    t_icu = pw["t_icu_in"][p]
    y = (t_icu > t) & (t_icu <= t + 24)
    m = has_course & ~(t >= t_icu)
    out_y["icu_transfer"], out_o["icu_transfer"] = (y, m), orc["icu24"]

    t_death = pw["t_death"][p]
    y = pw["died"][p] & (t_death > t)
    m = has_course & ~(t >= t_death)
    out_y["in_hospital_death"], out_o["in_hospital_death"] = (y, m), orc["death"]

    # staff: the event's unit in the next shift (PpUGV units only for the violation)
    S = staff["S"]
    nxt = shift_index(cfg, t) + 1
    ok = (unit >= 0) & (nxt < S)
    nx, hu, uu = np.minimum(nxt, S - 1), pw["hosp"][p], np.maximum(unit, 0)
    out_y["unit_workload"] = (staff["ppn"][nx, hu, uu], ok)
    out_o["unit_workload"] = staff["e_work"][nx, hu, uu]
    ok_v = ok & staff["ppugv"][uu]
    out_y["ratio_violation_next_shift"] = (staff["violation"][nx, hu, uu], ok_v)
    out_o["ratio_violation_next_shift"] = staff["p_viol"][nx, hu, uu]

    # crisis: a closure of the pathway's hospital starts in one of the next k whole hours
    H = cfg.hours
    starts = np.vstack([np.zeros((1, sim["closure_start"].shape[1])), np.cumsum(sim["closure_start"], 0)])
    # Oracle: hours of the window count from the end of a closure already running at the event's hour (known
    # then); later hours are not conditioned on the window's own outcome.
    logsurv = np.log1p(-sim["hazard_open"])
    L = np.vstack([np.zeros((1, logsurv.shape[1])), np.cumsum(logsurv, 0)])
    hb = np.floor(t).astype(np.int64)
    hbc = np.clip(hb, 0, H - 1)
    open_from = np.ceil(sim["closed_until"][hbc, hu]).astype(np.int64)
    for k in (6, 12, 24):
        ok = (hb >= 0) & (hb + k < H)
        a, b = np.clip(hb + 1, 0, H), np.clip(hb + 1 + k, 0, H)
        out_y[f"closure_{k}h"] = (starts[b, hu] - starts[a, hu] > 0, ok)
        a_open = np.clip(np.maximum(a, open_from), 0, b)
        out_o[f"closure_{k}h"] = 1.0 - np.exp(L[b, hu] - L[a_open, hu])

    # the fair bound reads this module's constants and course functions, so it is imported here, not at the top
    from hamburg_mamba.data.fair_bound import bound_frame, course_bounds

    fair = course_bounds(cfg, pw, p, t, cfg.seed)
    labels, oracle, bound = {}, {}, {}
    for name, (yv, mv) in out_y.items():
        spec = TASKS[name]
        rows = np.nonzero(mv)[0]
        labels[name] = _label_frame(subj[rows], ptime[rows], yv[rows], spec.kind)
        oracle[name] = _label_frame(subj[rows], ptime[rows], out_o[name][rows], "regression")
        if name in fair:
            bound[name] = bound_frame(subj[rows], ptime[rows], fair[name][0][rows], fair[name][1][rows])

    # readmission_30d: one row per pathway at its last emitted event (discharge); missing if dead or unfinished
    last_t = np.full(pw["row"].size, -np.inf)
    np.maximum.at(last_t, p, t)
    done = (~pw["died"]) & ~np.isnan(pw["t_end"]) & (pw["t_end"] < H) & (last_t >= pw["t_end"] - 1e-9)
    r = np.nonzero(done)[0]
    pt = start + np.round(pw["t_end"][r] * 3.6e9).astype(np.int64).astype("timedelta64[us]")
    labels["readmission_30d"] = _label_frame(pw["subject"][r], pt, pw["readmit_drawn"][r], "binary")
    oracle["readmission_30d"] = _label_frame(pw["subject"][r], pt, pw["p_readmit"][r], "regression")
    # every input of the readmission draw is known at discharge: the probability is the fair bound itself
    bound["readmission_30d"] = bound_frame(pw["subject"][r], pt, pw["p_readmit"][r], np.zeros(r.size))
    return labels, oracle, bound


def _label_frame(subject, ptime, value, kind) -> pd.DataFrame:
    col = "boolean_value" if kind == "binary" else "float_value"
    vals = (
        pd.array(value.astype(bool), dtype="boolean")
        if kind == "binary"
        else pd.array(value.astype(np.float32), dtype="Float32")
    )
    frame = pd.DataFrame(
        {"subject_id": subject.astype(np.int64), "prediction_time": pd.array(ptime, dtype="datetime64[us]"), col: vals}
    )
    return frame.sort_values(["subject_id", "prediction_time"], kind="stable").reset_index(drop=True)


def _course_oracles(pw, p, t, inpatient) -> dict:
    """True probabilities of the adverse-event process per (pathway, time), from the hazard grid.

    ae24: P(AE in (t, t+24] | no AE by t); death: P(death after t | alive at t): a fatal AE, or death in an
    ICU stay (a direct admission's, or the one a non-fatal AE on the ward leads to);
    icu24: P(ICU admission in (t, t+24]); after an AE the realised decision (fatal / ICU) is known.
    """
    n_ev = p.size
    ae24 = np.zeros(n_ev)
    death = np.zeros(n_ev)
    icu24 = np.zeros(n_ev)
    rows_all = np.nonzero(~np.isnan(pw["t_bed"]))[0]
    if rows_all.size:
        owner, t0, dt, log_h, offsets, s_mid = hazard_grid(pw, rows_all)
        h = np.exp(log_h)
        cum = np.cumsum(h * dt)
        base = np.concatenate([[0.0], cum])[offsets[:-1]]
        Hend = cum - base[owner]  # cumulative hazard at each bin's end
        Hstart = Hend - h * dt
        q = _fatal_prob(pw, rows_all[owner], s_mid)
        direct = pw["disp"][rows_all] == 2
        ward_bin = ~direct[owner]
        pbin = np.exp(-Hstart) - np.exp(-Hend)  # P(first AE in bin) from the stay's start
        icu_death = 1.0 - np.exp(-_icu_death_hazard(s_mid) * pw["icu_los_h"][rows_all[owner]])
        dies = q + (1 - q) * ICU_AFTER_AE * ward_bin * icu_death  # P(the AE of this bin ends in death)
        Dc = np.cumsum(pbin * dies)
        Ic = np.cumsum(pbin * (1 - q) * ICU_AFTER_AE * ward_bin)
        pos = np.full(pw["row"].size, -1)
        pos[rows_all] = np.arange(rows_all.size)
        grid_start = _ward_plan_start(pw, rows_all)

        def at(j, x):
            """Cumulative hazard and cumulative death / ICU weights at time x for grid owner j."""
            nb = offsets[j + 1] - offsets[j]
            rel = x - grid_start[j]
            b = offsets[j] + np.clip(np.floor(rel).astype(np.int64), 0, nb - 1)
            frac = np.clip((rel - (b - offsets[j])) / dt[b], 0.0, 1.0)
            frac = np.where(rel <= 0, 0.0, frac)
            Hx = Hstart[b] + frac * (Hend[b] - Hstart[b])
            first_bin = offsets[j]
            baseD = np.where(first_bin > 0, Dc[np.maximum(first_bin - 1, 0)], 0.0)
            baseI = np.where(first_bin > 0, Ic[np.maximum(first_bin - 1, 0)], 0.0)
            later = b > first_bin
            prevD = np.where(later, Dc[np.maximum(b - 1, 0)] - baseD, 0.0)
            prevI = np.where(later, Ic[np.maximum(b - 1, 0)] - baseI, 0.0)
            partD = (np.exp(-Hstart[b]) - np.exp(-Hx)) * dies[b]
            partI = (np.exp(-Hstart[b]) - np.exp(-Hx)) * (1 - q[b]) * ICU_AFTER_AE * ward_bin[b]
            return Hx, prevD + partD, prevI + partI, offsets[j + 1] - 1, baseD, baseI

        sel = np.nonzero(inpatient)[0]
        j = pos[p[sel]]
        ts = t[sel]
        Ht, Dt, It, lastb, baseD, baseI = at(j, ts)
        H24, _, I23, _, _, _ = at(j, ts + 24.0 - ICU_AFTER_AE_DELAY_H)
        H24b, _, _, _, _, _ = at(j, ts + 24.0)
        Dtot = Dc[lastb] - baseD
        # a direct ICU admission must survive its ICU stay (an independent hazard) to meet the ward's process
        ps = p[sel]
        t_bed = pw["t_bed"][ps]
        in_icu_death = np.where(
            pw["disp"][ps] == 2,
            _icu_death_within(_icu_death_hazard(severity_at(pw, ps, t_bed)), t_bed, t_bed + pw["icu_los_h"][ps], ts),
            0.0,
        )
        ae24[sel] = (1.0 - np.exp(-(H24b - Ht))) * (1.0 - in_icu_death)
        death[sel] = 1.0 - (1.0 - in_icu_death) * (1.0 - np.exp(Ht) * (Dtot - Dt))
        icu24[sel] = np.exp(Ht) * (I23 - It)
        del H24
    # after the adverse event the draws are realised; a planned (direct) ICU admission is not random here
    t_ae = pw["t_ae"][p]
    after = t >= t_ae
    s_ae = severity_at(pw, p, np.where(np.isnan(t_ae), t, t_ae))
    fatal_now = np.where(t < t_ae + DEATH_AFTER_AE_DELAY_H, _fatal_prob(pw, p, s_ae), 0.0)
    icu_next = (pw["disp"][p] != 2) & pw["icu_after_ae"][p]  # the ICU stay a non-fatal AE on the ward leads to
    icu_in = t_ae + ICU_AFTER_AE_DELAY_H
    in_icu_death = np.where(
        icu_next, _icu_death_within(_icu_death_hazard(s_ae), icu_in, icu_in + pw["icu_los_h"][p], t), 0.0
    )
    death = np.where(after, fatal_now + (1.0 - fatal_now) * in_icu_death, death)
    t_icu = pw["t_icu_in"][p]
    realised_icu = ((t_icu > t) & (t_icu <= t + 24)).astype(float)
    direct = pw["disp"][p] == 2
    icu24 = np.where(direct | after, realised_icu, icu24)
    ae24 = np.where(after, 0.0, ae24)
    # 1 - (1 - x)(1 - y) and differences of cumulative sums round to -2e-16 where the true value is 0: a
    # probability must stay in [0, 1] (a negative oracle would be clipped by any consumer, and then differ).
    return {k: np.clip(v, 0.0, 1.0) for k, v in (("ae24", ae24), ("death", death), ("icu24", icu24))}
