"""The model layer: clinical encoder, Mamba blocks, safety heads, backbones and streaming.

    from hamburg_mamba.nn import HamburgMambaConfig, HamburgHealthcareSafetyMamba
    config = HamburgMambaConfig.from_schema(schema)          # or HamburgMambaConfig.small(...) for a CPU
    model = HamburgHealthcareSafetyMamba(config)
    out = model(batch)                                       # batch: hamburg_mamba.data.PathwayBatch
    out.loss.backward()

See docs/model.md.
"""

from hamburg_mamba.nn.backbones import AttentionBlock, Backbone, GRUBlock
from hamburg_mamba.nn.config import BACKBONES, HamburgMambaConfig
from hamburg_mamba.nn.encoder import HamburgClinicalEncoder
from hamburg_mamba.nn.heads import CrisisEarlyWarningSystem, SafetyOutcomePredictor, StaffWellbeingPredictor
from hamburg_mamba.nn.mamba import HamburgMambaBlock, SelectiveSSMLayer, event_clock
from hamburg_mamba.nn.model import (
    BreakdownWarning,
    HamburgHealthcareSafetyMamba,
    ModelOutput,
    StepOutput,
    SystemBreakdown,
    predict_system_breakdown,
)
from hamburg_mamba.nn.streaming import PathwayMonitor

__all__ = [
    "BACKBONES",
    "AttentionBlock",
    "Backbone",
    "BreakdownWarning",
    "CrisisEarlyWarningSystem",
    "GRUBlock",
    "HamburgClinicalEncoder",
    "HamburgHealthcareSafetyMamba",
    "HamburgMambaBlock",
    "HamburgMambaConfig",
    "ModelOutput",
    "PathwayMonitor",
    "SafetyOutcomePredictor",
    "SelectiveSSMLayer",
    "StaffWellbeingPredictor",
    "StepOutput",
    "SystemBreakdown",
    "event_clock",
    "predict_system_breakdown",
]
