"""Stage 6a: the MEDS event rows of every pathway (static facts, EMS, ED, stay, vitals) and their table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hamburg_mamba.data.synthetic.config import SyntheticConfig
from hamburg_mamba.data.synthetic.constants import (
    EMS_ON_SCENE_MIN,
    ICD_CHAPTERS,
    ICD_FLU,
    SIM_DTYPE,
    TRIAGE_AFTER_ARRIVAL_H,
    U_ED,
    U_ICU,
    UNITS,
    VITALS,
    VITALS_EVERY_H,
)
from hamburg_mamba.data.synthetic.course import HOME, ICU, severity_at
from hamburg_mamba.data.synthetic.records import EventRows, Pathways, SortedEvents

STAGE_ID = {"static": 0, "EMS": 1, "ED": 2, "ward": 3, "ICU": 4, "discharge": 5}

# What a real record holds on each event row, and from when: every column of `events_frame` -> the event of the
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
EMS_VITALS_AFTER_SCENE_H = 5 / 60  # the crew's one set of vitals, minutes after reaching the scene
VITALS_AFTER_BED_H = 0.25  # first vitals on a ward or in the ICU after the patient arrives there
SICK_ON_WARD_SEVERITY = 1.5  # severity at the physician above which the ward measures at VITALS_EVERY_H["ward_sick"]
VITALS_ORDER = 4  # Event order of vitals among the events at the same time


class _Codes:
    """Code strings by id; ids are assigned in first-use order, which is fixed by the code below (the id is the
    last sort key of events at the same time, so that order is part of the output)."""

    def __init__(self):
        self.names: list[str] = []
        self.ids: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        if name not in self.ids:
            self.ids[name] = len(self.names)
            self.names.append(name)
        return self.ids[name]


@dataclass
class _VitalsSegment:
    """Vitals of `rows` from `start` every `every` hours until `end` (one set at `start` without an end)."""

    rows: np.ndarray
    start: np.ndarray
    stage: int
    unit: np.ndarray | int
    end: np.ndarray | None = None
    every: np.ndarray | None = None


class _EventBuilder:
    """Event rows collected family by family (one `add` per code family), concatenated in that order."""

    def __init__(self):
        self.codes = _Codes()
        self.parts: list[EventRows] = []
        self.vitals: list[_VitalsSegment] = []

    def add(self, rows, t, code, value=None, stage="ED", unit=None, order=0, text=None):
        rows = np.asarray(rows, dtype=np.int64)
        size = rows.size
        self.parts.append(
            EventRows(
                pathway_row=rows,
                time=np.asarray(t, dtype=SIM_DTYPE) if t is not None else np.full(size, np.nan),
                code=np.full(size, self.codes(code)) if isinstance(code, str) else np.asarray(code),
                value=np.full(size, np.nan) if value is None else np.asarray(value, dtype=SIM_DTYPE),
                stage=np.full(size, STAGE_ID[stage]) if isinstance(stage, str) else np.asarray(stage),
                unit=np.full(size, -1) if unit is None else np.asarray(unit),
                order=np.full(size, order),
                text=np.full(size, None, dtype=object) if text is None else text,
            )
        )


def pathway_events(cfg: SyntheticConfig, pathways: Pathways, rng: np.random.Generator) -> tuple[EventRows, list[str]]:
    """Every event row of every pathway (unsorted) and the code names its code ids index. Nothing after the end
    of the simulated window is emitted (administrative censoring)."""
    build = _EventBuilder()
    _static_and_ems(build, pathways)
    _ed(build, cfg, pathways)
    _stay(build, pathways)
    _vitals_rows(build, pathways, rng)
    rows = EventRows.concat(build.parts)
    keep = np.isnan(rows.time) | (rows.time < cfg.hours)
    return rows.select(keep), build.codes.names


def _static_and_ems(build: _EventBuilder, pw: Pathways):
    codes, add = build.codes, build.add
    every = np.arange(pw.row.size)
    # Static subject facts, emitted with the subject's first pathway: sex (null time) and birth.
    first = every[pw.previous_row < 0]
    sex_code = np.where(pw.sex[first] == 1, codes("SEX//F"), codes("SEX//M"))
    add(first, None, sex_code, stage="static", order=-2)
    birth = pw.onset_time[first] - pw.age[first] * 24 * 365.25
    add(first, birth, "MEDS_BIRTH", stage="static", order=-1)

    e = every[pw.ems]
    on_scene = pw.onset_time[e] + pw.ems_response_min[e] / 60
    leave = on_scene + EMS_ON_SCENE_MIN / 60
    add(e, pw.onset_time[e], "EMS//DISPATCH", stage="EMS", order=0)
    add(e, on_scene, "EMS//ON_SCENE", pw.ems_response_min[e], stage="EMS", order=1)
    mci = e[pw.mci_category[e] >= 0]
    sk_names = np.array([codes("MANV//SK_I"), codes("MANV//SK_II"), codes("MANV//SK_III")])
    mci_on_scene = pw.onset_time[mci] + pw.ems_response_min[mci] / 60
    add(mci, mci_on_scene, sk_names[pw.mci_category[mci]], stage="EMS", order=2)
    build.vitals.append(_VitalsSegment(e, on_scene + EMS_VITALS_AFTER_SCENE_H, STAGE_ID["EMS"], -1))
    # the departure: the destination is chosen now; the transport's duration is known at the arrival (below)
    add(e, leave, "EMS//TRANSPORT", stage="EMS", order=3, text=np.where(pw.diverted[e], "diverted", None))


def _ed(build: _EventBuilder, cfg: SyntheticConfig, pw: Pathways):
    codes, add = build.codes, build.add
    n = pw.row.size
    every = np.arange(n)
    in_ed = np.full(n, U_ED)
    add(every, pw.arrival_time, "ED//ARRIVAL", pw.ems_transport_min, stage="ED", unit=in_ed, order=0)
    triage = pw.arrival_time + TRIAGE_AFTER_ARRIVAL_H
    add(every, triage, "ED//TRIAGE", pw.triage_group, stage="ED", unit=in_ed, order=1)
    add(every, pw.physician_time, "ED//PHYSICIAN", pw.wait_h * 60, stage="ED", unit=in_ed, order=1)
    icd_ids = np.array([codes(f"ICD10GM//{c}") for c in ICD_CHAPTERS])
    add(every, pw.ready_time, icd_ids[pw.icd_chapter], stage="ED", unit=in_ed, order=2)
    disposition_ids = np.array(
        [codes("ED//DISPOSITION//HOME"), codes("ED//DISPOSITION//WARD"), codes("ED//DISPOSITION//ICU")]
    )
    add(every, pw.ready_time, disposition_ids[pw.disposition], stage="ED", unit=in_ed, order=3)
    home = every[pw.disposition == HOME]
    add(home, pw.ready_time[home], "ED//DISCHARGE", stage="discharge", unit=np.full(home.size, U_ED), order=9)
    # a patient still boarding when the window closes is measured until it closes
    ed_exit = np.where(pw.disposition == HOME, pw.ready_time, pw.bed_time)
    ed_exit = np.where(np.isnan(ed_exit), cfg.hours, ed_exit)
    every_h = np.where(pw.triage_group <= 2, VITALS_EVERY_H["ED"], VITALS_EVERY_H["ED_stable"])
    build.vitals.append(_VitalsSegment(every, triage, STAGE_ID["ED"], U_ED, ed_exit, every_h))


def _stay(build: _EventBuilder, pw: Pathways):
    add = build.add
    a = np.arange(pw.row.size)[(pw.disposition > HOME) & ~np.isnan(pw.bed_time)]  # admitted and bedded
    first_unit = pw.first_unit[a]
    add(
        a,
        pw.bed_time[a],
        "ADT//ADMIT",
        pw.bed_time[a] - pw.ready_time[a],
        stage=np.where(first_unit == U_ICU, STAGE_ID["ICU"], STAGE_ID["ward"]),
        unit=first_unit,
        order=0,
    )
    has_icu = ~np.isnan(pw.icu_in_time[a])
    end = pw.end_time[a]
    ward_every = np.where(
        pw.severity_physician[a] > SICK_ON_WARD_SEVERITY, VITALS_EVERY_H["ward_sick"], VITALS_EVERY_H["ward"]
    )
    first_ward_end = np.where(has_icu, pw.icu_in_time[a], end)
    direct = pw.disposition[a] == ICU
    ward = a[~direct]
    build.vitals.append(
        _VitalsSegment(
            ward,
            pw.bed_time[ward] + VITALS_AFTER_BED_H,
            STAGE_ID["ward"],
            pw.ward_unit[ward],
            first_ward_end[~direct],
            ward_every[~direct],
        )
    )
    icu = a[has_icu]
    build.vitals.append(
        _VitalsSegment(
            icu,
            pw.icu_in_time[icu] + VITALS_AFTER_BED_H,
            STAGE_ID["ICU"],
            np.full(icu.size, U_ICU),
            pw.icu_out_time[icu],
            np.full(icu.size, VITALS_EVERY_H["ICU"]),
        )
    )
    steps_down = pw.icu_out_time[icu] < pw.end_time[icu]
    step_down = icu[steps_down]
    build.vitals.append(
        _VitalsSegment(
            step_down,
            pw.icu_out_time[step_down] + VITALS_AFTER_BED_H,
            STAGE_ID["ward"],
            pw.ward_unit[step_down],
            pw.end_time[step_down],
            ward_every[has_icu][steps_down],
        )
    )
    transfer = icu[~direct[has_icu]]
    add(
        transfer,
        pw.icu_in_time[transfer],
        "ADT//TRANSFER_ICU",
        stage="ICU",
        unit=np.full(transfer.size, U_ICU),
        order=1,
    )
    add(
        step_down,
        pw.icu_out_time[step_down],
        "ADT//TRANSFER_WARD",
        stage="ward",
        unit=pw.ward_unit[step_down],
        order=1,
    )
    ae = a[pw.adverse_event[a]]
    ae_time, icu_in = pw.adverse_event_time[ae], pw.icu_in_time[ae]
    in_icu = ~np.isnan(icu_in) & (icu_in <= ae_time) & (ae_time < pw.icu_out_time[ae])
    add(
        ae,
        ae_time,
        "ADVERSE_EVENT",
        stage=np.where(in_icu, STAGE_ID["ICU"], STAGE_ID["ward"]),
        unit=np.where(in_icu, U_ICU, pw.ward_unit[ae]),
        order=5,
    )
    dead, alive = a[pw.died[a]], a[~pw.died[a]]

    def last_unit(r):
        ends_in_icu = ~np.isnan(pw.icu_out_time[r]) & (pw.icu_out_time[r] >= pw.end_time[r])
        return np.where(ends_in_icu, U_ICU, pw.ward_unit[r])

    add(dead, pw.death_time[dead], "MEDS_DEATH", stage="discharge", unit=last_unit(dead), order=9)
    add(alive, pw.end_time[alive], "ADT//DISCHARGE", stage="discharge", unit=last_unit(alive), order=9)


def _vitals_rows(build: _EventBuilder, pw: Pathways, rng: np.random.Generator):
    """The vitals series (len(VITALS) codes per measurement time), vectorised over all segments."""
    rows, times, stages, units = [], [], [], []
    for seg in build.vitals:
        if seg.end is None:  # a single measurement
            rows.append(seg.rows)
            times.append(seg.start)
            stages.append(np.full(seg.rows.size, seg.stage))
            units.append(np.full(seg.rows.size, seg.unit))
            continue
        n_meas = np.maximum(np.floor((seg.end - seg.start) / seg.every).astype(np.int64) + 1, 0)
        n_meas = np.where(seg.end > seg.start, n_meas, 1)  # a segment shorter than its first offset still gets one set,
        offsets = np.concatenate([[0], np.cumsum(n_meas)])
        owner = np.repeat(np.arange(seg.rows.size), n_meas)
        k = np.arange(offsets[-1]) - offsets[owner]  # taken at the segment's end, never after it (nor after discharge)
        rows.append(seg.rows[owner])
        times.append(np.minimum(seg.start[owner] + k * seg.every[owner], seg.end[owner]))
        stages.append(np.full(owner.size, seg.stage))
        units.append(np.broadcast_to(seg.unit, seg.rows.shape)[owner])
    rows, times, stages, units = (np.concatenate(x) for x in (rows, times, stages, units))
    values = vitals(pw, rows, times, rng)  # (n_meas, len(VITALS))
    codes = np.array([build.codes(f"VITAL//{v}") for v in VITALS])
    n, k = rows.size, len(VITALS)
    build.add(
        np.repeat(rows, k),
        np.repeat(times, k),
        np.tile(codes, n),
        values.reshape(-1),
        stage=np.repeat(stages, k),
        unit=np.repeat(units, k),
        order=VITALS_ORDER,
    )


def vitals(pathways: Pathways, rows: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(len(rows), len(VITALS)) vitals at times t from the latent severity, clipped to physiological ranges."""
    pw = pathways
    s = severity_at(pw, rows, t)
    m = rows.size
    icd = pw.icd_chapter[rows]
    respiratory = (icd == ICD_CHAPTERS.index("J00-J99")) | (icd == ICD_FLU)
    infection = respiratory | (icd == 0)
    resp_rate = np.clip(np.round(15 + 3.2 * s + 2 * respiratory + rng.normal(0, 1.5, m)), 4, 60)
    spo2_true = 97.5 - 2.2 * np.maximum(s, 0) - 2.0 * respiratory + rng.normal(0, 1.0, m)
    oxygen = (spo2_true < 92) | (s > 2.2)
    spo2 = np.clip(np.round(spo2_true + 3.0 * oxygen), 60, 100)
    sbp = np.clip(np.round(128 - 11 * s + rng.normal(0, 10, m)), 50, 250)
    pulse = np.clip(np.round(78 + 11 * s + 6 * infection + rng.normal(0, 8, m)), 25, 220)
    acvpu = np.clip(np.floor((s - 2.2) * 1.2 + rng.random(m)), 0, 4)
    temp = np.clip(np.round(36.9 + 0.25 * s + 1.0 * infection * (s > 0) + rng.normal(0, 0.3, m), 1), 33, 42)
    return np.stack([resp_rate, spo2, oxygen.astype(float), sbp, pulse, acvpu, temp], axis=1)


# ----------------------------------------------------------------------------------------------------------
# The table


def events_frame(
    cfg: SyntheticConfig, pathways: Pathways, events: EventRows, code_names: list[str]
) -> tuple[pd.DataFrame, SortedEvents]:
    """MEDS data table, sorted by subject then time (null times first), with typed extra columns; and the keys
    of its rows the labels are issued on."""
    pw = pathways
    p = events.pathway_row
    subject = pw.subject_id[p]
    t = events.time
    no_time = np.isnan(t)
    order = np.lexsort((events.code, events.order, np.where(no_time, -np.inf, t), ~no_time, subject))
    p, t, no_time = p[order], t[order], no_time[order]
    start = np.datetime64(pd.Timestamp(cfg.start).to_datetime64(), "us")
    micro = np.round(np.where(no_time, 0, t) * 3.6e9).astype(np.int64)
    times = start + micro.astype("timedelta64[us]")
    times = np.where(no_time, np.datetime64("NaT"), times)
    names = np.array(code_names, dtype=object)
    code = events.code[order]
    value = events.value[order].astype(np.float32)
    unit = events.unit[order]
    stage = events.stage[order]
    attr = _pathway_attributes(cfg, pw, p, t, code, code_names)
    frame = pd.DataFrame(
        {
            "subject_id": subject[order],
            "time": pd.array(times, dtype="datetime64[us]"),
            "code": pd.array(names[code], dtype="str"),
            "numeric_value": pd.array(np.where(np.isnan(value), None, value), dtype="Float32"),
            "text_value": pd.array(events.text[order], dtype="str"),
            "pathway_id": pd.array(attr["pathway_id"], dtype="Int64"),
            "hospital": pd.array(attr["hospital"], dtype="str"),
            "stage": pd.array(np.array(list(STAGE_ID), dtype=object)[stage], dtype="str"),
            "unit": pd.array(np.where(unit >= 0, np.array(UNITS, dtype=object)[unit], None), dtype="str"),
            "triage_group": pd.array(attr["triage_group"], dtype="Int8"),
            "arrival_mode": pd.array(attr["arrival_mode"], dtype="str"),
        }
    )
    return frame, SortedEvents(time=t, pathway_row=p, unit=unit, stage=stage)


def _pathway_attributes(cfg, pathways, p, t, code, code_names) -> dict[str, np.ndarray]:
    """Each pathway attribute of FIELD_KNOWN_FROM per event row (object arrays): the pathway's value from the
    first of its revealing events on, None before (and on static rows, which precede every pathway event).

    p, t, code: (E,) pathway row, time (NaN for static facts) and code id of each event row."""
    pw = pathways
    per_pathway = {
        "pathway_id": pw.row + 1,
        "arrival_mode": np.where(pw.ems, "ambulance", "walk_in"),
        "hospital": np.array(cfg.hospitals, dtype=object)[pw.hospital],
        "triage_group": pw.triage_group,
    }
    out = {}
    for name, revealed_by in FIELD_KNOWN_FROM.items():
        if revealed_by == THE_EVENT:
            continue
        revealing = np.isin(code, [code_names.index(c) for c in revealed_by if c in code_names])
        known_from = np.full(pw.row.size, np.inf)
        np.minimum.at(known_from, p[revealing], t[revealing])
        known = t >= known_from[p]  # False for NaN times
        out[name] = np.where(known, per_pathway[name][p].astype(object), None)
    return out
