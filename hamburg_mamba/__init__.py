"""hamburg-mamba: selective state-space models (Mamba) over Hamburg emergency-care pathways.

The compiled selective-scan ops load on first use of an op name (PEP 562), so `hamburg_mamba.data` works
without the compiled extension (for data engineers who only generate or convert pathway files).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_OPS = {
    "selective_scan_fn": "hamburg_mamba.ops",
    "selective_scan_ref": "hamburg_mamba.ops",
    "selective_state_update": "hamburg_mamba.ops",
    "selective_state_update_ref": "hamburg_mamba.ops",
}

__all__ = ["__version__", *_OPS]


def __getattr__(name: str):
    if name in _OPS:
        return getattr(importlib.import_module(_OPS[name]), name)
    raise AttributeError(f"module 'hamburg_mamba' has no attribute {name!r}")
