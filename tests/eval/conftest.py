"""Fixtures of the evaluation tests: a model whose predictions are known in advance. The tiny city it reads
(`tiny_root`, `tiny_spec`, `tiny_data`) comes from tests/conftest.py.
"""

from types import SimpleNamespace

import pytest
import torch

# The known model's tuning predictions are sigmoid(TUNING_SHIFT + TUNING_SCALE * logit(oracle)): a recalibration
# fitted on tuning rows undoes this (slope about 1 / TUNING_SCALE), one fitted on held-out rows (where the model
# predicts the oracle itself) would not, so the fitted map shows which split it saw.
TUNING_SHIFT = -1.0
TUNING_SCALE = 2.0
LOGIT_EPS = 1e-6  # the oracle is 0 where no outcome is possible (no closures at night): clipped before logit


def distort(p: torch.Tensor) -> torch.Tensor:
    """What the known model predicts on tuning pathways, in float64."""
    p = p.double().clamp(LOGIT_EPS, 1 - LOGIT_EPS)
    return torch.sigmoid(TUNING_SHIFT + TUNING_SCALE * torch.log(p / (1 - p)))


class KnownModel(torch.nn.Module):
    """Predicts every task from the generator's oracle carried in the batch: the oracle itself on held-out
    (and training) pathways, `distort(oracle)` on the tuning pathways. Each prediction is tied to its own
    event, so a row read from the wrong position, pathway or split shows up as a wrong value."""

    def __init__(self, data):
        super().__init__()
        self.config = SimpleNamespace(
            tasks={t: {"level": s.level, "kind": s.kind} for t, s in data.schema.tasks.items()}
        )
        tuning = data.encoded.pathway_id[data.encoded.split == "tuning"]
        self.register_buffer("tuning_ids", torch.as_tensor(tuning, dtype=torch.int64))

    def forward(self, batch):
        tuning = torch.isin(batch.pathway_id, self.tuning_ids)  # (B,)
        step, pathway = {}, {}
        for task, spec in self.config.tasks.items():
            o = batch.oracle[task].double()  # (B, L) or (B,)
            if spec["kind"] == "binary":
                t = tuning[:, None] if o.dim() == 2 else tuning
                o = torch.where(t, distort(o), o)
            (step if spec["level"] == "event" else pathway)[task] = o
        return SimpleNamespace(step_predictions=step, pathway_predictions=pathway)


@pytest.fixture(scope="session")
def known_model(tiny_data):
    return KnownModel(tiny_data)
