"""Model sizes by name and the data-derived parts of a model config (vocabularies, tasks, target scale)."""

from __future__ import annotations

import numpy as np

from hamburg_mamba.nn import HamburgHealthcareSafetyMamba, HamburgMambaConfig
from hamburg_mamba.nn.config import SMALL_PRESET

# Named sizes. "tiny" is for tests (seconds on a CPU); "small" is nn's CPU preset; "demo" is what
# `hamburg-mamba demo` trains in its 15-minute, 2-core budget (docs/experiments.md has the measurement). The demo's
# dropout 0 was chosen on tuning data: 0.1 and 0.2 raised every backbone's selection loss after one and two epochs
# (or left it within seed noise), as none overfits within the demo's four epochs (docs/model.md, "Selection and
# regularisation").
PRESETS: dict[str, dict] = {
    "tiny": dict(
        d_model=16,
        n_layers=2,
        d_state=4,
        d_conv=4,
        expand=2,
        n_heads=2,
        attn_every=2,
        cat_embed_dim=8,
        numeric_embed_dim=4,
        dropout=0.0,
        head_hidden=16,
    ),
    "small": dict(SMALL_PRESET),
    "demo": {**SMALL_PRESET, "d_model": 48, "head_hidden": 48},
    "base": dict(),  # HamburgMambaConfig defaults (the prototype's size, a GPU)
}


def regression_target_stats(data) -> dict[str, list[float]]:
    """[mean, std] of each regression task's training labels, so the head predicts a z-score."""
    stats = {}
    train_events = np.repeat(data.encoded.split == "train", data.encoded.lengths)  # (N,) per flat event
    for task, spec in data.schema.tasks.items():
        if spec.kind != "regression":
            continue
        if spec.level == "event":
            val, mask, _ = data.encoded.event_labels[task]
            y = val[mask & train_events]
        else:
            val, mask, _ = data.encoded.pathway_labels[task]
            y = val[mask & (data.encoded.split == "train")]
        if y.size > 1:
            stats[task] = [float(y.mean()), float(max(y.std(), 1e-6))]
    return stats


def build_model_config(data, backbone: str = "mamba", preset: str = "small", **overrides) -> HamburgMambaConfig:
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    sizes = {**PRESETS[preset], **overrides}
    return HamburgMambaConfig.from_schema(
        data.schema, backbone=backbone, target_stats=regression_target_stats(data), **sizes
    )


def build_model(config: HamburgMambaConfig, seed: int) -> HamburgHealthcareSafetyMamba:
    """Same seed, same initial weights (every DDP rank calls this with the run's seed)."""
    import torch

    torch.manual_seed(seed)
    return HamburgHealthcareSafetyMamba(config)
