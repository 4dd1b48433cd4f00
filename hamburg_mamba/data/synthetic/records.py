"""Typed records the generator's stages hand to each other.

Dimension letters: H simulated hours, N hospitals, U units (constants.UNITS: ED, ICU, then the wards),
M arrivals or pathways (one row each), S staff shifts, E event rows, C closures. Times are float64 hours since
`SyntheticConfig.start`; NaN where a pathway never reached the step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

FLOAT = {"dtype": np.float64, "fill": np.nan}
INT = {"dtype": np.int64, "fill": -1}
BOOL = {"dtype": bool, "fill": False}


class Columns:
    """Mixin of dataclass records whose fields are arrays sharing their first dimension (one entry per row)."""

    def select(self, index):
        """The record of the rows `index` (a slice, mask or row numbers) selects."""
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concat(cls, parts):
        """The rows of `parts` one after another; a part may be a subclass record (its extra fields are left)."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def copy(self):
        return type(self)(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    @classmethod
    def filled(cls, size: int):
        """`size` rows of each field's fill value (NaN, -1 or False), for records declared with FLOAT/INT/BOOL."""
        return cls(**{f.name: np.full(size, f.metadata["fill"], dtype=f.metadata["dtype"]) for f in fields(cls)})


# ----------------------------------------------------------------------------------------------------------
# City and drivers


@dataclass
class City:
    """The simulated hospitals' sizes and geography (city.build_city)."""

    n_hospitals: int
    ed_visits_per_year: np.ndarray  # (N,) simulated volume: the catalogue's 2016 visits x scale
    arrivals_per_hour: np.ndarray  # (N,) mean first arrivals per hour before the profiles
    distance_km: np.ndarray  # (N, N) straight-line distance between the hospitals
    ed_beds: np.ndarray  # (N,) int64 ED treatment places


@dataclass
class Drivers:
    """City-level hourly drivers of demand (city.city_drivers); each array (H,), evaluated at mid-hour."""

    hour_of_day: np.ndarray  # float hours in [0, 24)
    day_of_week: np.ndarray  # int64, 0 Monday
    day: np.ndarray  # int64 days since the start's midnight
    heat_wave: np.ndarray  # bool
    flu_share: np.ndarray  # expected influenza share of all ED visits
    diurnal: np.ndarray  # arrival profile over the day, mean 1
    weekly: np.ndarray  # arrival profile over the week, mean 1
    seasonal: np.ndarray  # annual arrival cosine around 1
    frame: pd.DataFrame  # SyntheticData.drivers: time, temperature_c, heat_wave, flu_share_expected


# ----------------------------------------------------------------------------------------------------------
# Arrivals


@dataclass
class Arrivals(Columns):
    """Patients reaching the system, one row each, sorted by onset time (arrivals.draw_arrivals)."""

    onset_time: np.ndarray  # (M,) the emergency call or the walk-in's start, hours
    district_hospital: np.ndarray  # (M,) int64 hospital whose district the onset lies in (the walk-in's ED)
    arrival_kind: np.ndarray  # (M,) int64: 0 walk-in, 1 EMS, 2 heat excess, 3 flu, 4 MCI, 5 readmission
    ems: np.ndarray  # (M,) bool: comes by ambulance
    age: np.ndarray  # (M,) years
    icd_chapter: np.ndarray  # (M,) int64 index into constants.ICD_CHAPTERS
    mci_category: np.ndarray  # (M,) int64 MANV sorting category SK I/II/III as 0/1/2, -1 outside the incident


@dataclass
class Readmissions(Arrivals):
    """Readmissions due in an hour: arrivals of subjects already known (course.schedule_readmissions)."""

    subject_id: np.ndarray  # (M,) int64
    sex: np.ndarray  # (M,) int64, 1 female
    previous_row: np.ndarray  # (M,) int64 pathway row of the stay this one readmits


# ----------------------------------------------------------------------------------------------------------
# Pathways: one row per ED visit and the inpatient stay that follows it


@dataclass
class Pathways(Columns):
    """Every pathway's realised course and the latent quantities it was drawn from (the ground truth).

    All fields are (M,) arrays; rows are appended hour by hour (course.PathwayStore) in order of processing.
    """

    # times, hours since the start
    onset_time: np.ndarray = field(metadata=FLOAT)
    arrival_time: np.ndarray = field(metadata=FLOAT)  # at the ED
    physician_time: np.ndarray = field(metadata=FLOAT)  # first physician contact
    ready_time: np.ndarray = field(metadata=FLOAT)  # end of ED treatment (disposition)
    bed_time: np.ndarray = field(metadata=FLOAT)  # inpatient bed; NaN if sent home or still boarding
    end_time: np.ndarray = field(metadata=FLOAT)  # leaves the hospital (home, discharge or death)
    adverse_event_time: np.ndarray = field(metadata=FLOAT)
    icu_in_time: np.ndarray = field(metadata=FLOAT)
    icu_out_time: np.ndarray = field(metadata=FLOAT)
    death_time: np.ndarray = field(metadata=FLOAT)
    # the patient and the latent severity trajectory (course.severity_at)
    age: np.ndarray = field(metadata=FLOAT)
    severity_onset: np.ndarray = field(metadata=FLOAT)
    severity_physician: np.ndarray = field(metadata=FLOAT)  # after the untreated drift
    severity_settled: np.ndarray = field(metadata=FLOAT)  # level the severity relaxes to after the physician
    relaxation_h: np.ndarray = field(metadata=FLOAT)  # time constant of that relaxation
    drift_per_h: np.ndarray = field(metadata=FLOAT)  # severity rise per untreated hour
    # the ED
    wait_h: np.ndarray = field(metadata=FLOAT)  # arrival to first physician
    delay_beyond_target_h: np.ndarray = field(metadata=FLOAT)  # wait beyond the Manchester target
    treatment_h: np.ndarray = field(metadata=FLOAT)
    ed_occupancy_at_arrival: np.ndarray = field(metadata=FLOAT)  # ED census / ED beds when the arrival is processed
    ems_response_min: np.ndarray = field(metadata=FLOAT)  # call to scene; NaN for walk-ins
    ems_transport_min: np.ndarray = field(metadata=FLOAT)  # scene to ED, diversion included; NaN for walk-ins
    p_disposition_icu: np.ndarray = field(metadata=FLOAT)
    p_disposition_ward: np.ndarray = field(metadata=FLOAT)
    # the inpatient stay
    nurse_load_ratio: np.ndarray = field(metadata=FLOAT)  # unit census per scheduled day nurse / PpUGV limit at bed
    admission_strain: np.ndarray = field(metadata=FLOAT)  # strain index of the adverse-event hazard (course.py)
    planned_ward_stay_h: np.ndarray = field(metadata=FLOAT)  # without death or ICU transfer
    icu_stay_h: np.ndarray = field(metadata=FLOAT)  # drawn for every pathway, used by those with an ICU stay
    # the outcome draws (integrated out by the oracles)
    # unit exponential: the adverse event happens when the cumulative hazard of the stay passes it
    adverse_event_threshold: np.ndarray = field(metadata=FLOAT)
    fatality_uniform: np.ndarray = field(metadata=FLOAT)  # uniform: the event is fatal below fatal_probability
    icu_death_threshold: np.ndarray = field(metadata=FLOAT)  # unit exponential of the cumulated ICU death hazard
    p_readmission: np.ndarray = field(metadata=FLOAT)  # 30-day readmission probability at the end of the stay
    # identities and categories
    subject_id: np.ndarray = field(metadata=INT)
    hospital: np.ndarray = field(metadata=INT)  # the ED that treats the patient
    district_hospital: np.ndarray = field(metadata=INT)  # Arrivals.district_hospital (differs when diverted)
    arrival_kind: np.ndarray = field(metadata=INT)  # Arrivals.arrival_kind
    icd_chapter: np.ndarray = field(metadata=INT)
    mci_category: np.ndarray = field(metadata=INT)
    triage_group: np.ndarray = field(metadata=INT)  # Manchester group 1 (red) .. 5 (blue)
    disposition: np.ndarray = field(metadata=INT)  # 0 home, 1 ward, 2 ICU
    first_unit: np.ndarray = field(metadata=INT)  # unit index of the bed after the ED (the ED for home)
    ward_unit: np.ndarray = field(metadata=INT)  # the ward of the stay (also of a direct ICU admission)
    sex: np.ndarray = field(metadata=INT)  # 1 female
    previous_row: np.ndarray = field(metadata=INT)  # row of the stay a readmission follows, -1 for a first visit
    row: np.ndarray = field(metadata=INT)  # the pathway's own row (pathway_id - 1)
    ems: np.ndarray = field(metadata=BOOL)
    diverted: np.ndarray = field(metadata=BOOL)  # taken past a closed nearest hospital
    adverse_event: np.ndarray = field(metadata=BOOL)
    fatal: np.ndarray = field(metadata=BOOL)  # the adverse event killed the patient
    icu_after_adverse_event: np.ndarray = field(metadata=BOOL)  # the drawn ICU decision after a non-fatal event
    died: np.ndarray = field(metadata=BOOL)
    readmitted: np.ndarray = field(metadata=BOOL)  # the 30-day readmission was drawn (it may fall after the window)


# ----------------------------------------------------------------------------------------------------------
# Hospitals hour by hour


@dataclass
class Beds:
    """Beds and nurses per hospital and unit, sized before the simulation (hospital.size_beds)."""

    beds: np.ndarray  # (N, U) int64
    nurses: np.ndarray  # (N, U, 2) int64 nurses scheduled per day and night shift
    patients_per_nurse_limit: np.ndarray  # (U, 2) PpUGV limit day, night (the ED's from ED_NURSES_PER_BED)
    elective_icu_per_h: np.ndarray  # (N,) elective ICU arrivals per hour of their daily window


@dataclass
class HospitalState:
    """What each hospital went through, hour by hour (hospital.simulate_city); arrays (H, N) unless noted."""

    census: np.ndarray  # (H, N, U) int64 patients during the hour, after its arrivals
    boarders: np.ndarray  # int64 admitted patients still waiting in the ED for a bed at the hour's end
    longest_boarder_h: np.ndarray  # the longest of those waits
    last_wait_h: np.ndarray  # mean wait to the physician of the hour's arrivals (0 without arrivals)
    nedocs: np.ndarray  # NEDOCS score (Weiss 2004)
    ems_arrivals: np.ndarray  # int64 ambulance patients routed to the hospital in the hour
    walk_in_arrivals: np.ndarray  # int64
    diverted_away: np.ndarray  # int64 ambulance patients of its district taken elsewhere
    closed: np.ndarray  # bool closed to ambulances at mid-hour
    closure_start: np.ndarray  # bool a closure started in the hour
    closure_hazard: np.ndarray  # hourly probability that a closure starts, were the hospital open
    open_at_hour_start: np.ndarray  # bool no closure running at the hour's start (one may start in it)
    closed_until: np.ndarray  # end time of the latest closure, as known after the hour
    closures: np.ndarray  # (C, 3) hospital, start, end of every closure
    beds: Beds
    elective_icu_admitted: int
    elective_icu_cancelled: int  # no free ICU bed, or an emergency waited for one
    elective_icu_moved_out: int  # cut short because an emergency needed the bed


# ----------------------------------------------------------------------------------------------------------
# Staff, events, labels


@dataclass
class StaffShifts:
    """Nurses per hospital, unit and shift (staff.staff_shifts); arrays (S, N, U) unless noted."""

    n_shifts: int
    patients_per_nurse: np.ndarray  # mean census / nurses present
    violation: np.ndarray  # bool patients per nurse above the PpUGV limit
    p_violation: np.ndarray  # its probability over the sick-leave draw (the oracle)
    expected_patients_per_nurse: np.ndarray  # expectation over the sick-leave draw (the oracle)
    ppugv_unit: np.ndarray  # (U,) bool the unit has a PpUGV limit (every unit but the ED)
    frame: pd.DataFrame  # SyntheticData.staff_shifts


@dataclass
class EventRows(Columns):
    """The event rows of all pathways before sorting (events.pathway_events); each field (E,)."""

    pathway_row: np.ndarray  # int64
    time: np.ndarray  # hours, NaN for a static fact (sex)
    code: np.ndarray  # int64 id into the code names
    value: np.ndarray  # numeric value, NaN where none
    stage: np.ndarray  # int64 id of events.STAGE_ID
    unit: np.ndarray  # int64 unit index, -1 where none
    order: np.ndarray  # int64 rank of the event among those at the same time
    text: np.ndarray  # object text value or None


@dataclass
class SortedEvents(Columns):
    """Keys of the event rows in the order of the MEDS events table (events.events_frame); each field (E,)."""

    time: np.ndarray  # hours, NaN for a static fact
    pathway_row: np.ndarray  # int64
    unit: np.ndarray  # int64, -1 where none
    stage: np.ndarray  # int64 id of events.STAGE_ID


@dataclass
class CourseOracles:
    """True probabilities of the course labels per prediction row (labels.course_oracles); each (R,)."""

    adverse_event_24h: np.ndarray  # P(adverse event in (t, t + 24] | none by t)
    death: np.ndarray  # P(death in hospital after t | alive at t)
    icu_24h: np.ndarray  # P(ICU admission in (t, t + 24])
