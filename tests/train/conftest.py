import pytest

from hamburg_mamba.data import generate_synthetic, write_synthetic
from hamburg_mamba.train.data_setup import TINY_CUTOFFS, DataSpec, tiny_synthetic_config


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("meds") / "tiny", generate_synthetic(tiny_synthetic_config()))


@pytest.fixture(scope="session")
def tiny_spec(tiny_root):
    return DataSpec(root=str(tiny_root), split="temporal", temporal_cutoffs=TINY_CUTOFFS)


@pytest.fixture(scope="session")
def tiny_data(tiny_spec):
    return tiny_spec.connect()
