import pytest

from hamburg_mamba.data.meds_io import write_synthetic
from hamburg_mamba.data.synthetic import ED_VISITS_2016, SyntheticConfig, generate_synthetic

# A three-week cohort of the default city: small enough for every connector test, large enough for labels.
SMALL = SyntheticConfig(days=21, scale=0.1)
# A second, differently sized city for the calibration table: the eight smallest EDs of the 2016 list at a
# quarter of their volume (ED beds 5-8 instead of 4-5; about 1.3 M events), the full default period.
SMALLEST_EIGHT = SyntheticConfig(hospitals=tuple(sorted(ED_VISITS_2016, key=ED_VISITS_2016.get)[:8]), scale=0.25)


@pytest.fixture(scope="session")
def demo():
    """The default demo cohort (about 10 k pathways); the calibration table is asserted on it."""
    return generate_synthetic(SyntheticConfig())


@pytest.fixture(scope="session")
def smallest_eight():
    return generate_synthetic(SMALLEST_EIGHT)


@pytest.fixture(scope="session")
def small():
    return generate_synthetic(SMALL)


@pytest.fixture(scope="session")
def small_root(small, tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("meds") / "small", small, subjects_per_shard=400)
