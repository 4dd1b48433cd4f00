"""The fair bound: the probability of each label given the simulator's state at the prediction time.

The oracle the generator saves (`SyntheticData.oracle`, folder oracle/) is a *clairvoyant reference*: it
conditions on the realised path, so it reads the future. At an ambulance dispatch it is 0 for a patient who will
be sent home, for a direct ICU admission it equals the label, and its hazard grid knows the planned length of
stay, the bed time and the ward strain before they happen. No model can approach it.

The fair bound is E[label | state at t]. The state at t holds everything the simulator has realised by t: the
patient's covariates (age, ICD chapter, arrival mode, MANV category), the latent severity trajectory (onset
severity s0, untreated drift, the gap between severity at the physician and the settled level s_inf, time
constant tau), every event of the pathway up to t (triage group, physician contact and its wait, the end of ED
treatment and the disposition, the bed, the ward strain at admission, an adverse event) and the hospital's
occupancy at the patient's ED arrival. Everything decided after t is integrated out: the remaining wait, triage
(before ED//TRIAGE), the treatment time, the disposition, the boarding time and the ward's load at the bed, the
planned length of stay, the adverse-event time, its fatality and the ICU decision.

How, per row (`course_bounds`):
    inpatient (bed by t, no adverse event yet)  closed form on the simulator's own hourly hazard grid over the
        longest possible stay, each bin weighted by the probability that the planned stay still runs then
        (log-normal survival, or the survival of ICU + ward stay for a direct ICU admission, given the stay
        has lasted until t); standard error 0.
    after an adverse event                      closed form: the fatality probability at the event's severity
        until the death would have happened, then the ICU decision (probability ICU_AFTER_AE).
    before the bed (EMS, ED, boarding)          Monte Carlo: SCENARIOS re-simulations of the patient's future
        from the state at t, each with its adverse-event integrals in closed form (Rao-Blackwellised); the
        standard error of the (likelihood-weighted) mean over scenarios is reported; see `_monte_carlo`.
    readmission_30d                             the logistic probability the generator draws from at discharge
        (exact: every input is known at discharge).

What is not integrated out (documented in docs/data.md, "The fair bound"): for the hours a patient boards and
the ward's load at the bed, the city's realised path: a scenario borrows them from one of the NEIGHBOURS realised
admissions of the same hospital and unit nearest its ready time (never the patient's own). Re-simulating the whole
city from every prediction time would be exact and costs about 1,000 times the generation. The system-level tasks
(staff, closures) have no fair bound for that reason: their labels depend on every patient's future. The ED
occupancy the wait depends on is the census at the start of the hour the simulator processes the arrival in (the
dispatch hour of an ambulance), so every row of the pathway may read it.

Glossary: R prediction rows, K scenarios per row, M admitted scenarios (flat), B bins per integral.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import meds
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from hamburg_mamba.data.synthetic.constants import (
    DEATH_AFTER_AE_DELAY_H,
    ED_MEAN_WAIT_MIN,
    ED_TREAT_MEDIAN_H,
    ED_TREAT_SIGMA,
    ICU_AFTER_AE,
    ICU_AFTER_AE_DELAY_H,
    ICU_LOS_MU,
    ICU_LOS_SIGMA,
    MAX_UNTREATED_H,
    MCI_SK_I_GROUP_2_SHARE,
    MTS_TARGET_MIN,
    TRIAGE_AFTER_ARRIVAL_H,
    TRIAGE_NOISE_SD,
    U_ICU,
    UNITS,
)
from hamburg_mamba.data.synthetic.course import (
    ICU,
    admission_strain,
    adverse_event_log_hazard,
    crowding_factor,
    disposition_probs,
    fatal_probability,
    hazard_grid,
    icu_death_hazard,
    mci_triage_group,
    severity_at,
    triage_group,
    ward_plan_params,
    ward_plan_start,
)
from hamburg_mamba.data.synthetic.records import Pathways

SCENARIOS = 8  # Monte-Carlo scenarios per row before the bed (stratified draws; se reported per row)
NEIGHBOURS = 8  # realised admissions (same hospital and unit, nearest ready time) a scenario borrows from
BOARDING_TRIES = 8  # neighbours tried for a patient already boarding longer than a drawn neighbour did
RESIDUAL_BOARDING_H = 0.5  # remaining boarding when no neighbour tried waited as long (counted in the docs)
WINDOW_BINS = 8  # midpoint bins over a label window of at most 24 h (3 h; severity moves on tau >= 12 h)
STAY_BINS = 16  # midpoint bins from the bed until the severity has settled
SETTLED_TAUS = 6.0  # severity within exp(-6) of its level after this many tau: a constant-hazard tail
SCENARIO_CHUNK = 100_000  # admitted scenarios integrated at once (memory: chunk x STAY_BINS x 8 bytes x ~6)
GRID_CHUNK_BINS = 2_000_000  # hourly bins of the inpatient closed form built at once
SURVIVAL_STEP_H = 0.25  # resolution of the planned-stay survival tables
NORMAL_TABLE_Z = 8.5  # range of the standard normal cdf table used to draw truncated log-normals
ICU_DEATH_NODES = 48  # Gauss-Hermite nodes over the log-normal ICU stay
LOG_HAZARD_TABLE = np.linspace(-25.0, 5.0, 601)  # log hourly ICU death hazards the death table covers


COURSE_TASKS = ("adverse_event", "icu_transfer", "in_hospital_death")


def course_bounds(
    cfg, pw: Pathways, p: np.ndarray, t: np.ndarray, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fair bound of the three course labels at every row.

    pw: the simulator's pathways; p, t: (R,) pathway row and prediction time (hours) of each label row.
    Returns task -> ((R,) value, (R,) standard error). Rows the labels mask (after death, after the ICU
    admission, pathways still boarding when the window closes) get values too; the caller drops them.
    """
    R = p.size
    out = {k: (np.zeros(R), np.zeros(R)) for k in COURSE_TASKS}
    t_ae, t_end, t_bed = pw.adverse_event_time[p], pw.end_time[p], pw.bed_time[p]
    after_ae = t >= t_ae
    left_alive = ~after_ae & (t >= t_end)  # sent home or discharged: every course label is 0
    in_bed = ~after_ae & ~left_alive & (t >= t_bed)
    on_ward = in_bed & (t >= ward_plan_start(pw, p))  # a direct ICU admission after its step-down included
    in_icu = in_bed & ~on_ward  # a direct ICU admission before its step-down: the rest of its ICU stay is unknown
    unfinished = (pw.disposition[p] > 0) & np.isnan(t_bed)  # still boarding at the window's end: labels masked
    before_bed = ~after_ae & ~left_alive & ~in_bed & ~unfinished
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFB]))
    _fill(out, after_ae, _after_adverse_event(cfg, pw, p[after_ae], t[after_ae], rng))
    _fill(out, on_ward, _ward_closed_form(cfg, pw, p[on_ward], t[on_ward]))
    _fill(out, before_bed | in_icu, _monte_carlo(cfg, pw, p[before_bed | in_icu], t[before_bed | in_icu], rng))
    return out


def _fill(out, mask, part):
    for task, (value, se) in part.items():
        out[task][0][mask] = value
        out[task][1][mask] = se


# ----------------------------------------------------------------------------------------------------------
# After the adverse event: only its two decisions are left


def _after_adverse_event(cfg, pw, p, t, rng) -> dict:
    """Fatal at t_ae + 0.5 h with the logistic probability; else a ward patient goes to the ICU at t_ae + 1 h
    with ICU_AFTER_AE and may die there (hazard fixed by the severity at the event, over the ICU stay, whose
    rest is drawn SCENARIOS times once the patient is in the ICU)."""
    t_ae = pw.adverse_event_time[p]
    s_ae = severity_at(pw, p, t_ae)
    q = fatal_probability(s_ae, pw.admission_strain[p])
    h_icu = icu_death_hazard(s_ae)
    undecided = t < t_ae + DEATH_AFTER_AE_DELAY_H  # the death would come at t_ae + 0.5 h
    ward = pw.disposition[p] != ICU  # the simulator moves only ward patients to the ICU after an event
    pending = t < t_ae + ICU_AFTER_AE_DELAY_H
    # once the death time has passed the fatality is known: dead (row masked) or transferred with ICU_AFTER_AE
    icu_share = np.where(undecided, (1.0 - q) * ICU_AFTER_AE, np.where(pw.died[p], 0.0, ICU_AFTER_AE))
    icu = ward * pending * icu_share
    # in the ICU: the rest of its stay given the stay so far
    icu_in = pw.icu_in_time[p]
    inside = ward & ~pending & (t >= icu_in)
    stayed = np.where(inside, t - icu_in, 0.0)
    rest = _lognormal_above(_strata(rng, (p.size, SCENARIOS)), ICU_LOS_MU, ICU_LOS_SIGMA, stayed[:, None])
    cap = 24.0 * cfg.max_los_days
    rest = np.minimum(rest, cap) - stayed[:, None]
    dies_inside = -np.expm1(-h_icu[:, None] * np.maximum(rest, 0.0))  # (R, K)
    death = np.where(
        undecided,
        q + (1.0 - q) * ICU_AFTER_AE * ward * _icu_death_prob(h_icu, cap),
        np.where(
            pending, ICU_AFTER_AE * ward * _icu_death_prob(h_icu, cap), np.where(inside, dies_inside.mean(1), 0.0)
        ),
    )
    se = np.where(inside & ~pending, dies_inside.std(1, ddof=1) / math.sqrt(SCENARIOS), 0.0)
    zero = np.zeros(p.size)
    return {"adverse_event": (zero, zero), "icu_transfer": (icu, zero), "in_hospital_death": (death, se)}


# ----------------------------------------------------------------------------------------------------------
# On the ward: closed form over the unknown rest of the planned stay


def _ward_closed_form(cfg, pw, p, t) -> dict:
    """The simulator's hourly hazard grid from the ward start over the longest possible stay; bin k of a pathway
    carries mass exp(-H_start) (1 - exp(-h dt)) G(k + 1/2): first adverse event in the bin while the planned
    stay, of survival G, still runs. A row at t divides the mass in its window by exp(-H(t)) G(t - start)."""
    value = {k: np.zeros(p.size) for k in COURSE_TASKS}
    if p.size == 0:
        return {k: (v, np.zeros(p.size)) for k, v in value.items()}
    cap = 24.0 * cfg.max_los_days
    survival = _plan_survival_tables(cfg)
    open_plan = dataclasses.replace(pw, planned_ward_stay_h=np.full_like(pw.planned_ward_stay_h, cap))
    paths = np.unique(p)
    chunk_of = np.floor(np.arange(paths.size) * cap / GRID_CHUNK_BINS).astype(np.int64)
    for c in np.unique(chunk_of):
        rows = paths[chunk_of == c]
        sel = np.nonzero(np.isin(p, rows))[0]
        part = _grid_bounds(cfg, pw, open_plan, rows, p[sel], t[sel], survival)
        for k in COURSE_TASKS:
            value[k][sel] = part[k]
    return {k: (v, np.zeros(p.size)) for k, v in value.items()}


def _grid_bounds(cfg, pw, open_plan, rows, p, t, survival) -> dict:
    owner, t0, dt, log_h, offsets, s_mid = hazard_grid(open_plan, rows)  # (B,) each
    h = np.exp(log_h)
    H_end = np.cumsum(h * dt)
    H_end = H_end - np.concatenate([[0.0], H_end])[offsets[:-1]][owner]  # per pathway, from its ward start
    H_start = H_end - h * dt
    start = ward_plan_start(pw, rows)  # (P,)
    unit = pw.ward_unit[rows]
    G = _survival(survival, unit[owner], t0 + dt / 2 - start[owner])
    first = np.exp(-H_start) * -np.expm1(-h * dt) * G  # (B,) P(first event in the bin, stay still running)
    q = fatal_probability(s_mid, pw.admission_strain[rows][owner])
    ward = (pw.disposition[rows] != ICU)[owner]  # a direct ICU admission is not sent to the ICU again
    to_icu = (1.0 - q) * ICU_AFTER_AE * ward
    dies = q + to_icu * _icu_death_prob(icu_death_hazard(s_mid), 24.0 * cfg.max_los_days)
    weights = {"ae": first, "death": first * dies, "icu": first * to_icu}
    cum = {k: np.cumsum(w) for k, w in weights.items()}
    j = np.searchsorted(rows, p)  # rows is sorted (np.unique)
    row_start = start[j]

    def mass_until(x):
        """Cumulative mass of each weight from the ward start until time x (R,), within-bin part exact in h."""
        rel = x - row_start
        nb = offsets[j + 1] - offsets[j]
        b = offsets[j] + np.clip(np.floor(rel).astype(np.int64), 0, nb - 1)
        frac = np.clip(rel - (t0[b] - row_start), 0.0, dt[b])
        part = np.exp(-H_start[b]) * -np.expm1(-h[b] * frac) * G[b]
        out = {}
        for k, w in weights.items():
            base = np.where(offsets[j] > 0, cum[k][np.maximum(offsets[j] - 1, 0)], 0.0)
            before = np.where(b > offsets[j], cum[k][np.maximum(b - 1, 0)] - base, 0.0)
            share = w[b] / np.maximum(first[b], 1e-300)
            out[k] = before + part * share
        return out, H_start[b] + h[b] * frac

    now, H_now = mass_until(t)
    day = mass_until(t + 24.0)[0]
    icu_day = mass_until(t + 24.0 - ICU_AFTER_AE_DELAY_H)[0]
    end = mass_until(t + 1e9)[0]
    alive = np.exp(-H_now) * np.maximum(_survival(survival, pw.ward_unit[p], t - row_start), 1e-300)
    return {
        "adverse_event": (day["ae"] - now["ae"]) / alive,
        "icu_transfer": (icu_day["icu"] - now["icu"]) / alive,
        "in_hospital_death": (end["death"] - now["death"]) / alive,
    }


def _survival(tables, key, x):
    """G(x) = P(planned ward stay > x) by table row (ward unit), linear between SURVIVAL_STEP_H nodes."""
    pos = np.clip(x / SURVIVAL_STEP_H, 0.0, tables.shape[1] - 1.0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, tables.shape[1] - 1)
    f = pos - lo
    return tables[key, lo] * (1 - f) + tables[key, hi] * f


def _plan_survival_tables(cfg) -> np.ndarray:
    """(len(UNITS), nodes) survival of the capped log-normal planned ward stay per unit."""
    cap = 24.0 * cfg.max_los_days
    x = np.arange(0.0, cap + 2 * SURVIVAL_STEP_H, SURVIVAL_STEP_H)
    mu, sigma = ward_plan_params(np.arange(len(UNITS)))
    out = np.where(x[None, :] < cap, _lognormal_sf(x[None, :], mu[:, None], sigma[:, None]), 0.0)
    return np.clip(out, 0.0, 1.0)


def _icu_death_prob(h, cap):
    """E[1 - exp(-h min(L, cap))] over the log-normal ICU stay L: death in an ICU stay of hazard h (per hour),
    by Gauss-Hermite quadrature on a table of log h (interpolated)."""
    return np.interp(np.log(np.maximum(h, 1e-300)), LOG_HAZARD_TABLE, _icu_death_table(cap))


@functools.lru_cache(maxsize=4)
def _icu_death_table(cap):
    z, w = np.polynomial.hermite_e.hermegauss(ICU_DEATH_NODES)
    stay = np.minimum(np.exp(ICU_LOS_MU + ICU_LOS_SIGMA * z), cap)  # (nodes,)
    return (-np.expm1(-np.exp(LOG_HAZARD_TABLE)[:, None] * stay[None, :]) * w).sum(1) / w.sum()


def _lognormal_sf(x, mu, sigma):
    z = (np.log(np.maximum(x, 1e-300)) - mu) / (sigma * math.sqrt(2.0))
    return np.where(x > 0, 0.5 * _erfc(z), 1.0)


_erfc = np.vectorize(math.erfc, otypes=[float])


# ----------------------------------------------------------------------------------------------------------
# Before the bed: Monte Carlo over the patient's own future


def _monte_carlo(cfg, pw, p, t, rng) -> dict:
    """SCENARIOS re-simulations per row of everything the patient meets after t, each scored in closed form.
    Rows before the bed, and direct ICU admissions in the ICU (the rest of the ICU stay is unknown).

    Variance reduction: every continuous draw is stratified over the scenarios (each row's K draws of a variable
    take one value in each of K equal-probability strata, in random order), and the disposition is not drawn:
    each scenario is scored as a ward and as an ICU admission, weighted by the disposition probabilities. Without
    this the estimate of a row whose ICU disposition has probability 0.04 was 0 or 1/16, and sorting rows by so
    noisy an estimate sent the 0-draws to the low deciles (under-predicted there, over-predicted at the top).
    """
    R, K = p.size, SCENARIOS
    zero = np.zeros(R)
    if R == 0:
        return {k: (zero, zero) for k in COURSE_TASKS}
    ed = _ed_scenarios(pw, p, t, rng)
    weight = {0: np.where(ed["before_ready"], ed["p_home"], pw.disposition[p][:, None] == 0)}
    outcome = {k: np.zeros((R, K)) for k in COURSE_TASKS}
    for d in (1, 2):
        w = np.where(ed["before_ready"], ed["p_icu"] if d == 2 else ed["p_ward"], pw.disposition[p][:, None] == d)
        adm = np.nonzero(w > 0)
        included = np.zeros((R, K))
        if adm[0].size:
            scored, inside = _admitted_outcomes(cfg, pw, p, t, ed, adm, d, rng)
            included[adm] = inside
            for k, v in scored.items():
                outcome[k][adm] += w[adm] * inside * v
        weight[d] = w * included
    # a row is labelled only if its pathway got a bed before the window closed (or went home): condition on it
    den = ed["likelihood"] * (weight[0] + weight[1] + weight[2])  # (R, K)
    total = np.maximum(den.sum(1), 1e-300)
    out = {}
    for k, v in outcome.items():
        num = ed["likelihood"] * v
        value = num.sum(1) / total
        resid = num - value[:, None] * den  # linearised ratio estimator
        out[k] = (np.clip(value, 0.0, 1.0), np.sqrt((resid**2).sum(1) * K / (K - 1)) / total)
    return out


def _ed_scenarios(pw, p, t, rng) -> dict:
    """(R, K) draws of the ED part: triage group before ED//TRIAGE, the wait, treatment time and the
    disposition probabilities, with `likelihood`: the probability of what a row already saw given the drawn
    triage group (a physician seen minutes after the arrival speaks for a high group, a wait under way for a
    low one), so that the scenarios are weighted by P(triage group | state at t)."""
    R, K = p.size, SCENARIOS
    col = lambda column: column[p][:, None]  # (R, 1)
    before_triage = (t < pw.arrival_time[p] + TRIAGE_AFTER_ARRIVAL_H)[:, None]
    before_phys = (t < pw.physician_time[p])[:, None]
    before_ready = (t < pw.ready_time[p])[:, None]
    mts = np.where(before_triage, _draw_triage(pw, p, rng, K), col(pw.triage_group))  # (R, K)
    mean_wait_h = ED_MEAN_WAIT_MIN[mts - 1] * crowding_factor(col(pw.ed_occupancy_at_arrival)) / 60.0
    waited = np.maximum(t - pw.arrival_time[p], 0.0)[:, None]
    # exponential waits are memoryless: the rest of a wait under way is a fresh draw
    rest = -np.log1p(-_strata(rng, (R, K))) * mean_wait_h
    wait = np.where(before_phys, waited + rest, col(pw.wait_h))
    seen = np.where(before_phys, np.exp(-waited / mean_wait_h), np.exp(-col(pw.wait_h) / mean_wait_h) / mean_wait_h)
    likelihood = np.where(before_triage, seen, 1.0)
    t_phys = col(pw.arrival_time) + wait
    delay = np.maximum(0.0, wait - MTS_TARGET_MIN[mts - 1] / 60.0)
    s_phys = col(pw.severity_onset) + col(pw.drift_per_h) * np.minimum(t_phys - col(pw.onset_time), MAX_UNTREATED_H)
    treated = np.where(before_phys, 0.0, np.maximum(t[:, None] - col(pw.physician_time), 0.0))
    treat = _lognormal_above(_strata(rng, (R, K)), np.log(ED_TREAT_MEDIAN_H[mts - 1]), ED_TREAT_SIGMA, treated)
    p_icu, p_ward = disposition_probs(s_phys, np.broadcast_to(col(pw.age), (R, K)))
    return dict(
        before_ready=before_ready,
        likelihood=likelihood,
        t_phys=t_phys,
        delay=delay,
        s_phys=s_phys,
        s_inf=s_phys
        - (col(pw.severity_physician) - col(pw.severity_settled)),  # the settled level keeps its latent distance
        t_ready=np.where(before_ready, t_phys + treat, col(pw.ready_time)),
        p_icu=p_icu,
        p_ward=p_ward,
        p_home=1.0 - p_icu - p_ward,
    )


def _admitted_outcomes(cfg, pw, p, t, ed, adm, d, rng):
    """Course labels of the scenarios `adm` (index pair into (R, K)) admitted with disposition d (1 ward, 2 ICU),
    and whether each got its bed before the simulated window closed (the label rows exist only then)."""
    rr = adm[0]
    n = rr.size
    direct = np.full(n, d == 2)
    unit = np.full(n, U_ICU) if d == 2 else pw.ward_unit[p][rr]
    bedded = t[rr] >= pw.bed_time[p][rr]  # a direct ICU admission in its ICU bed
    t_ready = ed["t_ready"][adm]
    borrowed_bed, ratio = _borrow_bed(pw, p[rr], unit, t_ready, t[rr], rng)
    t_bed = np.where(bedded, pw.bed_time[p][rr], borrowed_bed)
    strain = admission_strain(ratio, t_bed - t_ready, ed["delay"][adm])
    strain = np.where(bedded, pw.admission_strain[p][rr], strain)
    cap = 24.0 * cfg.max_los_days
    u_icu, u_plan = (_strata(rng, (p.size, SCENARIOS))[adm] for _ in range(2))
    in_icu_for = np.where(bedded, t[rr] - t_bed, 0.0)
    icu_los = np.minimum(_lognormal_above(u_icu, ICU_LOS_MU, ICU_LOS_SIGMA, in_icu_for), cap)
    mu, sigma = ward_plan_params(pw.ward_unit[p][rr])
    ward_plan = np.minimum(_lognormal_above(u_plan, mu, sigma, 0.0), cap)
    course = dict(
        t_phys=ed["t_phys"][adm],
        s_phys=ed["s_phys"][adm],
        s_inf=ed["s_inf"][adm],
        tau=pw.relaxation_h[p][rr],
        strain=strain,
        t_bed=t_bed,
        icu_los=np.where(direct, icu_los, 0.0),
        ward_plan=ward_plan,
        direct=direct,
        t=t[rr],
    )
    return _scenario_outcomes(course, cap), (t_bed < cfg.hours).astype(float)


def _strata(rng, shape):
    """(R, K) uniforms, each row holding one draw in each of the K strata [k/K, (k+1)/K), in random order."""
    R, K = shape
    order = rng.permuted(np.broadcast_to(np.arange(K), (R, K)), axis=1)
    return (order + rng.random((R, K))) / K


def _draw_triage(pw, p, rng, K):
    """Manchester group as the generator draws it (synthetic.course.start_pathways; MANV casualties by sorting
    category), the assessment noise stratified over the scenarios."""
    noise = TRIAGE_NOISE_SD * np.interp(_strata(rng, (p.size, K)), _PHI, _Z)
    mts = triage_group(pw.severity_onset[p][:, None], noise)
    sk = pw.mci_category[p][:, None]
    mci = mci_triage_group(sk, rng.random((p.size, K)) < MCI_SK_I_GROUP_2_SHARE)
    return np.where(sk >= 0, mci, mts)


_Z = np.linspace(-NORMAL_TABLE_Z, NORMAL_TABLE_Z, 20_001)
_PHI = 0.5 * _erfc(-_Z / math.sqrt(2.0))


def _lognormal_above(u, mu, sigma, lower):
    """exp(mu + sigma z) conditioned on exceeding `lower`, by the inverse cdf (a table of the normal cdf) at the
    uniforms u."""
    z_low = (np.log(np.maximum(lower, 1e-300)) - mu) / sigma
    c = np.interp(z_low, _Z, _PHI)
    return np.exp(mu + sigma * np.interp(c + u * (1.0 - c), _PHI, _Z))


def _borrow_bed(pw, own, unit, ready, t, rng):
    """(bed time, unit census per scheduled-nurse capacity at the bed) of M admitted scenarios.

    The simulator beds a patient ready at `ready` in the first hour h >= floor(ready) with a free bed, at
    min(max(ready, h + U/2), h + 0.999). The number of hours h - floor(ready) and the census ratio are borrowed
    from one of the NEIGHBOURS realised admissions to the same hospital and unit nearest in ready time (the same
    unit city-wide where the hospital has fewer than two), never the patient's own; a patient not bedded by t
    takes the first of BOARDING_TRIES draws that beds it after t, else t + RESIDUAL_BOARDING_H."""
    admitted = np.nonzero(~np.isnan(pw.bed_time))[0]
    nu = len(UNITS)
    local = _pool(admitted, pw.hospital[admitted] * nu + pw.first_unit[admitted], pw.ready_time[admitted])
    city = _pool(admitted, pw.first_unit[admitted], pw.ready_time[admitted])
    lo, hi, near = _bracket(local, pw.hospital[own] * nu + unit, ready)
    c_lo, c_hi, c_near = _bracket(city, unit, ready)
    use_city = hi - lo < 2
    shift = local["rows"].size  # the city pool's positions follow the local pool's
    lo, hi, near = (np.where(use_city, c + shift, x) for c, x in ((c_lo, lo), (c_hi, hi), (c_near, near)))
    rows = np.concatenate([local["rows"], city["rows"]])
    bed, ratio = np.full(own.size, np.nan), np.zeros(own.size)
    todo = hi > lo
    for _ in range(BOARDING_TRIES):
        idx = np.clip(near + rng.integers(-(NEIGHBOURS // 2), NEIGHBOURS // 2, own.size), lo, np.maximum(hi - 1, lo))
        src = rows[np.minimum(idx, rows.size - 1)] if rows.size else own
        hour = np.floor(ready) + np.floor(pw.bed_time[src]) - np.floor(pw.ready_time[src])
        when = np.minimum(np.maximum(ready, hour + 0.5 * rng.random(own.size)), hour + 0.999)
        ok = todo & (src != own) & (when > t)
        bed[ok] = when[ok]
        ratio[ok] = pw.nurse_load_ratio[src[ok]]
        todo &= ~ok
        if not todo.any():
            break
    missing = np.isnan(bed)
    bed[missing] = np.maximum(ready[missing], t[missing]) + RESIDUAL_BOARDING_H
    ratio[missing] = np.nanmedian(pw.nurse_load_ratio) if admitted.size else 0.0
    return bed, ratio


READY_SPAN_H = 1e7  # longer than any simulated time: (key, ready) sorts as one number key * span + ready


def _pool(rows, key, ready) -> dict:
    order = np.lexsort((ready, key))
    return {"rows": rows[order], "sort": key[order] * READY_SPAN_H + ready[order]}


def _bracket(pool, key, ready):
    """First and one-past-last pool position of each key, and the position nearest to its ready time."""
    lo = np.searchsorted(pool["sort"], key * READY_SPAN_H)
    hi = np.searchsorted(pool["sort"], (key + 1) * READY_SPAN_H)
    near = np.clip(np.searchsorted(pool["sort"], key * READY_SPAN_H + ready), lo, np.maximum(hi - 1, lo))
    return lo, hi, near


def _scenario_outcomes(c: dict, cap: float) -> dict:
    """Course labels of M admitted scenarios (flat arrays of `c`), the outcome draws integrated out.

    A direct ICU admission survives its ICU stay (hazard fixed by the severity at the bed) with probability
    `survive` and then meets the ward's adverse-event process; a ward admission meets it from the bed.
    Adverse event in (t, t + 24]: a first event in [ward start, min(t + 24, end)]; ICU: a direct admission's bed
    in (t, t + 24], or a ward patient's non-fatal event by t + 23 h (ICU_AFTER_AE); death: in the ICU, or a
    first event that is fatal or leads to an ICU stay that ends in death.
    """
    out = {k: np.zeros(c["t"].size) for k in COURSE_TASKS}
    for lo in range(0, c["t"].size, SCENARIO_CHUNK):
        part = {k: v[lo : lo + SCENARIO_CHUNK] for k, v in c.items()}
        sl = slice(lo, lo + SCENARIO_CHUNK)
        t, t_bed, direct = part["t"], part["t_bed"], part["direct"]
        ward_start = t_bed + part["icu_los"]
        end = ward_start + part["ward_plan"]
        s_bed = _severity(part, t_bed)
        survive = np.exp(-icu_death_hazard(s_bed) * (ward_start - np.maximum(t, t_bed)))
        survive = np.where(direct, survive, 1.0)
        day = _first_event(part, ward_start, np.maximum(np.minimum(t + 24.0, end), ward_start), WINDOW_BINS, cap, ())
        out["adverse_event"][sl] = survive * day["any"]
        out["icu_transfer"][sl] = (t_bed > t) & (t_bed <= t + 24.0)
        ward = ~direct  # only a ward admission goes to the ICU after an adverse event
        if ward.any():
            icu_end = np.maximum(np.minimum(t + 24.0 - ICU_AFTER_AE_DELAY_H, end), t_bed)
            ward_icu = _first_event(
                {k: v[ward] for k, v in part.items()}, t_bed[ward], icu_end[ward], WINDOW_BINS, cap, ("fatal",)
            )
            out["icu_transfer"][sl][ward] = ICU_AFTER_AE * (ward_icu["any"] - ward_icu["fatal"])
        settled = np.clip(part["t_phys"] + SETTLED_TAUS * part["tau"], ward_start, end)
        early = _first_event(
            part, ward_start, settled, STAY_BINS, cap, ("fatal", "icu_death") if ward.any() else ("fatal",)
        )
        h_inf = np.exp(adverse_event_log_hazard(part["s_inf"], part["strain"]))
        q_inf = fatal_probability(part["s_inf"], part["strain"])
        dies_inf = q_inf + (1.0 - q_inf) * ICU_AFTER_AE * ~direct * _icu_death_prob(
            icu_death_hazard(part["s_inf"]), cap
        )
        tail = np.exp(-early["hazard"]) * -np.expm1(-h_inf * (end - settled)) * dies_inf
        ward_death = early["fatal"] + ICU_AFTER_AE * ward * early.get("icu_death", 0.0) + tail
        out["in_hospital_death"][sl] = 1.0 - survive + survive * ward_death
    return out


def _severity(c, x):
    """Severity after the physician: relaxation from s_phys to s_inf with time constant tau."""
    return c["s_inf"] + (c["s_phys"] - c["s_inf"]) * np.exp(-np.maximum(x - c["t_phys"], 0.0) / c["tau"])


def _first_event(c, a, b, n_bins, cap, also=("fatal", "icu_death")) -> dict:
    """Over [a, b] (M,): P(first adverse event there) "any" and the cumulative hazard "hazard"; with `also`, that
    it is fatal "fatal", or non-fatal and followed by death in the ICU stay it leads to "icu_death" (ICU_AFTER_AE
    not applied); hazard exp(a + b s + c strain) held at each of n_bins midpoints."""
    width = np.maximum(b - a, 0.0) / n_bins  # (M,)
    mid = a[:, None] + width[:, None] * (np.arange(n_bins) + 0.5)  # (M, n_bins)
    s = _severity({k: v[:, None] for k, v in c.items() if k in ("s_inf", "s_phys", "t_phys", "tau")}, mid)
    step = np.exp(adverse_event_log_hazard(s, c["strain"][:, None])) * width[:, None]
    H = np.cumsum(step, axis=1)
    first = np.exp(-(H - step)) * -np.expm1(-step)
    out = {"any": first.sum(1), "hazard": H[:, -1]}
    if also:
        q = fatal_probability(s, c["strain"][:, None])
        out["fatal"] = (first * q).sum(1)
    if "icu_death" in also:
        out["icu_death"] = (first * (1.0 - q) * _icu_death_prob(icu_death_hazard(s), cap)).sum(1)
    return out


# ----------------------------------------------------------------------------------------------------------
# Tables: with the labels (SyntheticData.bound), on disk (bound/, bound_se/), back


def bound_frame(subject, ptime, value, se) -> pd.DataFrame:
    """One task's bound: subject_id, prediction_time (the label table's keys and order), value, se."""
    frame = pd.DataFrame(
        {
            "subject_id": subject.astype(np.int64),
            "prediction_time": pd.array(ptime, dtype="datetime64[us]"),
            "value": value.astype(np.float64),
            "se": se.astype(np.float64),
        }
    )
    return frame.sort_values(["subject_id", "prediction_time"], kind="stable").reset_index(drop=True)


BOUND_FOLDERS = {"bound": "value", "bound_se": "se"}  # folder under a MEDS root -> column stored as float_value


def bound_label_sets(bound: dict[str, pd.DataFrame]) -> dict[str, dict[str, pd.DataFrame]]:
    """The bound as MEDS label tables (LabelSchema admits no extra column): folder -> task -> table whose
    float_value is the value (bound/) or its standard error (bound_se/), rows keyed as the labels."""
    return {
        folder: {
            task: f[["subject_id", "prediction_time"]].assign(float_value=f[column].astype(np.float32))
            for task, f in bound.items()
        }
        for folder, column in BOUND_FOLDERS.items()
    }


def read_bound(root: str | Path) -> dict[str, pd.DataFrame]:
    """task -> bound table (subject_id, prediction_time, float_value, se) from a MEDS root written by
    `write_synthetic`. Pass it as `connect_hamburg_data(root, oracle=read_bound(root))` to score against the
    fair bound where the oracle was."""
    root = Path(root)
    folder = root / "bound"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"read_bound: {folder} does not exist (written by write_synthetic since the fair "
            f"bound was added; regenerate the dataset)"
        )
    out = {}
    for path in sorted(folder.glob("*/labels.parquet")):
        task = path.parent.name
        value, se = (pq.read_table(root / f / task / "labels.parquet") for f in BOUND_FOLDERS)
        for table in (value, se):
            meds.LabelSchema.validate(table)
        frame = value.to_pandas()
        se_frame = se.to_pandas()
        if not (
            frame["subject_id"].equals(se_frame["subject_id"])
            and frame["prediction_time"].equals(se_frame["prediction_time"])
        ):
            raise ValueError(
                f"read_bound: bound_se/{task} rows do not match bound/{task} (subject_id, prediction_time)"
            )
        out[task] = frame.assign(se=se_frame["float_value"].to_numpy())
    return out
