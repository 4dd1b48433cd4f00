"""hamburg-mamba: selective state-space models (Mamba) over Hamburg emergency-care pathways.

Importing the package loads the compiled ops, so `torch.ops.hamburg_mamba.*` is available afterwards.
"""

from hamburg_mamba.ops import (
    causal_conv1d_fn,
    causal_conv1d_ref,
    causal_conv1d_update,
    causal_conv1d_update_ref,
    cpu_isa,
    mamba_inner_fn,
    mamba_inner_ref,
    selective_scan_fn,
    selective_scan_ref,
    selective_state_update,
    selective_state_update_ref,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "causal_conv1d_fn",
    "causal_conv1d_ref",
    "causal_conv1d_update",
    "causal_conv1d_update_ref",
    "cpu_isa",
    "mamba_inner_fn",
    "mamba_inner_ref",
    "selective_scan_fn",
    "selective_scan_ref",
    "selective_state_update",
    "selective_state_update_ref",
]
