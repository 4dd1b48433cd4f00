"""Synthetic Hamburg: a seeded city simulation of emergency-care pathways with known true risks.

The generator runs in stages, one module each, that hand typed records (records.py) to the next; the numbers
they use are named once in constants.py. In the order a patient meets them:

1. city.py: the hospitals' sizes and distances, and the city's hourly drivers (daily, weekly and seasonal
   profiles, heat wave, influenza wave).
2. arrivals.py: every first arrival of the period at once (Poisson counts per hour, district and kind; heat-wave
   excess, influenza, one mass-casualty incident).
3. course.py: a patient's course: EMS routing, Manchester triage, the ED wait and its untreated drift, the
   disposition, the planned stays; once bedded, the adverse-event process, fatality, ICU stay and death; the
   30-day readmission.
4. hospital.py: the hourly loop over the city: beds and boarding, census, elective ICU stays, NEDOCS-driven
   closures to ambulances and the diversions they cause; beds and nurses sized before it.
5. staff.py: nurses per unit and shift, sick leave after overload, PpUGV ratio violations.
6. events.py and labels.py: the MEDS event table, the label tables, their oracles (the probability each label
   was drawn from, given the realised path) and the fair bound (hamburg_mamba.data.fair_bound).

generate.py runs them (`generate_synthetic`); config.py holds `SyntheticConfig` and `SyntheticData`.
Time inside the simulation is float64 hours since `SyntheticConfig.start` (local time, no DST shift).
"""

from hamburg_mamba.data.synthetic.config import CRISIS_DATES, EXTERNAL_PRESET, SyntheticConfig, SyntheticData
from hamburg_mamba.data.synthetic.constants import (
    CLOSURE_ALLOWED_FROM_H,
    CLOSURE_ALLOWED_UNTIL_H,
    CLOSURE_MIN_HISTORY_H,
    DAY_SHIFT_START_H,
    ED_VISITS_2016,
    EMS_SHARE,
    HEAT_WAVE_UPLIFT,
    NIGHT_SHIFT_START_H,
    UNIT_LOS_DAYS,
    UNITS,
)
from hamburg_mamba.data.synthetic.course import hazard_grid, severity_at
from hamburg_mamba.data.synthetic.events import FIELD_KNOWN_FROM, VITAL_RANGES
from hamburg_mamba.data.synthetic.generate import generate_synthetic
from hamburg_mamba.data.synthetic.staff import shift_index

__all__ = [
    "CLOSURE_ALLOWED_FROM_H",
    "CLOSURE_ALLOWED_UNTIL_H",
    "CLOSURE_MIN_HISTORY_H",
    "CRISIS_DATES",
    "DAY_SHIFT_START_H",
    "ED_VISITS_2016",
    "EMS_SHARE",
    "EXTERNAL_PRESET",
    "FIELD_KNOWN_FROM",
    "HEAT_WAVE_UPLIFT",
    "NIGHT_SHIFT_START_H",
    "UNITS",
    "UNIT_LOS_DAYS",
    "VITAL_RANGES",
    "SyntheticConfig",
    "SyntheticData",
    "generate_synthetic",
    "hazard_grid",
    "severity_at",
    "shift_index",
]
