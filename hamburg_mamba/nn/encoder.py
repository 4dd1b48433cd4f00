"""HamburgClinicalEncoder: one d_model vector per event from its categorical, numeric and time fields.

Glossary: B batch (pathways), L events, F numeric features, Ec cat_embed_dim, En numeric_embed_dim,
D d_model.

Every event is encoded on its own (time features are precomputed per event by the data connector), so the
streaming path encodes a new event exactly as the full forward does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hamburg_mamba.nn.config import HamburgMambaConfig

HOURS_PER_DAY = 24.0
DAYS_PER_WEEK = 7.0
# The categorical field naming the hospital: embedded only with `HamburgMambaConfig.hospital_identity`.
HOSPITAL_FIELD = "hospital"
# log1p(time since previous event), log1p(time since pathway start), sin/cos hour of day, sin/cos day of week.
NUM_TIME_FEATURES = 6


class HamburgClinicalEncoder(nn.Module):
    """Concatenates, per event:
    - an embedding per categorical field (code, care stage, unit, triage group, arrival mode, and whatever else
      the schema declares; the hospital's name only with `config.hospital_identity`), index 0 = padding;
    - per numeric feature, `value * w_f + b_f` when present and a learned "missing" vector m_f when absent
      (missingness is information, never a silent 0). Values arrive z-scored with the training split's
      statistics per event code (`DatasetSchema.code_stats`, applied by the connector) and are clipped here.
      Feature 0 is the event's own value (`DatasetSchema.numeric_features[0] == "value"`), whose meaning depends
      on the code (a high SpO2 is good, a high respiratory rate is not): it gets a weight and bias per code on
      top of the shared ones, `value * (w_0 + w_code) + b_0 + b_code` (docs/experiments.md: +0.01-0.02 AUROC
      on most demo tasks);
    - time: log1p of the hours since the previous event and since the pathway start, and cyclic hour of day
      and day of week;
    then projects to d_model. The hospital enters through its numeric descriptors and status feed
    (`hospital:<column>`, `status:<column>`), which a hospital never seen in training has too.
    """

    def __init__(self, config: HamburgMambaConfig):
        super().__init__()
        if not config.vocab_sizes:
            raise ValueError(
                "HamburgClinicalEncoder: config.vocab_sizes is empty; build the config with "
                "HamburgMambaConfig.from_schema(schema)"
            )
        self.fields = [f for f in config.vocab_sizes if config.hospital_identity or f != HOSPITAL_FIELD]
        self.vocab_sizes = dict(config.vocab_sizes)
        self.num_numeric = config.num_numeric
        self.numeric_clip = config.numeric_clip
        self.embeddings = nn.ModuleDict(
            {name: nn.Embedding(self.vocab_sizes[name], config.cat_embed_dim, padding_idx=0) for name in self.fields}
        )
        F, En = config.num_numeric, config.numeric_embed_dim
        self.numeric_weight = nn.Parameter(torch.randn(F, En))
        self.numeric_bias = nn.Parameter(torch.zeros(F, En))
        self.numeric_missing = nn.Parameter(torch.randn(F, En))
        self.code_value = F > 0 and "code" in self.vocab_sizes
        if self.code_value:
            self.code_value_weight = nn.Embedding(self.vocab_sizes["code"], En)  # N(0, 1), like numeric_weight
            self.code_value_bias = nn.Embedding(self.vocab_sizes["code"], En)
            nn.init.zeros_(self.code_value_bias.weight)
        width = len(self.fields) * config.cat_embed_dim + F * En + NUM_TIME_FEATURES
        self.proj = nn.Linear(width, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, batch) -> Tensor:
        """batch: a `PathwayBatch` (or any object with its event fields) -> (B, L, D)."""
        self._check(batch)
        parts = [self.embeddings[name](batch.categorical[name]) for name in self.fields]  # (B, L, Ec) each
        value = batch.numeric.clamp(-self.numeric_clip, self.numeric_clip)  # (B, L, F)
        present = value[..., None] * self.numeric_weight + self.numeric_bias  # (B, L, F, En)
        if self.code_value:
            code = batch.categorical["code"]
            own = present[..., 0, :] + value[..., :1] * self.code_value_weight(code) + self.code_value_bias(code)
            present = torch.cat([own[..., None, :], present[..., 1:, :]], dim=-2)  # (B, L, F, En)
        numeric = torch.where(batch.numeric_missing[..., None], self.numeric_missing, present)  # (B, L, F, En)
        parts.append(numeric.flatten(-2))  # (B, L, F * En)
        parts.append(time_features(batch).to(value.dtype))  # (B, L, 6)
        return self.dropout(self.proj(torch.cat(parts, dim=-1)))  # (B, L, D)

    def _check(self, batch) -> None:
        missing = [f for f in self.fields if f not in batch.categorical]
        extra = [f for f in batch.categorical if f not in self.vocab_sizes]
        if missing or extra:
            raise ValueError(
                f"batch.categorical: the model was configured with fields {self.fields}; "
                f"missing {missing}, unexpected {extra} (was the config built from another schema?)"
            )
        if batch.numeric.shape[-1] != self.num_numeric:
            raise ValueError(
                f"batch.numeric: expected {self.num_numeric} features (config.num_numeric), "
                f"got {batch.numeric.shape[-1]}"
            )
        for name in self.fields:
            idx = batch.categorical[name]
            if bool(((idx < 0) | (idx >= self.vocab_sizes[name])).any()):
                raise ValueError(
                    f"batch.categorical[{name!r}]: indices must lie in [0, {self.vocab_sizes[name]}) "
                    f"(config.vocab_sizes), got [{int(idx.min())}, {int(idx.max())}]"
                )


def time_features(batch) -> Tensor:
    """(B, L, 6): log1p hours since previous event and since start, cyclic hour of day and day of week."""
    hour = 2.0 * math.pi * batch.hour_of_day / HOURS_PER_DAY  # (B, L)
    day = 2.0 * math.pi * batch.day_of_week.to(batch.hour_of_day.dtype) / DAYS_PER_WEEK  # (B, L)
    return torch.stack(
        [
            torch.log1p(batch.time_since_prev_h.clamp(min=0.0)),
            torch.log1p(batch.time_since_start_h.clamp(min=0.0)),
            torch.sin(hour),
            torch.cos(hour),
            torch.sin(day),
            torch.cos(day),
        ],
        dim=-1,
    )
