"""Fixtures of the nn tests; the batch and config helpers they share live in nn_batches.py."""

import pytest
import torch

from hamburg_mamba.nn import BACKBONES


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """The small preset is too small to gain from intra-op threads, and when other processes share the two
    cores, OpenMP barriers wait on descheduled threads: measured 107 s with 2 threads against 7.6 s with 1 for
    the mamba and gru learning tests at load average 4.4. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=BACKBONES)
def backbone(request):
    return request.param
