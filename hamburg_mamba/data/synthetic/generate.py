"""`generate_synthetic`: the stages in order, each with its own random stream."""

from __future__ import annotations

import numpy as np

from hamburg_mamba.data.synthetic.arrivals import draw_arrivals
from hamburg_mamba.data.synthetic.city import build_city, city_drivers
from hamburg_mamba.data.synthetic.config import SyntheticConfig, SyntheticData
from hamburg_mamba.data.synthetic.course import pathway_frame
from hamburg_mamba.data.synthetic.events import events_frame, pathway_events
from hamburg_mamba.data.synthetic.hospital import hospital_frame, hourly_frame, simulate_city
from hamburg_mamba.data.synthetic.labels import label_tables
from hamburg_mamba.data.synthetic.staff import staff_shifts

# Streams spawned from the seed. The third and the eighth are unused (the inpatient course draws nothing of its
# own: its outcome draws are taken at the arrival); they stay so that the others keep their seeds.
N_STREAMS = 8


def spawn_streams(seed: int) -> list[np.random.Generator]:
    """The generator's random streams, in the order generate_synthetic hands them out (see there)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(N_STREAMS)]


def generate_synthetic(config: SyntheticConfig | None = None) -> SyntheticData:
    """Simulate the configured city and return events, labels, oracles and system tables."""
    cfg = config or SyntheticConfig()
    rng_arrivals, rng_course, _, rng_staff, rng_vitals, rng_readmission, rng_closure, _ = spawn_streams(cfg.seed)
    city = build_city(cfg)
    drivers = city_drivers(cfg)
    arrivals = draw_arrivals(cfg, city, drivers, rng_arrivals)
    pathways, state = simulate_city(cfg, city, drivers, arrivals, rng_course, rng_readmission, rng_closure)
    staff = staff_shifts(cfg, city, state, rng_staff)
    event_rows, code_names = pathway_events(cfg, pathways, rng_vitals)
    events, sorted_events = events_frame(cfg, pathways, event_rows, code_names)
    labels, oracle, bound = label_tables(cfg, state, staff, pathways, events["subject_id"].to_numpy(), sorted_events)
    return SyntheticData(
        events=events,
        labels=labels,
        oracle=oracle,
        hospital_hourly=hourly_frame(cfg, city, state),
        staff_shifts=staff.frame,
        pathways=pathway_frame(cfg, pathways),
        config=cfg,
        drivers=drivers.frame,
        bound=bound,
        hospitals=hospital_frame(cfg, city, state),
    )
