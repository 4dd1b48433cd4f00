"""Training: `Trainer` (AdamW, warmup + cosine, clipping, early stopping, bf16 on CUDA, DDP, resumable
checkpoints) and named model sizes. See docs/experiments.md."""

from hamburg_mamba.train.factory import PRESETS, build_model, build_model_config, regression_target_stats
from hamburg_mamba.train.trainer import TrainConfig, Trainer, distributed_context, lr_factor, seed_everything

__all__ = [
    "PRESETS",
    "TrainConfig",
    "Trainer",
    "build_model",
    "build_model_config",
    "distributed_context",
    "lr_factor",
    "regression_target_stats",
    "seed_everything",
]
