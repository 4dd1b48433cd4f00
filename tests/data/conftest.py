import pytest

from hamburg_mamba.data.meds_io import write_synthetic
from hamburg_mamba.data.synthetic import SyntheticConfig, generate_synthetic

# A three-week cohort of the default city: small enough for every connector test, large enough for labels.
SMALL = SyntheticConfig(days=21, scale=0.1)


@pytest.fixture(scope="session")
def demo():
    """The default demo cohort (about 10 k pathways); the calibration table is asserted on it."""
    return generate_synthetic(SyntheticConfig())


@pytest.fixture(scope="session")
def small():
    return generate_synthetic(SMALL)


@pytest.fixture(scope="session")
def small_root(small, tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("meds") / "small", small, subjects_per_shard=400)
