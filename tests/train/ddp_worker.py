"""One rank of the two-process DDP test (launched by torch.distributed.run from test_ddp.py).

argv: MEDS root, output folder. Trains the tiny model for a few steps and writes this rank's final weights.
"""

import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from hamburg_mamba.data.splits import TINY_CUTOFFS, DataSpec
from hamburg_mamba.train import TrainConfig, Trainer, build_model, build_model_config

STEPS = 4


def train_config() -> TrainConfig:
    return TrainConfig(
        epochs=1,
        max_steps=STEPS,
        batch_size=16,
        warmup_steps=2,
        lr=3e-3,
        checkpoint_every=2,
        progress=False,
        num_threads=1,
        eval_max_pathways=24,
    )


def main(root: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    data = DataSpec(root=root, split="temporal", temporal_cutoffs=TINY_CUTOFFS).connect()
    model = build_model(build_model_config(data, preset="tiny"), seed=0)
    trainer = Trainer(model, data, train_config(), Path(out) / "run")
    summary = trainer.fit()
    state = {k: v.detach().contiguous() for k, v in trainer.module.state_dict().items()}
    save_file(state, str(Path(out) / f"rank{rank}.safetensors"))
    (Path(out) / f"rank{rank}.loss").write_text(repr(summary["best_tuning_loss"]))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
