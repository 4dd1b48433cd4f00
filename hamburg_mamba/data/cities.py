"""The hospitals a synthetic city can be built from: Hamburg's EDs and an invented second city.

A `Hospital` holds what the generator needs (annual ED visits, a position for ambulance routing) and what a
model may know of a hospital it never saw (size and level of care; `hamburg_mamba.data.hospitals`). A city is
built from hospitals of one catalogue only: positions are kilometres from that city's own centre.

Level of care: the G-BA's tiered system of emergency structures (Regelungen zu einem gestuften System von
Notfallstrukturen in Krankenhaeusern, 2018) has three levels, Basisnotfallversorgung (1), erweiterte (2) and
umfassende Notfallversorgung (3); the levels below are assumptions (docs/domain.md), not the G-BA's or the
state's assignment of the named hospitals. The generator does not use the level: it describes the hospital.
"""

from __future__ import annotations

from dataclasses import dataclass

HAMBURG, EXTERNAL = "Hamburg", "Emscherstadt"
CARE_LEVELS = (1, 2, 3)
# Hamburg levels are assumed from size: at least LEVEL_3_VISITS ED visits a year level 3, at least
# LEVEL_2_VISITS level 2, else 1 (the larger EDs of the 2016 list are the maximum-care hospitals).
LEVEL_3_VISITS, LEVEL_2_VISITS = 45_000, 20_000


@dataclass(frozen=True)
class Hospital:
    """One emergency department of a catalogue."""

    name: str
    city: str
    ed_visits_per_year: int  # at full size; a synthetic city simulates `SyntheticConfig.scale` of it
    xy_km: tuple[float, float]  # km east, km north of the city centre; only distances matter (routing)
    care_level: int  # G-BA Notfallstufe 1-3 (assumed, see module docstring)

    def __post_init__(self):
        if self.care_level not in CARE_LEVELS:
            raise ValueError(f"Hospital {self.name!r}: care_level must be one of {CARE_LEVELS}, got {self.care_level}")


def _hamburg(name: str, visits: int, xy: tuple[float, float]) -> Hospital:
    level = 3 if visits >= LEVEL_3_VISITS else 2 if visits >= LEVEL_2_VISITS else 1
    return Hospital(name, HAMBURG, visits, xy, level)


# ED visits 2016 by hospital (Hamburg parliament Drs. 21/8379); approximate positions.
HAMBURG_HOSPITALS = (
    _hamburg("Asklepios Harburg", 64092, (1.0, -9.0)),
    _hamburg("Asklepios Nord", 56908, (1.5, 10.0)),
    _hamburg("Asklepios Barmbek", 52424, (3.5, 3.5)),
    _hamburg("Asklepios Altona", 45524, (-5.0, 1.0)),
    _hamburg("Albertinen", 38611, (-4.5, 7.5)),
    _hamburg("Asklepios St. Georg", 37426, (0.8, 0.4)),
    _hamburg("Asklepios Wandsbek", 31908, (6.5, 3.0)),
    _hamburg("Amalie Sieveking", 27622, (10.0, 10.0)),
    _hamburg("Altonaer Kinderkrankenhaus", 26521, (-5.5, 2.0)),
    _hamburg("Bundeswehrkrankenhaus", 26519, (6.0, 4.5)),
    _hamburg("Bethesda Bergedorf", 24550, (15.0, -5.0)),
    _hamburg("BG Klinikum", 20341, (12.0, -2.0)),
    _hamburg("Diakonieklinikum", 17345, (-2.5, 3.0)),
    _hamburg("Asklepios West", 17245, (-13.0, 2.0)),
)

# Emscherstadt: an invented Rhine-Ruhr-like city for external validation. Every figure is synthetic. The set
# is chosen to test transport: a university hospital larger than any Hamburg ED and two EDs smaller than the
# smallest (inputs outside the training range), and levels that do not follow size as Hamburg's do (a level-3
# hospital of middle size, a level-2 one of 36 k visits).
EXTERNAL_HOSPITALS = (
    Hospital("Universitaetsklinikum Emscherstadt", EXTERNAL, 78000, (0.5, 0.5), 3),
    Hospital("St. Marien Emscherstadt", EXTERNAL, 36000, (-6.0, 2.0), 2),
    Hospital("Evangelisches Klinikum Emscherstadt-Sued", EXTERNAL, 29000, (5.0, -3.0), 3),
    Hospital("Knappschaftskrankenhaus Emscherstadt", EXTERNAL, 21000, (9.0, 4.0), 2),
    Hospital("St. Josef Emscherstadt-Nord", EXTERNAL, 13000, (-3.0, 7.0), 1),
    Hospital("Elisabeth-Krankenhaus Emscherstadt", EXTERNAL, 9500, (-11.0, 1.0), 1),
)

HOSPITALS = {h.name: h for h in HAMBURG_HOSPITALS + EXTERNAL_HOSPITALS}
CITIES = {HAMBURG: HAMBURG_HOSPITALS, EXTERNAL: EXTERNAL_HOSPITALS}


def check_hospital_set(names, argument: str = "hospitals") -> tuple[str, ...]:
    """The names as a tuple; ValueError naming `argument` for an unknown or repeated name, fewer than two
    hospitals (ambulance diversion needs a neighbour), or hospitals of two catalogues (positions are relative to
    different city centres)."""
    names = tuple(names)
    unknown = [h for h in names if h not in HOSPITALS]
    if unknown:
        raise ValueError(
            f"{argument}: unknown {unknown}; choose from "
            + "; ".join(f"{city}: {[h.name for h in hs]}" for city, hs in CITIES.items())
        )
    repeated = sorted({h for h in names if names.count(h) > 1})
    if repeated:
        raise ValueError(f"{argument}: listed more than once: {repeated}")
    if len(names) < 2:
        raise ValueError(f"{argument}: expected at least 2 hospitals (ambulances divert to a neighbour), got {names}")
    cities = sorted({HOSPITALS[h].city for h in names})
    if len(cities) > 1:
        raise ValueError(
            f"{argument}: hospitals of one city expected (positions are relative to its centre), got "
            f"hospitals of {cities}"
        )
    return names
