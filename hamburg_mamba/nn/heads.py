"""Prediction heads, one per task group, built from the task declarations in the config.

Glossary: B batch (pathways), L events, D d_model, T tasks of the head.

Each head maps the backbone's hidden state at every event to one logit per task, (B, L, T). Binary tasks
give logits (probability = sigmoid); regression tasks give the predicted value itself (de-standardised with
`config.target_stats`). Event-level and pathway-level tasks share the per-event output: the model reads a
pathway-level task at the pathway's last event, which is also what a streaming monitor reports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hamburg_mamba.nn.config import HamburgMambaConfig

# Cumulative hazards below this are treated as this, so log(expm1(H)) stays finite.
MIN_CUMULATIVE_HAZARD = 1e-7


class TaskHead(nn.Module):
    """Shared trunk (Linear -> SiLU -> dropout) and one output per task of a group."""

    group: str = ""

    def __init__(self, config: HamburgMambaConfig):
        super().__init__()
        self.tasks = [n for n, s in config.tasks.items() if s["group"] == self.group]
        if not self.tasks:
            raise ValueError(f"{type(self).__name__}: config.tasks has no task of group {self.group!r}")
        self.kinds = [config.tasks[n]["kind"] for n in self.tasks]
        hidden = config.head_hidden or config.d_model
        self.trunk = nn.Sequential(nn.Linear(config.d_model, hidden), nn.SiLU(), nn.Dropout(config.dropout))
        self.out = nn.Linear(hidden, len(self.tasks))
        stats = [config.target_stats.get(n, [0.0, 1.0]) for n in self.tasks]
        self.register_buffer("target_mean", torch.tensor([m for m, _ in stats]), persistent=False)
        self.register_buffer("target_std", torch.tensor([s for _, s in stats]), persistent=False)
        self.register_buffer("is_regression", torch.tensor([k == "regression" for k in self.kinds]), persistent=False)

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        """h: (..., D) -> task -> (...) logit (binary) or value (regression)."""
        raw = self.out(self.trunk(h))  # (..., T)
        raw = self._transform(raw)
        value = raw * self.target_std.to(raw.dtype) + self.target_mean.to(raw.dtype)
        raw = torch.where(self.is_regression, value, raw)
        return {name: raw[..., i] for i, name in enumerate(self.tasks)}

    def _transform(self, raw: Tensor) -> Tensor:
        return raw


class SafetyOutcomePredictor(TaskHead):
    """Patient safety: adverse event, ICU transfer, in-hospital death, 30-day readmission (or whatever safety
    tasks the schema declares)."""

    group = "safety"


class StaffWellbeingPredictor(TaskHead):
    """Strain of the treating unit: workload index (regression) and the probability that the unit breaks its
    PpUGV minimum nurse ratio in the next shift."""

    group = "staff"


class CrisisEarlyWarningSystem(TaskHead):
    """Probability that the patient's hospital closes to ambulances within each horizon (6, 12, 24 h).

    The horizons are nested events (a closure within 6 h is a closure within 12 h), so the head predicts a
    non-negative hazard per horizon interval and P(closure within h_k) = 1 - exp(-sum_{j <= k} hazard_j):
    the probabilities can never cross, whatever the weights. The logit of that probability is
    log(expm1(H)) for cumulative hazard H, which is what the binary loss reads.
    """

    group = "crisis"

    def __init__(self, config: HamburgMambaConfig):
        super().__init__(config)
        for name in self.tasks:
            spec = config.tasks[name]
            if spec["kind"] != "binary" or spec["horizon_h"] is None:
                raise ValueError(f"CrisisEarlyWarningSystem: task {name!r} must be binary with a horizon_h, got {spec}")
        horizons = [config.tasks[n]["horizon_h"] for n in self.tasks]
        order = sorted(range(len(self.tasks)), key=lambda i: horizons[i])
        # rank[i]: position of task i in horizon order; cumsum in that order, then back to declaration order.
        self.register_buffer("order", torch.tensor(order), persistent=False)
        self.register_buffer("rank", torch.argsort(torch.tensor(order)), persistent=False)

    def _transform(self, raw: Tensor) -> Tensor:
        hazard = F.softplus(raw.index_select(-1, self.order))  # (..., T) per-interval hazard, horizon order
        cumulative = hazard.cumsum(-1).clamp(min=MIN_CUMULATIVE_HAZARD)  # (..., T)
        # log(expm1(H)) = H + log(-expm1(-H)), stable for large H.
        logit = cumulative + torch.log(-torch.expm1(-cumulative))
        return logit.index_select(-1, self.rank)


HEADS = {"safety": SafetyOutcomePredictor, "staff": StaffWellbeingPredictor, "crisis": CrisisEarlyWarningSystem}


def task_loss(kind: str, prediction: Tensor, label: Tensor, valid: Tensor, stats: list[float] | None) -> Tensor:
    """Mean loss over the valid labels (0 when there are none): BCE-with-logits for binary tasks, MSE on the
    standardised scale for regression tasks. prediction, label, valid: the same shape."""
    label = torch.where(valid, label.to(prediction.dtype), torch.zeros_like(prediction))
    if kind == "binary":
        per = F.binary_cross_entropy_with_logits(prediction, label, reduction="none")
    else:
        mean, std = stats if stats is not None else (0.0, 1.0)
        per = ((prediction - label) / std) ** 2
    per = torch.where(valid, per, torch.zeros_like(per))  # missing labels may hold anything, NaN included
    return per.sum() / valid.sum().clamp(min=1).to(per.dtype)
