"""The generator's numbers: published figures (docs/domain.md) and its own assumptions, each named once.

Every stage module reads its constants from here, and so does the fair bound (hamburg_mamba.data.fair_bound),
which re-draws parts of a patient's course and must use the same numbers.
"""

from __future__ import annotations

import math

import numpy as np

from hamburg_mamba.data.cities import HAMBURG_HOSPITALS

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
# hours between vitals: ED for triage groups 1-2, ED_stable for 3-5; ward_sick above a severity (events.py)
VITALS_EVERY_H = {"ED": 2.0, "ED_stable": 4.0, "ward": 8.0, "ward_sick": 4.0, "ICU": 2.0}

# Manchester triage happens this long after the ED arrival (assumption); the fair bound reads a row before it as
# one whose triage group is not yet known.
TRIAGE_AFTER_ARRIVAL_H = 5 / 60
# Standard deviation of the triage nurse's assessment noise on the latent severity (MTS_SEVERITY_CUTS apply to
# the noisy value; assumption, its share calibrated through the cuts).
TRIAGE_NOISE_SD = 0.45
# Mass-casualty casualties are triaged by their sorting category: SK I/II/III -> Manchester group 1/3/4; half of
# the SK I casualties (immediate, but not resuscitation) get group 2 (assumption).
MCI_TRIAGE_GROUPS = (1, 3, 4)
MCI_SK_I_GROUP_2_SHARE = 0.5
# Log-normal spread of the ED treatment time around ED_TREAT_MEDIAN_H (assumption).
ED_TREAT_SIGMA = 0.45
# Log-normal ICU stay with mean ICU_LOS_DAYS: log-scale spread 1, so the log-median sits sigma^2 / 2 below the
# log-mean (assumption).
ICU_LOS_SIGMA = 1.0
ICU_LOS_LOG_SHIFT = -(ICU_LOS_SIGMA**2) / 2
ICU_LOS_MU = math.log(ICU_LOS_DAYS * 24.0) + ICU_LOS_LOG_SHIFT  # log-scale location of the ICU stay in hours
