"""Stage 4: the hospitals hour by hour: beds, boarding, census, closures to ambulances.

The simulation runs one Python iteration per simulated hour; everything inside is vectorised over the patients
and hospitals of that hour. Per hour: the hour's arrivals start their pathways (course.start_pathways) and the
ambulances among them are routed past closed hospitals; admitted patients board in the ED until a bed in their
unit is free (priority ICU, then triage group), and on getting one their inpatient course is drawn
(course.inpatient_course); elective ICU patients fill and free ICU beds; then the closure hazard of each open
hospital is evaluated. Closure to ambulances: hazard per daytime hour (never 21:00-06:00) rising with NEDOCS
(Weiss 2004) measured against the hospital's own running baseline (a z-score, so the rate does not depend on ED
size); closures last a log-normal time and end by 21:00. Diverted ambulances cascade load.

Census bookkeeping: every stay enters `delta` (hour, N, U) as +1 from the hour after it starts and -1 from the
hour after it ends; the census of hour h is that of hour h - 1 plus delta[h] and the hour's ED arrivals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hamburg_mamba.data.cities import HOSPITALS
from hamburg_mamba.data.synthetic.config import SyntheticConfig
from hamburg_mamba.data.synthetic.constants import (
    CLOSURE_ALLOWED_FROM_H,
    CLOSURE_ALLOWED_UNTIL_H,
    CLOSURE_BASELINE_H,
    CLOSURE_HAZARD_MAX,
    CLOSURE_MEDIAN_H,
    CLOSURE_MIN_HISTORY_H,
    CLOSURE_MIN_SD,
    CLOSURE_SIGMA,
    ED_NURSES_PER_BED,
    ELECTIVE_FROM_H,
    ELECTIVE_UNTIL_H,
    EXPECTED_CLOSED_SHARE,
    ICU_DEMAND_FACTOR,
    ICU_ED_SHARE,
    ICU_ELECTIVE_LOS_DAYS,
    ICU_ELECTIVE_SIGMA,
    ICU_LOS_DAYS,
    MIN_UNIT_BEDS,
    PPUGV_LIMIT,
    SEVERITY_SD,
    STAFF_SLACK,
    TARGET_ICU_OCCUPANCY,
    TARGET_OCCUPANCY,
    U_ED,
    U_ICU,
    UNIT_LOS_DAYS,
    UNITS,
    WARD_POOL,
)
from hamburg_mamba.data.synthetic.course import (
    HOME,
    PathwayStore,
    add_stay_census,
    disposition_probs,
    inpatient_course,
    schedule_readmissions,
    start_pathways,
    triage_severity_mean,
    ward_unit,
)
from hamburg_mamba.data.synthetic.records import (
    Arrivals,
    Beds,
    City,
    Columns,
    Drivers,
    HospitalState,
    Pathways,
    Readmissions,
)

# NEDOCS (Weiss et al. 2004): -20 + 85.8 ED patients / ED beds + 600 admitted boarders / hospital beds
# + 0.93 longest boarding (h) + 5.64 last door-to-physician wait (h); the ventilated-patient and bed terms are left.
NEDOCS_INTERCEPT, NEDOCS_ED, NEDOCS_BOARDERS, NEDOCS_LONGEST_H, NEDOCS_WAIT_H = -20, 85.8, 600, 0.93, 5.64
ICU_FIRST_PRIORITY = 10.0  # bed queue priority: ICU patients first, then by triage group
BED_JITTER_H = 0.5  # a bed freed in the hour is taken within its first half hour (uniform)
STREAM_BED_SIZING, STREAM_ELECTIVE_ICU = 7, 11  # fixed extra streams: SeedSequence([seed, this])


def pad_hours(cfg: SyntheticConfig) -> int:
    """Census rows beyond the window, for the changes of stays that end after it."""
    return int(24 * (cfg.max_los_days * 2 + 40))


@dataclass
class BedQueue(Columns):
    """Admitted patients waiting in the ED for a bed; each field (Q,)."""

    row: np.ndarray  # int64 pathway row
    ready_time: np.ndarray  # end of ED treatment, hours
    unit: np.ndarray  # int64 unit the bed is wanted on
    hospital: np.ndarray  # int64
    priority: np.ndarray  # lower first: ICU_FIRST_PRIORITY for a ward bed, plus the triage group

    @classmethod
    def empty(cls):
        ints, floats = np.zeros(0, dtype=np.int64), np.zeros(0)
        return cls(row=ints, ready_time=floats, unit=ints, hospital=ints, priority=floats)


def simulate_city(
    cfg: SyntheticConfig,
    city: City,
    drivers: Drivers,
    arrivals: Arrivals,
    rng: np.random.Generator,
    rng_readmission: np.random.Generator,
    rng_closure: np.random.Generator,
) -> tuple[Pathways, HospitalState]:
    """Run the city hour by hour. rng draws the pathways' own course (routing, ED, beds, outcome draws),
    rng_readmission the readmissions, rng_closure the closures; each is consumed in the order of the hours."""
    return _CitySimulation(cfg, city, drivers, arrivals, rng, rng_readmission, rng_closure).run()


class _CitySimulation:
    """The loop's state: per-hour arrays (H, N) filled hour by hour, the census changes, the bed queue."""

    def __init__(self, cfg, city, drivers, arrivals, rng, rng_readmission, rng_closure):
        self.cfg, self.city, self.drivers, self.arrivals = cfg, city, drivers, arrivals
        self.rng, self.rng_readmission, self.rng_closure = rng, rng_readmission, rng_closure
        H, n, nu = cfg.hours, city.n_hospitals, len(UNITS)
        self.last_row = H + pad_hours(cfg)  # the last row of `delta`; later changes are kept there
        self.delta = np.zeros((H + pad_hours(cfg) + 2, n, nu), dtype=np.int64)  # census change at each hour's start
        self.census = np.zeros((H, n, nu), dtype=np.int64)
        self.boarders = np.zeros((H, n), dtype=np.int64)
        self.longest_boarder_h = np.zeros((H, n))
        self.last_wait_h = np.zeros((H, n))
        self.closed = np.zeros((H, n), dtype=bool)
        self.closure_start = np.zeros((H, n), dtype=bool)
        self.closure_hazard = np.zeros((H, n))
        self.nedocs = np.zeros((H, n))
        self.ems_arrivals = np.zeros((H, n), dtype=np.int64)
        self.walk_in_arrivals = np.zeros((H, n), dtype=np.int64)
        self.diverted_away = np.zeros((H, n), dtype=np.int64)
        self.open_at_hour_start = np.zeros((H, n), dtype=bool)
        self.closed_until = np.zeros((H, n))  # end time of the latest closure, as known after hour h
        self.closure_end = np.full(n, -1.0)
        self.closures = []  # (hospital, start, end)
        self.baseline_mean, self.baseline_var = np.zeros(n), np.zeros(n)  # running NEDOCS baseline (before hour h)
        self.baseline_weight = 1.0 - math.exp(-1.0 / CLOSURE_BASELINE_H)
        self.beds = size_beds(cfg, city, arrivals)
        self.store = PathwayStore()
        self.next_subject = 1
        self.pending: dict[int, list[Readmissions]] = {}  # hour -> readmissions due then
        self.queue = BedQueue.empty()
        self.hour_bounds = np.searchsorted(arrivals.onset_time, np.arange(H + 1))
        self.electives = _ElectiveIcu(cfg, drivers, self.beds, n)

    def run(self) -> tuple[Pathways, HospitalState]:
        n, nu = self.city.n_hospitals, len(UNITS)
        for h in range(self.cfg.hours):
            now = self.census[h - 1] if h > 0 else np.zeros((n, nu), dtype=np.int64)
            now = now + self.delta[h]  # (N, U), updated in place by the hour's ED arrivals
            self._arrive(h, now)
            self._assign_beds(h, now)
            self._board(h, now)
            self.census[h] = now
            self._closures(h, now)
        return self.store.finish(), self._state()

    def _arrive(self, h, now):
        """First arrivals and due readmissions of hour h start their pathways."""
        n = self.city.n_hospitals
        arrivals = self.arrivals.select(slice(self.hour_bounds[h], self.hour_bounds[h + 1]))
        m0 = arrivals.onset_time.size
        subject_id = np.arange(self.next_subject, self.next_subject + m0, dtype=np.int64)
        self.next_subject += m0
        sex = (self.rng.random(m0) < 0.5).astype(np.int64)
        previous_row = np.full(m0, -1, dtype=np.int64)
        if h in self.pending:
            due = Readmissions.concat(self.pending.pop(h))
            arrivals = Arrivals.concat([arrivals, due])
            subject_id = np.concatenate([subject_id, due.subject_id])
            sex = np.concatenate([sex, due.sex])
            previous_row = np.concatenate([previous_row, due.previous_row])
        if arrivals.onset_time.size == 0:
            return
        closed_before = self.closed[h - 1] if h else np.zeros(n, bool)
        rows = start_pathways(
            self.cfg,
            self.store,
            self.city,
            self.drivers,
            arrivals,
            subject_id,
            sex,
            previous_row,
            self.rng,
            h,
            now,
            closed_before,
        )
        pw = self.store.live
        hospital = pw.hospital[rows]
        np.add.at(self.ems_arrivals[h], hospital[pw.ems[rows]], 1)
        np.add.at(self.walk_in_arrivals[h], hospital[~pw.ems[rows]], 1)
        np.add.at(self.diverted_away[h], pw.district_hospital[rows][pw.diverted[rows]], 1)
        arrival_hour = np.floor(pw.arrival_time[rows]).astype(np.int64)
        here = arrival_hour <= h  # EMS patients dispatched this hour may reach the ED in a later hour
        np.add.at(now, (hospital[here], U_ED), 1)
        np.add.at(self.delta, (np.minimum(arrival_hour[~here], self.last_row), hospital[~here], U_ED), 1)
        # home from the ED: leave the ED census after the end of treatment; readmission drawn now
        home = rows[pw.disposition[rows] == HOME]
        leave_hour = np.minimum(np.floor(pw.ready_time[home]).astype(np.int64) + 1, self.last_row)
        np.add.at(self.delta, (leave_hour, pw.hospital[home], U_ED), -1)
        pw.end_time[home] = pw.ready_time[home]
        schedule_readmissions(self.cfg, pw, home, self.rng_readmission, self.pending, now, self.beds)
        admitted = rows[pw.disposition[rows] != HOME]
        waiting = BedQueue(
            row=admitted,
            ready_time=pw.ready_time[admitted],
            unit=pw.first_unit[admitted],
            hospital=pw.hospital[admitted],
            priority=(pw.first_unit[admitted] != U_ICU) * ICU_FIRST_PRIORITY + pw.triage_group[admitted],
        )
        self.queue = BedQueue.concat([self.queue, waiting])
        self.last_wait_h[h] = _group_mean(pw.wait_h[rows], pw.hospital[rows], n)

    def _assign_beds(self, h, now):
        """Patients ready by the end of hour h get beds in priority order while beds are free."""
        queue, beds = self.queue, self.beds
        ready = queue.ready_time < h + 1
        if not ready.any():
            return
        nu = len(UNITS)
        # ward beds are one pool per hospital (patients lie on another specialty's ward when theirs is
        # full, as "Fremdlieger"); the census stays per specialty, so its nurses carry the overflow
        free = np.maximum(beds.beds - now, 0)  # (N, U)
        free[:, WARD_POOL] = np.maximum(beds.beds[:, 2:].sum(1) - now[:, 2:].sum(1), 0)
        free[:, U_ICU] += self.electives.movable(h)
        idx = np.nonzero(ready)[0]
        key = queue.hospital[idx] * nu + np.where(queue.unit[idx] >= WARD_POOL, WARD_POOL, queue.unit[idx])
        order = np.lexsort((queue.ready_time[idx], queue.priority[idx], key))
        idx, key = idx[order], key[order]
        rank = np.arange(idx.size) - np.searchsorted(key, key)  # rank within (hospital, unit)
        got = idx[rank < free.reshape(-1)[key]]
        if not got.size:
            return
        pw = self.store.live
        rows, hospital, unit = queue.row[got], queue.hospital[got], queue.unit[got]
        bed_time = np.maximum(queue.ready_time[got], h + self.rng.random(got.size) * BED_JITTER_H)
        bed_time = np.minimum(bed_time, h + 0.999)
        ed_exit = np.minimum(np.floor(bed_time).astype(np.int64) + 1, self.last_row)
        np.add.at(self.delta, (ed_exit, hospital, U_ED), -1)
        pw.bed_time[rows] = bed_time
        # patients per scheduled day nurse relative to the PpUGV limit (1 = exactly at the limit)
        capacity = beds.nurses[hospital, unit, 0] * beds.patients_per_nurse_limit[unit, 0]
        pw.nurse_load_ratio[rows] = now[hospital, unit] / np.maximum(capacity, 1.0)
        inpatient_course(pw, rows)
        add_stay_census(pw, rows, self.delta, self.last_row)
        alive = ~pw.died[rows]
        schedule_readmissions(self.cfg, pw, rows[alive], self.rng_readmission, self.pending, now, beds)
        keep = np.ones(queue.row.size, bool)
        keep[got] = False
        self.queue = queue.select(keep)

    def _board(self, h, now):
        """Elective ICU stays make room or take free beds; the rest of the queue boards in the ED."""
        n, queue = self.city.n_hospitals, self.queue
        waiting = queue.ready_time < h + 1
        self.electives.make_room(h, now, self.delta)
        icu_waiting = np.bincount(queue.hospital[waiting & (queue.unit == U_ICU)], minlength=n)
        self.electives.admit(h, now, self.delta, icu_waiting)
        np.add.at(self.boarders[h], queue.hospital[waiting], 1)
        if waiting.any():
            self.longest_boarder_h[h] = _group_max(h + 1 - queue.ready_time[waiting], queue.hospital[waiting], n)

    def _closures(self, h, now):
        """Closure to ambulances (Abmeldung): NEDOCS-driven hazard in the allowed daytime window."""
        cfg, n = self.cfg, self.city.n_hospitals
        hospital_beds = self.beds.beds[:, 1:].sum(1)
        self.nedocs[h] = (
            NEDOCS_INTERCEPT
            + NEDOCS_ED * now[:, U_ED] / self.city.ed_beds
            + NEDOCS_BOARDERS * self.boarders[h] / hospital_beds
            + NEDOCS_LONGEST_H * self.longest_boarder_h[h]
            + NEDOCS_WAIT_H * self.last_wait_h[h]
        )
        hour_of_day = self.drivers.hour_of_day[h]
        daytime = CLOSURE_ALLOWED_FROM_H <= hour_of_day < CLOSURE_ALLOWED_UNTIL_H
        is_closed = self.closure_end > h
        self.open_at_hour_start[h] = ~is_closed
        z = (self.nedocs[h] - self.baseline_mean) / np.maximum(np.sqrt(self.baseline_var), CLOSURE_MIN_SD)
        hazard = CLOSURE_HAZARD_MAX / (1 + np.exp(-(z - cfg.closure_z_mid) / cfg.closure_z_width))
        hazard = hazard * (daytime and h >= CLOSURE_MIN_HISTORY_H)
        self._update_baseline(h)
        self.closure_hazard[h] = hazard
        draws = self.rng_closure.random(n)
        duration = np.exp(np.log(CLOSURE_MEDIAN_H) + CLOSURE_SIGMA * self.rng_closure.standard_normal(n))
        start_now = (~is_closed) & (draws < hazard)
        if start_now.any():
            t0 = h + self.rng_closure.random(n)
            day_end = (h - hour_of_day + 0.5) + CLOSURE_ALLOWED_UNTIL_H  # 21:00 of this day
            t1 = np.minimum(t0 + duration, day_end)
            for i in np.nonzero(start_now)[0]:  # loop per hospital (closures are rare)
                self.closures.append((i, t0[i], t1[i]))
                self.closure_end[i] = t1[i]
            self.closure_start[h] = start_now
        self.closed[h] = self.closure_end > h + 0.5
        self.closed_until[h] = self.closure_end

    def _update_baseline(self, h):
        """Exponentially weighted mean and variance of each hospital's NEDOCS (CLOSURE_BASELINE_H)."""
        if h == 0:
            self.baseline_mean = self.nedocs[0].copy()
            return
        d = self.nedocs[h] - self.baseline_mean
        w = self.baseline_weight
        self.baseline_mean = self.baseline_mean + w * d
        self.baseline_var = (1.0 - w) * (self.baseline_var + w * d * d)

    def _state(self) -> HospitalState:
        return HospitalState(
            census=self.census,
            boarders=self.boarders,
            longest_boarder_h=self.longest_boarder_h,
            last_wait_h=self.last_wait_h,
            nedocs=self.nedocs,
            ems_arrivals=self.ems_arrivals,
            walk_in_arrivals=self.walk_in_arrivals,
            diverted_away=self.diverted_away,
            closed=self.closed,
            closure_start=self.closure_start,
            closure_hazard=self.closure_hazard,
            open_at_hour_start=self.open_at_hour_start,
            closed_until=self.closed_until,
            closures=np.array(self.closures, dtype=float).reshape(-1, 3),
            beds=self.beds,
            elective_icu_admitted=self.electives.admitted,
            elective_icu_cancelled=self.electives.cancelled,
            elective_icu_moved_out=self.electives.moved_out,
        )


class _ElectiveIcu:
    """Elective post-operative ICU stays: census only (no pathways, events or labels), see TARGET_ICU_OCCUPANCY.

    Arrivals come daily ELECTIVE_FROM_H-ELECTIVE_UNTIL_H; one is admitted when the ICU's census of the next
    hour leaves a bed free and no emergency waits for one, else it is cancelled (counted). An elective stay is cut
    short at the next hour when an emergency took its bed. Census moves through the loop's `delta` like every
    other stay: +1 from the hour after admission, -1 at the hour of leaving.
    """

    def __init__(self, cfg, drivers, beds, n):
        window = (drivers.hour_of_day >= ELECTIVE_FROM_H) & (drivers.hour_of_day < ELECTIVE_UNTIL_H)
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_ELECTIVE_ICU]))
        self.arrivals = self.rng.poisson(window[:, None] * beds.elective_icu_per_h[None, :])  # (H, N)
        self.icu_beds = beds.beds[:, U_ICU]
        self.last = cfg.hours + pad_hours(cfg)  # the loop's last delta row
        self.hospital = np.zeros(0, dtype=np.int64)
        self.leave = np.zeros(0, dtype=np.int64)  # hour whose delta holds the stay's -1
        self.admitted = self.cancelled = self.moved_out = 0

    def movable(self, h):
        """(N,) elective patients still in the ICU at hour h + 1, whose beds an emergency may take."""
        return np.bincount(self.hospital[self.leave > h + 1], minlength=self.icu_beds.size)

    def make_room(self, h, now, delta):
        """Move elective patients out at h + 1 where the emergencies bedded in hour h overfill the ICU."""
        over = now[:, U_ICU] + delta[h + 1, :, U_ICU] - self.icu_beds
        for i in np.nonzero(over > 0)[0]:  # rare: only hospitals whose ICU is full
            mine = np.nonzero((self.hospital == i) & (self.leave > h + 1))[0]
            out = mine[np.argsort(self.leave[mine], kind="stable")[: over[i]]]
            np.add.at(delta, (self.leave[out], i, U_ICU), 1)
            delta[h + 1, i, U_ICU] -= out.size
            self.leave[out] = h + 1
            self.moved_out += out.size

    def admit(self, h, now, delta, icu_waiting):
        """Admit this hour's elective arrivals into the beds free at h + 1; cancel the rest."""
        self.hospital, self.leave = self.hospital[self.leave > h], self.leave[self.leave > h]
        room = self.icu_beds - (now[:, U_ICU] + delta[h + 1, :, U_ICU])
        k = np.where(icu_waiting > 0, 0, np.minimum(self.arrivals[h], np.maximum(room, 0)))
        self.cancelled += int(self.arrivals[h].sum() - k.sum())
        if not k.any():
            return
        hospital = np.repeat(np.arange(k.size), k)
        stay_h = np.exp(
            np.log(24.0 * ICU_ELECTIVE_LOS_DAYS)
            - ICU_ELECTIVE_SIGMA**2 / 2
            + ICU_ELECTIVE_SIGMA * self.rng.standard_normal(hospital.size)
        )
        leave = np.minimum(h + 1 + np.maximum(np.round(stay_h), 1).astype(np.int64), self.last)
        np.add.at(delta, (np.full(hospital.size, h + 1), hospital, U_ICU), 1)
        np.add.at(delta, (leave, hospital, U_ICU), -1)
        self.hospital, self.leave = np.concatenate([self.hospital, hospital]), np.concatenate([self.leave, leave])
        self.admitted += hospital.size


def _group_mean(x, group, n):
    total = np.bincount(group, weights=x, minlength=n)
    count = np.bincount(group, minlength=n)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _group_max(x, group, n):
    out = np.zeros(n)
    np.maximum.at(out, group, x)
    return out


# ----------------------------------------------------------------------------------------------------------
# Beds and nurses, sized before the simulation


def size_beds(cfg: SyntheticConfig, city: City, arrivals: Arrivals) -> Beds:
    """Beds per hospital and unit so that ED-admitted patients fill TARGET_OCCUPANCY on average.

    The expected census uses the arrival list and the disposition model with its own noise draw (a fixed
    stream), ignoring waits and readmissions; the realised occupancy is a calibration check.
    """
    n, nu = city.n_hospitals, len(UNITS)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_BED_SIZING]))
    noise = rng.normal(0, SEVERITY_SD, arrivals.onset_time.size)
    severity = triage_severity_mean(arrivals.age, arrivals.ems, arrivals.mci_category) + noise
    p_icu, p_ward = disposition_probs(severity, arrivals.age)
    unit = ward_unit(arrivals.icd_chapter, arrivals.age)
    los = np.array([UNIT_LOS_DAYS.get(u, 0.0) for u in UNITS])
    # an ambulance patient goes to the nearest other hospital while its own is closed (small EDs next to large
    # ones absorbed enough of this to run their wards at 95-97 % when beds were sized without it)
    distance = city.distance_km + np.diag(np.full(n, np.inf))
    diverted = arrivals.ems * EXPECTED_CLOSED_SHARE
    hospital = np.concatenate([arrivals.district_hospital, np.argmin(distance, axis=1)[arrivals.district_hospital]])
    weight = np.concatenate([1.0 - diverted, diverted]) / cfg.days
    p_icu, p_ward, unit = (np.tile(x, 2) for x in (p_icu, p_ward, unit))
    census = np.zeros((n, nu))  # expected (N, U)
    np.add.at(census, (hospital, U_ICU), weight * p_icu * ICU_DEMAND_FACTOR * ICU_LOS_DAYS)
    np.add.at(census, (hospital, unit), weight * (p_ward + p_icu) * los[unit])
    beds = np.maximum(MIN_UNIT_BEDS, np.round(census / TARGET_OCCUPANCY)).astype(np.int64)
    beds[:, U_ICU] = np.maximum(MIN_UNIT_BEDS, np.round(census[:, U_ICU] / ICU_ED_SHARE / TARGET_ICU_OCCUPANCY))
    # elective ICU admissions per hour of their daily window: an elective finding no free bed is cancelled, so the
    # offered load is the one whose carried load fills the target (Erlang's loss formula, emergencies included)
    offered = _offered_load(beds[:, U_ICU], beds[:, U_ICU] * TARGET_ICU_OCCUPANCY)
    window_share = (ELECTIVE_UNTIL_H - ELECTIVE_FROM_H) / 24
    elective_per_h = np.maximum(offered - census[:, U_ICU], 0.0) / (24.0 * ICU_ELECTIVE_LOS_DAYS) / window_share
    beds[:, U_ED] = city.ed_beds
    limit_day = np.array([1.0 / ED_NURSES_PER_BED / 1.0, *[PPUGV_LIMIT[u][0] for u in UNITS[1:]]])
    limit_night = np.array([1.5 / ED_NURSES_PER_BED, *[PPUGV_LIMIT[u][1] for u in UNITS[1:]]])
    expected = beds * TARGET_OCCUPANCY
    expected[:, U_ED] = beds[:, U_ED] * 0.8
    expected[:, U_ICU] = beds[:, U_ICU] * TARGET_ICU_OCCUPANCY
    nurses = np.stack(
        [np.ceil(expected / limit_day * STAFF_SLACK), np.ceil(expected / limit_night * STAFF_SLACK)], axis=-1
    ).astype(np.int64)  # (N, U, 2) day, night
    return Beds(
        beds=beds,
        nurses=nurses,
        patients_per_nurse_limit=np.stack([limit_day, limit_night], -1),
        elective_icu_per_h=elective_per_h,
    )


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


# ----------------------------------------------------------------------------------------------------------
# The tables


def hourly_frame(cfg: SyntheticConfig, city: City, state: HospitalState) -> pd.DataFrame:
    """SyntheticData.hospital_hourly: one row per hour and hospital."""
    H, n = cfg.hours, city.n_hospitals
    hh, ii = np.meshgrid(np.arange(H), np.arange(n), indexing="ij")
    census = state.census
    beds = state.beds.beds
    return pd.DataFrame(
        {
            "hospital": pd.Categorical.from_codes(ii.ravel(), categories=list(cfg.hospitals)),
            "time": pd.Timestamp(cfg.start) + pd.to_timedelta(hh.ravel(), unit="h"),
            "ed_census": census[:, :, U_ED].ravel(),
            "ed_beds": np.broadcast_to(beds[:, U_ED], (H, n)).ravel(),
            "ed_boarders": state.boarders.ravel(),
            "longest_boarder_h": state.longest_boarder_h.ravel().astype(np.float32),
            "icu_census": census[:, :, U_ICU].ravel(),
            "icu_beds": np.broadcast_to(beds[:, U_ICU], (H, n)).ravel(),
            "ward_census": census[:, :, 2:].sum(-1).ravel(),
            "ward_beds": np.broadcast_to(beds[:, 2:].sum(-1), (H, n)).ravel(),
            "nedocs": state.nedocs.ravel().astype(np.float32),
            "ems_arrivals": state.ems_arrivals.ravel(),
            "walk_in_arrivals": state.walk_in_arrivals.ravel(),
            "ems_diverted_away": state.diverted_away.ravel(),
            "closed_to_ems": state.closed.ravel(),
            "closure_start": state.closure_start.ravel(),
            # a closure is running at the hour's start, so no new one can start in it (eval/closures.py's unit)
            "closed_at_hour_start": ~state.open_at_hour_start.ravel(),
            "closure_hazard": state.closure_hazard.ravel().astype(np.float32),
        }
    )


def hospital_frame(cfg: SyntheticConfig, city: City, state: HospitalState) -> pd.DataFrame:
    """One row per hospital of the simulated city, as a hospital would describe itself: the simulated volume
    (scale x the catalogue's visits), the sized beds, the level of care (cities.py)."""
    beds = state.beds.beds  # (N, U)
    return pd.DataFrame(
        {
            "hospital": list(cfg.hospitals),
            "ed_visits_per_year": np.round(city.ed_visits_per_year).astype(np.int64),
            "beds": beds[:, 1:].sum(1),  # inpatient: ICU and wards
            "icu_beds": beds[:, U_ICU],
            "ward_beds": beds[:, 2:].sum(1),
            "ed_beds": beds[:, U_ED],
            "care_level": np.array([HOSPITALS[h].care_level for h in cfg.hospitals], dtype=np.int64),
        }
    )
