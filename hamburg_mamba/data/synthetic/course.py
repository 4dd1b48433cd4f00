"""Stage 3: a patient's course, from the emergency call to the end of the inpatient stay.

EMS routing: an ambulance takes its patient to the nearest hospital open to ambulances. ED: Manchester triage
from latent severity; the wait for the first physician grows with ED crowding; delay beyond the triage target
raises severity (untreated drift); treatment; disposition home / ward / ICU. Inpatient course (once the hospital
stage has found a bed): severity relaxes towards a patient-specific level; one adverse-event process with hazard
exp(a + b severity + c strain); an adverse event is fatal with a logistic probability, else leads to an ICU
transfer with ICU_AFTER_AE; every ICU stay carries an hourly death hazard. Strain = patients per scheduled nurse
relative to the PpUGV limit at admission, boarding hours and delay beyond the triage target. After the stay, a
30-day readmission is drawn.

The functions on the latent quantities (severity_at, hazard_grid, fatal_probability, ...) are the model's
definition; the oracles (labels.py) and the fair bound (hamburg_mamba.data.fair_bound) evaluate the same ones.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hamburg_mamba.data.synthetic.arrivals import ARRIVAL_KINDS, READMISSION, choice
from hamburg_mamba.data.synthetic.config import SyntheticConfig
from hamburg_mamba.data.synthetic.constants import (
    AE_INTERCEPT,
    AE_SEVERITY,
    AE_STRAIN,
    DAY_SHIFT_START_H,
    DEATH_AFTER_AE_DELAY_H,
    DISPOSITION_ICU,
    DISPOSITION_WARD,
    DIVERSION_DELAY_MIN,
    ED_MEAN_WAIT_MIN,
    ED_TREAT_MEDIAN_H,
    ED_TREAT_SIGMA,
    EMS_KMH,
    EMS_ON_SCENE_MIN,
    EMS_RESPONSE_MEDIAN_MIN,
    FATAL_INTERCEPT,
    FATAL_SEVERITY,
    FATAL_STRAIN,
    GER_LOS_SIGMA,
    GER_PLAN_FACTOR,
    GERIATRIC_AGE,
    ICD_BASE_WEIGHT,
    ICD_CHAPTERS,
    ICD_FLU,
    ICD_WARD_UNIT,
    ICU_AFTER_AE,
    ICU_AFTER_AE_DELAY_H,
    ICU_DEATH_INTERCEPT,
    ICU_DEATH_SEVERITY,
    ICU_LOS_MU,
    ICU_LOS_SIGMA,
    LOS_SIGMA,
    MAX_CROWDING_FACTOR,
    MAX_DELAY_EFFECT_H,
    MAX_UNTREATED_H,
    MCI_SK_I_GROUP_2_SHARE,
    MCI_TRIAGE_GROUPS,
    MTS_SEVERITY_CUTS,
    MTS_TARGET_MIN,
    NIGHT_SHIFT_START_H,
    READMIT_AGE_PER_10Y,
    READMIT_CROWDING,
    READMIT_SEVERITY,
    SEVERITY_SD,
    STRAIN_BOARDING,
    STRAIN_DELAY,
    STRAIN_OVER_RATIO,
    TARGET_OCCUPANCY,
    TRIAGE_NOISE_SD,
    U_ED,
    U_ICU,
    UNIT_LOS_DAYS,
    UNITS,
    UNTREATED_DRIFT_PER_H,
)
from hamburg_mamba.data.synthetic.records import Arrivals, Beds, City, Drivers, Pathways, Readmissions

HOME, WARD, ICU = 0, 1, 2  # Pathways.disposition
EMS_NIGHT_RESPONSE_FACTOR = 1.15  # ambulances take longer to reach the scene at night (assumption)
EMS_RESPONSE_SIGMA = 0.35  # log-normal spread of the response time (assumption)
KM_WITHIN_DISTRICT = 3.0  # from the scene to the district's hospital position (assumption)
CLOSED_DISTANCE_KM = 1e6  # added to a closed hospital's distance: routing skips it unless all are closed
READMISSION_WINDOW_H = 30 * 24.0  # a readmission returns 1-30 days after discharge
READMISSION_GAP_MIN_H = 24.0
READMISSION_BY_EMS = 0.5  # share of readmissions by ambulance (assumption)
READMISSION_SAME_CHAPTER = 0.6  # share of readmissions for the same ICD chapter (assumption)
STORE_MIN_ROWS = 1024


# ----------------------------------------------------------------------------------------------------------
# From the call to the end of ED treatment


class PathwayStore:
    """Pathways appended hour by hour; `live` is the record over the allocated rows (read and written in place,
    replaced when it grows), `finish` the record of the rows appended."""

    def __init__(self):
        self.live = Pathways.filled(STORE_MIN_ROWS)
        self.n_rows = 0

    def append(self, m: int) -> np.ndarray:
        """Room for m more pathways; returns their rows."""
        need = self.n_rows + m
        capacity = self.live.row.size
        if need > capacity:
            grown = Pathways.filled(max(need, 2 * capacity))
            for name, old in vars(self.live).items():
                getattr(grown, name)[: self.n_rows] = old[: self.n_rows]
            self.live = grown
        rows = np.arange(self.n_rows, need)
        self.n_rows = need
        return rows

    def finish(self) -> Pathways:
        return self.live.select(slice(0, self.n_rows)).copy()


def start_pathways(
    cfg: SyntheticConfig,
    store: PathwayStore,
    city: City,
    drivers: Drivers,
    arrivals: Arrivals,
    subject_id: np.ndarray,
    sex: np.ndarray,
    previous_row: np.ndarray,
    rng: np.random.Generator,
    hour: int,
    census: np.ndarray,
    closed_before: np.ndarray,
) -> np.ndarray:
    """Append the arrivals of `hour` and draw everything of their course that does not wait for a bed: routing,
    triage, ED wait and treatment, disposition, the planned stays and the outcome draws. Returns their rows.

    census: (N, U) census at the hour's start; closed_before: (N,) closed to ambulances in the previous hour.
    """
    m = arrivals.onset_time.size
    rows = store.append(m)
    pw = store.live
    pw.row[rows] = rows
    pw.subject_id[rows], pw.sex[rows], pw.previous_row[rows] = subject_id, sex, previous_row
    pw.arrival_kind[rows] = arrivals.arrival_kind
    pw.icd_chapter[rows] = arrivals.icd_chapter
    pw.mci_category[rows] = arrivals.mci_category
    pw.ems[rows] = arrivals.ems
    pw.age[rows] = arrivals.age
    pw.district_hospital[rows] = arrivals.district_hospital
    pw.onset_time[rows] = arrivals.onset_time
    # EMS routing: nearest hospital open to ambulances (walk-ins come regardless of closure).
    district = arrivals.district_hospital
    distance = city.distance_km[district] + np.where(closed_before, CLOSED_DISTANCE_KM, 0.0)[None, :]  # (m, N)
    hospital = np.where(arrivals.ems, np.argmin(distance, axis=1), district)
    diverted = arrivals.ems & (hospital != district)
    km = city.distance_km[district, hospital] + KM_WITHIN_DISTRICT
    hour_of_day = drivers.hour_of_day[hour]
    night = (hour_of_day < DAY_SHIFT_START_H) | (hour_of_day >= NIGHT_SHIFT_START_H)
    response = np.exp(
        np.log(EMS_RESPONSE_MEDIAN_MIN * (EMS_NIGHT_RESPONSE_FACTOR if night else 1.0))
        + EMS_RESPONSE_SIGMA * rng.standard_normal(m)
    )
    transport = km / EMS_KMH * 60.0 + DIVERSION_DELAY_MIN * diverted
    onset = arrivals.onset_time
    arrival = np.where(arrivals.ems, onset + (response + EMS_ON_SCENE_MIN + transport) / 60.0, onset)
    pw.hospital[rows], pw.diverted[rows] = hospital, diverted
    pw.ems_response_min[rows] = np.where(arrivals.ems, response, np.nan)
    pw.ems_transport_min[rows] = np.where(arrivals.ems, transport, np.nan)
    pw.arrival_time[rows] = arrival
    # Latent severity at onset and Manchester triage (the worse, the lower the group).
    severity = triage_severity_mean(arrivals.age, arrivals.ems, arrivals.mci_category) + rng.normal(0, SEVERITY_SD, m)
    severity = severity + np.where(arrivals.icd_chapter == ICD_FLU, 0.3 * (arrivals.age > 70), 0.0)
    group = triage_group(severity, rng.normal(0, TRIAGE_NOISE_SD, m))
    group = np.where(
        arrivals.mci_category >= 0,
        mci_triage_group(arrivals.mci_category, rng.random(m) < MCI_SK_I_GROUP_2_SHARE),
        group,
    )
    pw.severity_onset[rows], pw.triage_group[rows] = severity, group
    # ED wait grows with crowding (occupancy at arrival); delay beyond the MTS target raises severity.
    occupancy = census[hospital, U_ED] / city.ed_beds[hospital]
    wait_h = rng.exponential(ED_MEAN_WAIT_MIN[group - 1] * crowding_factor(occupancy)) / 60.0
    delay = np.maximum(0.0, wait_h - MTS_TARGET_MIN[group - 1] / 60.0)
    drift = np.maximum(0.0, rng.normal(0.3, 0.5, m)) * UNTREATED_DRIFT_PER_H
    physician = arrival + wait_h
    severity_physician = severity + drift * np.minimum(physician - onset, MAX_UNTREATED_H)
    treatment = np.exp(np.log(ED_TREAT_MEDIAN_H[group - 1]) + ED_TREAT_SIGMA * rng.standard_normal(m))
    pw.ed_occupancy_at_arrival[rows] = occupancy
    pw.wait_h[rows], pw.delay_beyond_target_h[rows], pw.drift_per_h[rows] = wait_h, delay, drift
    pw.physician_time[rows], pw.severity_physician[rows], pw.treatment_h[rows] = (
        physician,
        severity_physician,
        treatment,
    )
    pw.ready_time[rows] = physician + treatment
    pw.severity_settled[rows] = severity_physician - rng.normal(1.0, 0.7, m)
    pw.relaxation_h[rows] = rng.uniform(12.0, 48.0, m)
    # Disposition at the end of ED treatment, from severity at first physician contact.
    p_icu, p_ward = disposition_probs(severity_physician, arrivals.age)
    u = rng.random(m)
    disposition = np.where(u < p_icu, ICU, np.where(u < p_icu + p_ward, WARD, HOME))
    pw.p_disposition_icu[rows], pw.p_disposition_ward[rows], pw.disposition[rows] = p_icu, p_ward, disposition
    unit = ward_unit(arrivals.icd_chapter, arrivals.age)
    pw.ward_unit[rows] = unit
    pw.first_unit[rows] = np.where(disposition == ICU, U_ICU, np.where(disposition == WARD, unit, U_ED))
    mu, sigma = ward_plan_params(unit)
    planned = np.exp(mu + sigma * rng.standard_normal(m))
    pw.planned_ward_stay_h[rows] = np.minimum(planned, 24.0 * cfg.max_los_days)
    icu_stay = np.exp(ICU_LOS_MU + ICU_LOS_SIGMA * rng.standard_normal(m))
    pw.icu_stay_h[rows] = np.minimum(icu_stay, 24.0 * cfg.max_los_days)
    pw.adverse_event_threshold[rows] = rng.exponential(1.0, m)
    pw.fatality_uniform[rows] = rng.random(m)
    pw.icu_after_adverse_event[rows] = rng.random(m) < ICU_AFTER_AE
    pw.icu_death_threshold[rows] = rng.exponential(1.0, m)
    pw.adverse_event_time[rows] = np.nan
    return rows


def triage_severity_mean(age: np.ndarray, ems: np.ndarray, mci_category: np.ndarray) -> np.ndarray:
    """Mean latent severity at onset by age, mode and MANV category (SEVERITY_SD around it)."""
    return 0.02 * (age - 50) + 0.35 * ems + np.where(mci_category >= 0, 1.8 - 1.2 * mci_category, 0.0)


def triage_group(severity: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Manchester group 1..5 of the assessed severity (severity + noise) by MTS_SEVERITY_CUTS."""
    return np.digitize(-(severity + noise), -MTS_SEVERITY_CUTS) + 1


def mci_triage_group(mci_category: np.ndarray, sk_i_to_group_2: np.ndarray) -> np.ndarray:
    """Manchester group of a mass-casualty casualty from its sorting category (MCI_TRIAGE_GROUPS)."""
    return np.array(MCI_TRIAGE_GROUPS)[np.maximum(mci_category, 0)] + (mci_category == 0) * sk_i_to_group_2


def crowding_factor(occupancy: np.ndarray) -> np.ndarray:
    """Factor on the mean wait at an ED occupancy (1 at 0.7), bounded by MAX_CROWDING_FACTOR."""
    return np.minimum(0.4 + 0.6 * (occupancy / 0.7) ** 2, MAX_CROWDING_FACTOR)


def disposition_probs(severity: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """P(ICU), P(ward) from triage severity: multinomial logit against home (softmax, overflow-safe)."""
    ward_a, ward_s, ward_age = DISPOSITION_WARD
    icu_a, icu_s = DISPOSITION_ICU
    z = np.stack(
        [np.zeros_like(severity), ward_a + ward_s * severity + ward_age * (age - 50), icu_a + icu_s * severity]
    )
    z = z - z.max(0)
    e = np.exp(z)
    e /= e.sum(0)
    return e[2], e[1]


def ward_unit(icd_chapter: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Unit index of the ward by ICD chapter; medical patients from GERIATRIC_AGE on go to geriatrics."""
    base = np.array([UNITS.index(u) for u in ICD_WARD_UNIT])[icd_chapter]
    medical = np.isin(base, [UNITS.index("IM"), UNITS.index("NEURO")])
    return np.where(medical & (age >= GERIATRIC_AGE), UNITS.index("GER"), base)


def ward_plan_params(unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the log-normal planned ward stay (hours) on a ward unit, before the cap at max_los_days."""
    geriatric = unit == UNITS.index("GER")
    mean_h = np.array([UNIT_LOS_DAYS.get(x, 1.0) for x in UNITS])[unit] * 24.0
    mean_h = np.where(geriatric, GER_PLAN_FACTOR * mean_h, mean_h)
    sigma = np.where(geriatric, GER_LOS_SIGMA, LOS_SIGMA)
    return np.log(mean_h) - sigma**2 / 2, sigma


# ----------------------------------------------------------------------------------------------------------
# The inpatient course, once a bed is found


def severity_at(pathways: Pathways, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Latent severity s(t): untreated drift until the first physician, then relaxation to the settled level."""
    pw = pathways
    physician = pw.physician_time[rows]
    untreated_h = np.clip(t - pw.onset_time[rows], 0.0, MAX_UNTREATED_H)
    before = pw.severity_onset[rows] + pw.drift_per_h[rows] * untreated_h
    settled, at_physician = pw.severity_settled[rows], pw.severity_physician[rows]
    after = settled + (at_physician - settled) * np.exp(-np.maximum(t - physician, 0.0) / pw.relaxation_h[rows])
    return np.where(t < physician, before, after)


def admission_strain(nurse_load_ratio: np.ndarray, boarding_h: np.ndarray, delay_h: np.ndarray) -> np.ndarray:
    """Strain index at admission: patients per scheduled nurse above the PpUGV limit, boarding, delay beyond the
    triage target."""
    return (
        STRAIN_OVER_RATIO * np.maximum(nurse_load_ratio - 1.0, 0.0)
        + STRAIN_BOARDING * np.log1p(boarding_h)
        + STRAIN_DELAY * np.minimum(delay_h, MAX_DELAY_EFFECT_H)
    )


def adverse_event_log_hazard(severity: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """log hourly adverse-event hazard: a + b severity + c strain (strain fixed at admission)."""
    return AE_INTERCEPT + AE_SEVERITY * severity + AE_STRAIN * strain


def fatal_probability(severity: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """P(an adverse event at this severity is fatal): logistic."""
    z = FATAL_INTERCEPT + FATAL_SEVERITY * severity + FATAL_STRAIN * strain
    return 1.0 / (1.0 + np.exp(-z))


def icu_death_hazard(severity: np.ndarray) -> np.ndarray:
    """Hourly death hazard in the ICU, fixed by the severity at ICU admission."""
    return np.exp(ICU_DEATH_INTERCEPT + ICU_DEATH_SEVERITY * severity)


def icu_death_within(hazard: np.ndarray, start: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
    """P(death in the ICU after t) for an ICU stay [start, end) with the hourly hazard, alive at t."""
    return 1.0 - np.exp(-hazard * np.maximum(end - np.maximum(t, start), 0.0))


def ward_plan_start(pathways: Pathways, rows: np.ndarray) -> np.ndarray:
    """Start of the planned ward stay: the bed time, or the planned step-down of a direct ICU admission."""
    return pathways.bed_time[rows] + np.where(pathways.disposition[rows] == ICU, pathways.icu_stay_h[rows], 0.0)


def hazard_grid(pathways: Pathways, rows: np.ndarray):
    """Hourly grid of the adverse-event process over each planned ward stay of `rows` (P,).

    Returns (owner, t0, dt, log_hazard, offsets, severity): per bin (B,) its row's position in `rows`, start,
    length (1 h, shorter at the plan's end), log hazard and severity at its midpoint; offsets (P + 1,) the first
    bin of each row. The grid covers the ward part of the plan: a direct ICU admission meets the process from its
    planned step-down on (in the ICU its risk is the ICU death hazard). Used both to draw adverse events and to
    compute the oracles.
    """
    start = ward_plan_start(pathways, rows)
    plan = pathways.planned_ward_stay_h[rows]
    n_bins = np.ceil(plan).astype(np.int64).clip(min=1)
    offsets = np.concatenate([[0], np.cumsum(n_bins)])
    owner = np.repeat(np.arange(rows.size), n_bins)
    k = np.arange(offsets[-1]) - offsets[owner]
    t0 = start[owner] + k
    dt = np.minimum(1.0, start[owner] + plan[owner] - t0)
    severity = severity_at(pathways, rows[owner], t0 + dt / 2)
    log_hazard = adverse_event_log_hazard(severity, pathways.admission_strain[rows[owner]])
    return owner, t0, dt, log_hazard, offsets, severity


def inpatient_course(pathways: Pathways, rows: np.ndarray) -> None:
    """The course of `rows`, just bedded (bed_time and nurse_load_ratio set), from its outcome draws: adverse
    event, fatality, ICU stay, death, end of stay; written into `pathways`."""
    pw = pathways
    boarding_h = pw.bed_time[rows] - pw.ready_time[rows]
    pw.admission_strain[rows] = admission_strain(pw.nurse_load_ratio[rows], boarding_h, pw.delay_beyond_target_h[rows])
    owner, t0, dt, log_hazard, offsets, _ = hazard_grid(pw, rows)
    cumulative = np.cumsum(np.exp(log_hazard) * dt)
    base = np.concatenate([[0.0], cumulative])[offsets[:-1]]
    total = (cumulative - base[owner])[offsets[1:] - 1]
    threshold = pw.adverse_event_threshold[rows]
    bed, icu_stay = pw.bed_time[rows], pw.icu_stay_h[rows]
    direct_icu = pw.disposition[rows] == ICU
    # a direct ICU admission dies in the ICU or reaches the ward, where its adverse-event grid starts
    hazard_direct = icu_death_hazard(severity_at(pw, rows, bed))
    died_direct = direct_icu & (pw.icu_death_threshold[rows] < hazard_direct * icu_stay)
    has = (total >= threshold) & ~died_direct
    # the first bin where the cumulative hazard passes the threshold, interpolated inside the bin
    first = np.searchsorted(cumulative, base + threshold)  # global bin index (cumulative is non-decreasing)
    first = np.minimum(first, offsets[1:] - 1)
    before = np.where(first > offsets[:-1], cumulative[np.maximum(first - 1, 0)] - base, 0.0)
    event = t0[first] + (threshold - before) / np.exp(log_hazard[first])
    event = np.where(has, event, np.nan)
    severity_event = severity_at(pw, rows, np.where(has, event, pw.bed_time[rows]))
    fatal = has & (pw.fatality_uniform[rows] < fatal_probability(severity_event, pw.admission_strain[rows]))
    to_icu = has & ~direct_icu & ~fatal & pw.icu_after_adverse_event[rows]  # one ICU episode per pathway
    icu_in = np.where(direct_icu, bed, np.where(to_icu, event + ICU_AFTER_AE_DELAY_H, np.nan))
    icu_out = icu_in + icu_stay
    hazard_icu = np.where(direct_icu, hazard_direct, icu_death_hazard(severity_event))
    died_icu = died_direct | (to_icu & (pw.icu_death_threshold[rows] < hazard_icu * icu_stay))
    icu_death = np.where(died_icu, icu_in + pw.icu_death_threshold[rows] / hazard_icu, np.nan)
    plan_end = bed + pw.planned_ward_stay_h[rows] + np.where(direct_icu, icu_stay, 0.0)
    # the ICU stay is inserted into the plan; an adverse event in the plan's last hour ends the stay in the ICU
    # (before: discharge came first and ICU vitals followed it, a readmission label with no pathway end)
    end = np.where(to_icu, np.maximum(plan_end + icu_stay, icu_out), plan_end)
    death = np.where(fatal, event + DEATH_AFTER_AE_DELAY_H, icu_death)
    died = fatal | died_icu
    pw.adverse_event_time[rows] = event
    pw.adverse_event[rows] = has
    pw.fatal[rows] = fatal
    pw.died[rows] = died
    pw.icu_in_time[rows] = icu_in
    pw.icu_out_time[rows] = np.where(died_icu, icu_death, icu_out)
    pw.end_time[rows] = np.where(died, death, end)
    pw.death_time[rows] = death


def add_stay_census(pathways: Pathways, rows: np.ndarray, delta: np.ndarray, last: int) -> None:
    """Add the stays of `rows` to the census changes `delta` (hours, N, U): +1 from the hour after a segment
    starts, -1 from the hour after it ends (hour indices capped at `last`)."""
    pw = pathways
    hospital = pw.hospital[rows]

    def segment(unit, a, b):
        ok = ~np.isnan(a) & ~np.isnan(b) & (b > a)
        enter = np.minimum(np.floor(a[ok]).astype(np.int64) + 1, last)  # occupied from the next hour on
        leave = np.minimum(np.floor(b[ok]).astype(np.int64) + 1, last)
        np.add.at(delta, (enter, hospital[ok], unit[ok]), 1)
        np.add.at(delta, (leave, hospital[ok], unit[ok]), -1)

    bed, end = pw.bed_time[rows], pw.end_time[rows]
    icu_in, icu_out = pw.icu_in_time[rows], pw.icu_out_time[rows]
    ward = pw.ward_unit[rows]
    has_icu = ~np.isnan(icu_in)
    segment(np.full(rows.size, U_ICU), icu_in, icu_out)
    # ward before the ICU (or the whole stay) and ward after the ICU
    segment(ward, bed, np.where(has_icu, icu_in, end))
    segment(ward, np.where(has_icu, icu_out, np.nan), end)


def schedule_readmissions(
    cfg: SyntheticConfig,
    pathways: Pathways,
    rows: np.ndarray,
    rng: np.random.Generator,
    pending: dict[int, list[Readmissions]],
    census: np.ndarray,
    beds: Beds,
) -> None:
    """30-day readmission of `rows` (their stays just ended or were just planned): logistic in end-of-stay
    severity, age and ward crowding at discharge. Readmissions inside the window go to `pending` by hour."""
    if rows.size == 0:
        return
    pw = pathways
    hospital = pw.hospital[rows]
    severity_end = severity_at(pw, rows, pw.end_time[rows])
    occupancy = census[hospital, 2:].sum(1) / np.maximum(beds.beds[hospital, 2:].sum(1), 1)
    z = (
        math.log(cfg.readmission_base / (1 - cfg.readmission_base))
        + READMIT_SEVERITY * severity_end
        + READMIT_AGE_PER_10Y * (pw.age[rows] - 60) / 10
        + READMIT_CROWDING * np.maximum(occupancy - TARGET_OCCUPANCY, 0)
    )
    p = 1 / (1 + np.exp(-z))
    pw.p_readmission[rows] = p
    back = rng.random(rows.size) < p
    gap = READMISSION_GAP_MIN_H + rng.random(rows.size) * (READMISSION_WINDOW_H - READMISSION_GAP_MIN_H)
    t_back = pw.end_time[rows] + gap
    pw.readmitted[rows] = back
    inside = back & (t_back < cfg.hours)
    r = rows[inside]
    if r.size == 0:
        return
    when = t_back[inside]
    hours = np.floor(when).astype(np.int64)
    ems = rng.random(r.size) < READMISSION_BY_EMS
    icd = np.where(
        rng.random(r.size) < READMISSION_SAME_CHAPTER,
        pw.icd_chapter[r],
        choice(rng, ICD_BASE_WEIGHT / ICD_BASE_WEIGHT.sum(), r.size),
    )
    due = Readmissions(
        onset_time=when,
        district_hospital=pw.hospital[r],
        arrival_kind=np.full(r.size, READMISSION),
        ems=ems,
        age=pw.age[r] + gap[inside] / 8760.0,
        icd_chapter=icd,
        mci_category=np.full(r.size, -1),
        subject_id=pw.subject_id[r],
        sex=pw.sex[r],
        previous_row=r,
    )
    order = np.argsort(hours, kind="stable")
    hours = hours[order]
    due = due.select(order)
    cut = np.nonzero(np.diff(hours))[0] + 1
    for lo, hi in zip(np.concatenate([[0], cut]), np.concatenate([cut, [hours.size]]), strict=True):
        pending.setdefault(int(hours[lo]), []).append(due.select(slice(lo, hi)))


# ----------------------------------------------------------------------------------------------------------
# The table


def pathway_frame(cfg: SyntheticConfig, pathways: Pathways) -> pd.DataFrame:
    """SyntheticData.pathways: one row per pathway with its latent quantities (ground truth)."""
    pw = pathways
    start = pd.Timestamp(cfg.start)
    to_ts = lambda x: start + pd.to_timedelta(np.where(np.isnan(x), np.nan, x), unit="h")
    return pd.DataFrame(
        {
            "pathway_id": pw.row + 1,
            "subject_id": pw.subject_id,
            "previous_pathway_id": np.where(pw.previous_row >= 0, pw.previous_row + 1, -1),
            "hospital": np.array(cfg.hospitals, dtype=object)[pw.hospital],
            "arrival_kind": np.array(ARRIVAL_KINDS, dtype=object)[pw.arrival_kind],
            "ems": pw.ems,
            "diverted": pw.diverted,
            "age": pw.age,
            "sex": np.where(pw.sex == 1, "F", "M"),
            "icd_chapter": np.array(ICD_CHAPTERS, dtype=object)[pw.icd_chapter],
            "mci_sk": pw.mci_category,
            "triage_group": pw.triage_group,
            "disposition": np.array(["home", "ward", "ICU"], dtype=object)[pw.disposition],
            "unit": np.array(UNITS, dtype=object)[pw.ward_unit],
            "t_onset": to_ts(pw.onset_time),
            "t_arrive": to_ts(pw.arrival_time),
            "t_bed": to_ts(pw.bed_time),
            "t_end": to_ts(pw.end_time),
            "wait_h": pw.wait_h,
            "delay_beyond_target_h": pw.delay_beyond_target_h,
            "boarding_h": pw.bed_time - pw.ready_time,
            "severity_onset": pw.severity_onset,
            "severity_physician": pw.severity_physician,
            "strain": pw.admission_strain,
            "ed_occupancy_at_arrival": pw.ed_occupancy_at_arrival,
            "adverse_event": pw.adverse_event,
            "icu": ~np.isnan(pw.icu_in_time),
            "died": pw.died,
            "readmitted_30d": pw.readmitted,
            "p_readmission_30d": pw.p_readmission,
            "los_h": pw.end_time - pw.bed_time,
        }
    )
