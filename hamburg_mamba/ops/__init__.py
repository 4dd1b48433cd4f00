"""Compiled ops (torch.ops.hamburg_mamba): selective scan and causal conv1d, with their pure-PyTorch references."""

from hamburg_mamba.ops.block_step import mamba_block_step
from hamburg_mamba.ops.causal_conv1d import causal_conv1d_fn, causal_conv1d_update
from hamburg_mamba.ops.mamba_inner import mamba_inner_fn
from hamburg_mamba.ops.reference import (
    causal_conv1d_ref,
    causal_conv1d_update_ref,
    mamba_block_step_ref,
    selective_scan_ref,
    selective_state_update_ref,
)
from hamburg_mamba.ops.reference_mixer import mamba_inner_ref
from hamburg_mamba.ops.selective_scan import (
    CHECKPOINT_INTERVAL,
    cpu_isa,
    selective_scan_fn,
)
from hamburg_mamba.ops.state_update import selective_state_update

__all__ = [
    "CHECKPOINT_INTERVAL",
    "causal_conv1d_fn",
    "causal_conv1d_ref",
    "causal_conv1d_update",
    "causal_conv1d_update_ref",
    "cpu_isa",
    "mamba_block_step",
    "mamba_block_step_ref",
    "mamba_inner_fn",
    "mamba_inner_ref",
    "selective_scan_fn",
    "selective_scan_ref",
    "selective_state_update",
    "selective_state_update_ref",
]
