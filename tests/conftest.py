"""Fixtures shared by every test folder: the tiny city, built once per session.

The tiny city is the one `hamburg-mamba demo --tiny` uses (hamburg_mamba.data.splits.TINY_SYNTHETIC: 14
days, 3 hospitals, about 14 k events; 3.5 s to generate, write and connect on the 2-core machine). Tests that
modify the connected data must take a fresh `tiny_spec.connect()` instead of `tiny_data`.
"""

import pytest

from hamburg_mamba.data import generate_synthetic, write_synthetic
from hamburg_mamba.data.splits import TINY_CUTOFFS, DataSpec, tiny_synthetic_config


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """The tiny city written as a MEDS folder (data, labels, oracle, metadata, system feed)."""
    return write_synthetic(tmp_path_factory.mktemp("meds") / "tiny", generate_synthetic(tiny_synthetic_config()))


@pytest.fixture(scope="session")
def tiny_spec(tiny_root):
    return DataSpec(root=str(tiny_root), split="temporal", temporal_cutoffs=TINY_CUTOFFS)


@pytest.fixture(scope="session")
def tiny_data(tiny_spec):
    """The connected tiny city with the temporal split's label hiding applied. Tests must not modify it."""
    return tiny_spec.connect()
