"""Stage 6b: the label tables, their oracles and the fair bound.

Ground truth ("oracle"): every label comes with the probability (or expected value) the generator drew it
from, conditional on the realised system path (bed times, disposition, planned length of stay, strain);
what is integrated out are the outcome draws themselves (adverse-event time, fatality, ICU decision,
readmission, sick leave, closure start). See docs/data.md ("Ground truth"). The fair bound
(hamburg_mamba.data.fair_bound) conditions on the state at the prediction time only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hamburg_mamba.data.schema import TASKS
from hamburg_mamba.data.synthetic.config import SyntheticConfig
from hamburg_mamba.data.synthetic.constants import DEATH_AFTER_AE_DELAY_H, ICU_AFTER_AE, ICU_AFTER_AE_DELAY_H
from hamburg_mamba.data.synthetic.course import (
    HOME,
    ICU,
    fatal_probability,
    hazard_grid,
    icu_death_hazard,
    icu_death_within,
    severity_at,
    ward_plan_start,
)
from hamburg_mamba.data.synthetic.events import STAGE_ID
from hamburg_mamba.data.synthetic.records import CourseOracles, HospitalState, Pathways, SortedEvents, StaffShifts
from hamburg_mamba.data.synthetic.staff import shift_index

LABEL_WINDOW_H = 24.0  # the course tasks look this far ahead
CLOSURE_WINDOWS_H = (6, 12, 24)


def label_tables(
    cfg: SyntheticConfig,
    state: HospitalState,
    staff: StaffShifts,
    pathways: Pathways,
    subject: np.ndarray,
    events: SortedEvents,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """task -> MEDS label table, task -> oracle table (float_value = true probability), task -> fair bound.

    subject: (E,) subject of each row of the events table, whose keys `events` holds. Event-level labels are
    issued once per (subject, time) at the last event of that time (MEDS: a prediction at `prediction_time` may
    use everything up to and including it).
    """
    pw = pathways
    timed = ~np.isnan(events.time) & (events.stage != STAGE_ID["static"])
    idx = np.nonzero(timed)[0]
    # last event of each (subject, time): the file is sorted by subject, then time
    last = np.ones(idx.size, bool)
    t_all = events.time
    last[:-1] = (subject[idx][1:] != subject[idx][:-1]) | (t_all[idx][1:] != t_all[idx][:-1])
    idx = idx[last]
    t, p, unit = events.time[idx], events.pathway_row[idx], events.unit[idx]
    subj = subject[idx]
    start = np.datetime64(pd.Timestamp(cfg.start).to_datetime64(), "us")
    ptime = start + np.round(t * 3.6e9).astype(np.int64).astype("timedelta64[us]")
    hospital = pw.hospital[p]
    labels_and_masks, oracles = _course_labels(pw, p, t)
    _staff_labels(cfg, staff, t, hospital, unit, labels_and_masks, oracles)
    _closure_labels(cfg, state, t, hospital, labels_and_masks, oracles)

    # the fair bound reads the generator's constants and course functions, so it is imported here, not at the top
    from hamburg_mamba.data.fair_bound import bound_frame, course_bounds

    fair = course_bounds(cfg, pw, p, t, cfg.seed)
    labels, oracle, bound = {}, {}, {}
    for name, (value, mask) in labels_and_masks.items():
        rows = np.nonzero(mask)[0]
        labels[name] = label_frame(subj[rows], ptime[rows], value[rows], TASKS[name].kind)
        oracle[name] = label_frame(subj[rows], ptime[rows], oracles[name][rows], "regression")
        if name in fair:
            bound[name] = bound_frame(subj[rows], ptime[rows], fair[name][0][rows], fair[name][1][rows])

    # readmission_30d: one row per pathway at its last emitted event (discharge); missing if dead or unfinished
    last_t = np.full(pw.row.size, -np.inf)
    np.maximum.at(last_t, p, t)
    done = (~pw.died) & ~np.isnan(pw.end_time) & (pw.end_time < cfg.hours) & (last_t >= pw.end_time - 1e-9)
    r = np.nonzero(done)[0]
    at_end = start + np.round(pw.end_time[r] * 3.6e9).astype(np.int64).astype("timedelta64[us]")
    labels["readmission_30d"] = label_frame(pw.subject_id[r], at_end, pw.readmitted[r], "binary")
    oracle["readmission_30d"] = label_frame(pw.subject_id[r], at_end, pw.p_readmission[r], "regression")
    # every input of the readmission draw is known at discharge: the probability is the fair bound itself
    bound["readmission_30d"] = bound_frame(pw.subject_id[r], at_end, pw.p_readmission[r], np.zeros(r.size))
    return labels, oracle, bound


def _course_labels(pw: Pathways, p, t):
    """task -> (label, row included) and task -> oracle of the three course tasks at the rows (p, t)."""
    has_course = ~np.isnan(pw.bed_time[p]) | (pw.disposition[p] == HOME)
    inpatient = ~np.isnan(pw.bed_time[p])
    oracle = course_oracles(pw, p, t, inpatient)
    labels = {}
    ae_time = pw.adverse_event_time[p]
    labels["adverse_event"] = ((ae_time > t) & (ae_time <= t + LABEL_WINDOW_H), has_course & ~(t >= ae_time))
    icu_time = pw.icu_in_time[p]
    labels["icu_transfer"] = ((icu_time > t) & (icu_time <= t + LABEL_WINDOW_H), has_course & ~(t >= icu_time))
    death_time = pw.death_time[p]
    labels["in_hospital_death"] = (pw.died[p] & (death_time > t), has_course & ~(t >= death_time))
    oracles = {
        "adverse_event": oracle.adverse_event_24h,
        "icu_transfer": oracle.icu_24h,
        "in_hospital_death": oracle.death,
    }
    return labels, oracles


def _staff_labels(cfg, staff: StaffShifts, t, hospital, unit, labels, oracles):
    """The event's unit in the next shift (PpUGV units only for the violation)."""
    S = staff.n_shifts
    following = shift_index(cfg, t) + 1
    ok = (unit >= 0) & (following < S)
    s, u = np.minimum(following, S - 1), np.maximum(unit, 0)
    labels["unit_workload"] = (staff.patients_per_nurse[s, hospital, u], ok)
    oracles["unit_workload"] = staff.expected_patients_per_nurse[s, hospital, u]
    labels["ratio_violation_next_shift"] = (staff.violation[s, hospital, u], ok & staff.ppugv_unit[u])
    oracles["ratio_violation_next_shift"] = staff.p_violation[s, hospital, u]


def _closure_labels(cfg, state: HospitalState, t, hospital, labels, oracles):
    """A closure of the pathway's hospital starts in one of the next k whole hours."""
    H = cfg.hours
    starts = np.vstack([np.zeros((1, state.closure_start.shape[1])), np.cumsum(state.closure_start, 0)])
    # Oracle: hours of the window count from the end of a closure already running at the event's hour (known
    # then); later hours are not conditioned on the window's own outcome.
    log_survival = np.log1p(-state.closure_hazard)
    cumulative = np.vstack([np.zeros((1, log_survival.shape[1])), np.cumsum(log_survival, 0)])  # (H + 1, N)
    hour = np.floor(t).astype(np.int64)
    open_from = np.ceil(state.closed_until[np.clip(hour, 0, H - 1), hospital]).astype(np.int64)
    for k in CLOSURE_WINDOWS_H:
        ok = (hour >= 0) & (hour + k < H)
        a, b = np.clip(hour + 1, 0, H), np.clip(hour + 1 + k, 0, H)
        labels[f"closure_{k}h"] = (starts[b, hospital] - starts[a, hospital] > 0, ok)
        a_open = np.clip(np.maximum(a, open_from), 0, b)
        oracles[f"closure_{k}h"] = 1.0 - np.exp(cumulative[b, hospital] - cumulative[a_open, hospital])


def label_frame(subject, prediction_time, value, kind) -> pd.DataFrame:
    """One MEDS label table: boolean_value for a binary task, float_value otherwise; sorted by subject, time."""
    column = "boolean_value" if kind == "binary" else "float_value"
    values = (
        pd.array(value.astype(bool), dtype="boolean")
        if kind == "binary"
        else pd.array(value.astype(np.float32), dtype="Float32")
    )
    frame = pd.DataFrame(
        {
            "subject_id": subject.astype(np.int64),
            "prediction_time": pd.array(prediction_time, dtype="datetime64[us]"),
            column: values,
        }
    )
    return frame.sort_values(["subject_id", "prediction_time"], kind="stable").reset_index(drop=True)


def course_oracles(pw: Pathways, p: np.ndarray, t: np.ndarray, inpatient: np.ndarray) -> CourseOracles:
    """True probabilities of the adverse-event process per (pathway row p, time t), from the hazard grid.

    adverse_event_24h: P(AE in (t, t+24] | no AE by t); death: P(death after t | alive at t): a fatal AE, or
    death in an ICU stay (a direct admission's, or the one a non-fatal AE on the ward leads to); icu_24h:
    P(ICU admission in (t, t+24]); after an AE the realised decision (fatal / ICU) is known.
    """
    n_rows = p.size
    ae24 = np.zeros(n_rows)
    death = np.zeros(n_rows)
    icu24 = np.zeros(n_rows)
    sel = np.nonzero(inpatient)[0]
    if np.any(~np.isnan(pw.bed_time)):
        ae24[sel], death[sel], icu24[sel] = _inpatient_oracles(pw, p[sel], t[sel])
    # after the adverse event the draws are realised; a planned (direct) ICU admission is not random here
    ae_time = pw.adverse_event_time[p]
    after = t >= ae_time
    severity_ae = severity_at(pw, p, np.where(np.isnan(ae_time), t, ae_time))
    fatal_now = np.where(
        t < ae_time + DEATH_AFTER_AE_DELAY_H, fatal_probability(severity_ae, pw.admission_strain[p]), 0.0
    )
    icu_next = (pw.disposition[p] != ICU) & pw.icu_after_adverse_event[p]  # the ICU stay a ward AE leads to
    icu_in = ae_time + ICU_AFTER_AE_DELAY_H
    in_icu_death = np.where(
        icu_next, icu_death_within(icu_death_hazard(severity_ae), icu_in, icu_in + pw.icu_stay_h[p], t), 0.0
    )
    death = np.where(after, fatal_now + (1.0 - fatal_now) * in_icu_death, death)
    icu_time = pw.icu_in_time[p]
    realised_icu = ((icu_time > t) & (icu_time <= t + LABEL_WINDOW_H)).astype(float)
    direct = pw.disposition[p] == ICU
    icu24 = np.where(direct | after, realised_icu, icu24)
    ae24 = np.where(after, 0.0, ae24)
    # 1 - (1 - x)(1 - y) and differences of cumulative sums round to -2e-16 where the true value is 0: a
    # probability must stay in [0, 1] (a negative oracle would be clipped by any consumer, and then differ).
    return CourseOracles(
        adverse_event_24h=np.clip(ae24, 0.0, 1.0), death=np.clip(death, 0.0, 1.0), icu_24h=np.clip(icu24, 0.0, 1.0)
    )


def _inpatient_oracles(pw: Pathways, p: np.ndarray, t: np.ndarray):
    """(ae24, death, icu24) of bedded pathway rows p at times t before their adverse event, on the hazard grid of
    every bedded pathway."""
    rows_all = np.nonzero(~np.isnan(pw.bed_time))[0]
    owner, t0, dt, log_hazard, offsets, severity = hazard_grid(pw, rows_all)
    h = np.exp(log_hazard)
    cumulative = np.cumsum(h * dt)
    base = np.concatenate([[0.0], cumulative])[offsets[:-1]]
    H_end = cumulative - base[owner]  # cumulative hazard at each bin's end
    H_start = H_end - h * dt
    q = fatal_probability(severity, pw.admission_strain[rows_all[owner]])
    direct = pw.disposition[rows_all] == ICU
    ward_bin = ~direct[owner]
    p_bin = np.exp(-H_start) - np.exp(-H_end)  # P(first AE in bin) from the stay's start
    icu_death = 1.0 - np.exp(-icu_death_hazard(severity) * pw.icu_stay_h[rows_all[owner]])
    dies = q + (1 - q) * ICU_AFTER_AE * ward_bin * icu_death  # P(the AE of this bin ends in death)
    D_cum = np.cumsum(p_bin * dies)
    I_cum = np.cumsum(p_bin * (1 - q) * ICU_AFTER_AE * ward_bin)
    position = np.full(pw.row.size, -1)
    position[rows_all] = np.arange(rows_all.size)
    grid_start = ward_plan_start(pw, rows_all)

    def at(j, x):
        """Cumulative hazard and cumulative death / ICU weights at time x for grid owner j."""
        n_bins = offsets[j + 1] - offsets[j]
        rel = x - grid_start[j]
        b = offsets[j] + np.clip(np.floor(rel).astype(np.int64), 0, n_bins - 1)
        frac = np.clip((rel - (b - offsets[j])) / dt[b], 0.0, 1.0)
        frac = np.where(rel <= 0, 0.0, frac)
        Hx = H_start[b] + frac * (H_end[b] - H_start[b])
        first_bin = offsets[j]
        base_D = np.where(first_bin > 0, D_cum[np.maximum(first_bin - 1, 0)], 0.0)
        base_I = np.where(first_bin > 0, I_cum[np.maximum(first_bin - 1, 0)], 0.0)
        later = b > first_bin
        before_D = np.where(later, D_cum[np.maximum(b - 1, 0)] - base_D, 0.0)
        before_I = np.where(later, I_cum[np.maximum(b - 1, 0)] - base_I, 0.0)
        part_D = (np.exp(-H_start[b]) - np.exp(-Hx)) * dies[b]
        part_I = (np.exp(-H_start[b]) - np.exp(-Hx)) * (1 - q[b]) * ICU_AFTER_AE * ward_bin[b]
        return Hx, before_D + part_D, before_I + part_I, offsets[j + 1] - 1, base_D

    j = position[p]
    H_t, D_t, I_t, last_bin, base_D = at(j, t)
    _, _, I_23, _, _ = at(j, t + LABEL_WINDOW_H - ICU_AFTER_AE_DELAY_H)
    H_24 = at(j, t + LABEL_WINDOW_H)[0]
    D_total = D_cum[last_bin] - base_D
    # a direct ICU admission must survive its ICU stay (an independent hazard) to meet the ward's process
    bed = pw.bed_time[p]
    in_icu_death = np.where(
        pw.disposition[p] == ICU,
        icu_death_within(icu_death_hazard(severity_at(pw, p, bed)), bed, bed + pw.icu_stay_h[p], t),
        0.0,
    )
    ae24 = (1.0 - np.exp(-(H_24 - H_t))) * (1.0 - in_icu_death)
    death = 1.0 - (1.0 - in_icu_death) * (1.0 - np.exp(H_t) * (D_total - D_t))
    icu24 = np.exp(H_t) * (I_23 - I_t)
    return ae24, death, icu24
