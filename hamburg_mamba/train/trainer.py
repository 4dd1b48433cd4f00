"""Trainer: AdamW with linear warmup and cosine decay, gradient clipping, early stopping on the tuning split,
bf16 autocast on CUDA, atomic resumable checkpoints, and data-parallel training under torchrun.

Distributed: every rank draws the same global batch of `batch_size` pathways from the deterministic sampler
(seed, epoch) and takes every world_size-th pathway of it, so a run on W processes sees exactly the pathways a
single process sees, split W ways.

Every label weighs the same. The model's loss is each task's mean over the labels in the batch, and batches of
similar length are drawn together, so a label in a batch of short pathways (mostly discharged from the ED)
would weigh as much as dozens in a batch of long stays: the training objective would tilt towards short
pathways, and rare inpatient outcomes (ICU transfer) came out under-predicted three-fold on the training data
itself. The trainer therefore optimises, per task, the sum of the label losses divided by the training split's
mean number of labels per batch (`Trainer._step_loss`), an unbiased estimate of the per-label mean over the
epoch. The same weighting on each rank's share makes DDP's gradient average the single-process gradient
(tests/train/test_ddp.py).

Model selection reads that same objective: early stopping and the kept checkpoint (`model.safetensors`, written
only when the selection loss improves and loaded back at the end) use the mean over tasks of the tuning split's
per-label loss divided by the task's scale (`Trainer.selection_loss`), not the plain mean of the task losses.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from hamburg_mamba.data.batch import PathwayBatchSampler
from hamburg_mamba.train.checkpoint import (
    RunSettingsMismatch,
    atomic_write_text,
    clear_run_folder,
    load_latest_checkpoint,
    save_checkpoint,
    save_model,
    settings_differences,
)


@dataclass
class TrainConfig:
    """How to train; saved as train_config.json in the run directory."""

    epochs: int = 5  # passes over the training split (fewer if early stopping or max_steps end the run)
    max_steps: int | None = None  # hard cap on optimizer steps (the demo's time budget); None = epochs decide
    batch_size: int = 32  # pathways per optimizer step over all ranks
    lr: float = 2e-3  # peak learning rate after warmup
    weight_decay: float = 0.01  # AdamW, on matrices only (not on norms, biases, embeddings' padding rows)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 50  # linear warmup from lr / warmup_steps
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0  # global gradient-norm clip
    eval_every: int | None = None  # optimizer steps between tuning evaluations; None = once per epoch
    # Tuning pathways that early stopping and the kept checkpoint read: None = the whole tuning split; a number =
    # a fixed subset drawn with `seed`. On the demo city a 300-pathway subset's selection loss has a sampling
    # error of 0.115, larger than the differences between checkpoints it has to rank (docs/model.md).
    eval_max_pathways: int | None = None
    patience: int = 3  # tuning evaluations without improvement before stopping
    checkpoint_every: int = 100  # optimizer steps between resumable checkpoints (and at every evaluation)
    seed: int = 0
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)
    bucket_by_length: bool = True  # batches of similar length: less padding, same pathways per epoch
    progress: bool = True  # tqdm bar on rank 0
    num_threads: int | None = None  # torch intra-op threads on CPU; None = torch's default
    # Per-task loss scale: "baseline" divides each task's loss by that of the best constant prediction on the
    # training labels (the entropy of a binary task's prevalence; 1 for standardised regression), so a 1 %
    # outcome's loss is not 6x smaller than a 10 % one's in the shared objective; "none" weighs losses as they are.
    task_weighting: str = "baseline"
    # What early stopping and the kept checkpoint minimise on the tuning split: "objective" = the training
    # objective (task losses weighted as task_weighting weighs them, `Trainer.selection_loss`); "unweighted" =
    # the plain mean of the task losses, which earlier runs used (a run folder written before this field existed
    # differs in it, so it is not resumed under the other rule).
    selection: str = "objective"

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.selection not in ("objective", "unweighted"):
            raise ValueError(f"TrainConfig.selection: expected 'objective' or 'unweighted', got {self.selection!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"TrainConfig: batch_size and epochs must be >= 1, got {self.batch_size}, {self.epochs}")
        if self.task_weighting not in ("baseline", "none"):
            raise ValueError(f"TrainConfig.task_weighting: expected 'baseline' or 'none', got {self.task_weighting!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"TrainConfig.max_steps: expected >= 1 or None, got {self.max_steps}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls(**json.loads(text))


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimizer step `step` (0-based): linear warmup over `warmup`
    steps, then cosine from 1 down to `min_ratio` at step `total` - 1."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup - 1, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def distributed_context() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay weight matrices only; norms, biases, embeddings and SSM parameters (A_log, D, dt bias) keep their
    scale (Mamba and nanoGPT practice)."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and "embed" not in name and "A_log" not in name
        (decay if is_matrix else keep).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


class Trainer:
    """Trains `model` on `data` (a `HamburgData`) and writes the run directory (see checkpoint.py).

    The caller seeds and builds the model (so that every rank builds the same initial weights). A run folder
    holds one run: `fit` resumes from its latest checkpoint only when the saved settings (model config, training
    config, data spec) equal this trainer's, and otherwise refuses with the differences listed, unless
    `overwrite` discards the folder's run first. A finished run is not extended by asking for more steps: the
    learning-rate schedule of its steps was laid out for its own total, so the result would be no run of the new
    length; that request is a difference like any other.
    """

    def __init__(
        self,
        model,
        data,
        config: TrainConfig,
        run_dir: str | Path,
        device: str | torch.device = "cpu",
        data_spec: dict | None = None,
    ):
        self.config = config
        self.data = data
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        self.rank, self.world = distributed_context()
        self.model = model.to(self.device)
        self.module = self.model  # the unwrapped model (what is saved)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.module, config.weight_decay), lr=config.lr, betas=config.betas
        )
        self.data_spec = dict(data_spec or {})
        if "root" in self.data_spec:  # absolute, so that the run folder works from any directory
            self.data_spec["root"] = str(Path(self.data_spec["root"]).resolve())
        self.train_idx = data.indices("train")
        self.tune_idx = data.indices("tuning")
        if self.train_idx.size == 0:
            raise ValueError("Trainer: the training split is empty")
        if config.eval_max_pathways is not None and self.tune_idx.size > config.eval_max_pathways:
            rng = np.random.default_rng(config.seed)
            self.tune_idx = np.sort(rng.choice(self.tune_idx, config.eval_max_pathways, replace=False))
        lengths = data.encoded.lengths
        self.sampler = PathwayBatchSampler(
            self.train_idx,
            lengths,
            config.batch_size,
            shuffle=True,
            seed=config.seed,
            bucket_by_length=config.bucket_by_length,
            drop_last=False,
        )
        self.steps_per_epoch = len(self.sampler)
        self.labels_per_batch, self.task_scale = self._label_statistics()
        total = self.steps_per_epoch * config.epochs
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        self.autocast = self.device.type == "cuda" and config.bf16
        # trainer state (saved in checkpoints)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_loss = float("inf")
        self.best_step = -1
        self.bad_evals = 0
        self.history: list[dict] = []
        self.stopped = ""
        self.skipped_batches = 0

    # ------------------------------------------------------------------------------------------------

    def fit(self, overwrite: bool = False, stop_after: int | None = None) -> dict:
        """Train until epochs, max_steps or early stopping end the run; returns a summary.

        overwrite: discard what the run folder holds of an earlier run (checkpoints, weights, run files) and
        start afresh; without it, a folder holding a run with other settings raises RunSettingsMismatch.
        stop_after: leave after this many optimizer steps in this call, as a kill would (tests of resuming).
        """
        cfg = self.config
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        seed_everything(cfg.seed + self.rank)
        self._prepare_run_folder(overwrite)
        loaded = load_latest_checkpoint(self.run_dir, self.module, self.optimizer)
        if loaded is not None:
            self._restore(*loaded)
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            disable=not cfg.progress or self.rank != 0,
            desc=f"train {self.module.config.backbone}",
            unit="step",
            dynamic_ncols=True,
        )
        start_step, t0 = self.step, time.perf_counter()
        run_loss, run_events, run_t = [], 0, time.perf_counter()
        done = self.step >= self.total_steps or bool(self.stopped)
        while not done:
            self.sampler.set_epoch(self.epoch)
            batches = self.sampler.batches()
            for b_i in range(self.batch_in_epoch, len(batches)):
                idx = batches[b_i]
                self.batch_in_epoch = b_i + 1
                end_of_epoch = self.batch_in_epoch >= len(batches)
                if idx.size >= self.world:
                    loss, events = self._train_step(idx[self.rank :: self.world])
                    self.step += 1
                    run_loss.append(loss)
                    run_events += events * self.world
                    bar.update(1)
                    if self.step % 10 == 0 or self.step == self.total_steps:
                        dt = time.perf_counter() - run_t
                        bar.set_postfix(
                            loss=f"{np.mean(run_loss[-50:]):.4f}",
                            ev_s=f"{run_events / max(dt, 1e-9):,.0f}",
                            lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                        )
                    stepped = True
                else:  # a last batch too small to give every rank a pathway (counted, reported)
                    self.skipped_batches += 1
                    stepped = False
                want_eval = (
                    (stepped and cfg.eval_every and self.step % cfg.eval_every == 0)
                    or (not cfg.eval_every and end_of_epoch)
                    or self.step >= self.total_steps
                )
                if want_eval:
                    self._evaluate(
                        float(np.mean(run_loss)) if run_loss else float("nan"),
                        run_events / max(time.perf_counter() - run_t, 1e-9),
                    )
                    run_loss, run_events, run_t = [], 0, time.perf_counter()
                if end_of_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                if self.step >= self.total_steps and not self.stopped:
                    self.stopped = "max_steps" if cfg.max_steps and self.step >= cfg.max_steps else "epochs"
                if want_eval or (stepped and self.step % cfg.checkpoint_every == 0) or self.stopped:
                    self._checkpoint()
                if self.stopped:
                    done = True
                    break
                if stop_after is not None and self.step - start_step >= stop_after:
                    bar.close()
                    return {"interrupted_at": self.step}
            if self.epoch >= cfg.epochs and not self.stopped:
                self.stopped = "epochs"
                self._checkpoint()
                done = True
        bar.close()
        self._load_best()
        summary = {
            "steps": self.step,
            "resumed_at_step": start_step,
            "epochs_started": self.epoch,
            "stopped": self.stopped,
            "best_step": self.best_step,
            "best_tuning_loss": self.best_loss,
            "seconds_this_call": time.perf_counter() - t0,
            "skipped_batches": self.skipped_batches,
            "world_size": self.world,
        }
        if self.rank == 0:
            atomic_write_text(self.run_dir / "train_summary.json", json.dumps(summary, indent=1))
        return summary

    # ------------------------------------------------------------------------------------------------

    def _train_step(self, idx: np.ndarray) -> tuple[float, int]:
        cfg = self.config
        self.model.train()
        for g in self.optimizer.param_groups:
            g["lr"] = cfg.lr * lr_factor(self.step, self.total_steps, cfg.warmup_steps, cfg.min_lr_ratio)
        batch = self.data.batch(idx).to(self.device)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            out = self.model(batch)
        loss = self._step_loss(batch, out)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return float(loss.detach()), int(batch.lengths.sum())

    def _label_statistics(self) -> tuple[dict[str, float], dict[str, float]]:
        """task -> mean number of labels per (global) training batch, and task -> the loss of the best constant
        prediction on the training labels (see TrainConfig.task_weighting; 1 with "none")."""
        enc, train = self.data.encoded, self.train_idx
        in_train = np.zeros(enc.lengths.size, dtype=bool)
        in_train[train] = True
        event_in_train = np.repeat(in_train, enc.lengths)
        per_batch, scale = {}, {}
        for task, spec in self.module.config.tasks.items():
            if spec["level"] == "event" and task in enc.event_labels:
                value, valid, _ = enc.event_labels[task]
                keep = valid & event_in_train
            elif task in enc.pathway_labels:
                value, valid, _ = enc.pathway_labels[task]
                keep = valid & in_train
            else:
                continue
            per_batch[task] = max(float(keep.sum()) / self.steps_per_epoch, 1.0)
            scale[task] = 1.0
            if self.config.task_weighting == "baseline" and spec["kind"] == "binary" and keep.any():
                prevalence = float(value[keep].mean())
                if prevalence in (0.0, 1.0):
                    # The best constant prediction's loss is 0: dividing by it (clipped) would weigh this task
                    # about a thousand times the others while it holds nothing to learn but its bias.
                    warnings.warn(
                        f"task {task!r}: every training label is {int(prevalence)}; its loss is not rescaled "
                        f"(task_weighting='baseline' needs both classes)",
                        stacklevel=2,
                    )
                    continue
                p = float(np.clip(prevalence, 1e-4, 1 - 1e-4))
                scale[task] = -(p * math.log(p) + (1 - p) * math.log(1 - p))
        return per_batch, scale

    def _step_loss(self, batch, out) -> torch.Tensor:
        """This rank's share of the step's loss: mean over tasks of (sum of the task's label losses) / (labels per
        batch over the training split) / (the task's loss scale); times the world size, as DDP averages the ranks'
        gradients."""
        terms = [
            out.task_losses[t]
            * self._label_count(batch, t)
            / (self.labels_per_batch.get(t, 1.0) * self.task_scale.get(t, 1.0))
            for t in out.task_losses
        ]
        return torch.stack(terms).mean() * self.world

    @staticmethod
    def _label_count(batch, task: str) -> torch.Tensor:
        valid = batch.label_mask[task]
        return (valid & batch.mask).sum() if valid.dim() == 2 else valid.sum()

    def tuning_loss(self, batch_size: int | None = None) -> dict[str, float]:
        """Per-task mean label loss over the tuning pathways (`tune_idx`), summed over ranks; 'loss' = the
        selection objective (`selection_loss`: the training objective's per-task weighting), 'unweighted' = the
        plain mean over tasks (reported, not used)."""
        sums, counts = self.tuning_pathway_losses(batch_size)
        totals = torch.tensor(np.stack([sums.sum(axis=0), counts.sum(axis=0)]), dtype=torch.float64)  # (2, T)
        if self.world > 1:
            dist.all_reduce(totals)
        tasks = sorted(self.module.config.tasks)
        per_task = {t: float(totals[0, i] / totals[1, i]) for i, t in enumerate(tasks) if totals[1, i] > 0}
        return {
            **per_task,
            "loss": self.selection_loss(per_task),
            "unweighted": float(np.mean(list(per_task.values()))) if per_task else float("nan"),
        }

    def selection_loss(self, per_task: dict[str, float]) -> float:
        """The training objective at these per-task mean label losses: the mean over tasks of loss / task scale.

        `_step_loss` divides each task's label-loss sum by its labels per batch and its scale, so its mean over
        an epoch is exactly this on the training labels; early stopping and the kept checkpoint use it so that
        they select what training optimises. The unweighted mean selected for the closure and regression
        tasks, whose losses are 5-20x a rare outcome's: a checkpoint whose ICU-transfer loss doubled still won
        when the closure losses fell a little."""
        if not per_task:
            return float("nan")
        return float(np.mean([loss / self.task_scale.get(t, 1.0) for t, loss in per_task.items()]))

    @torch.no_grad()
    def tuning_pathway_losses(self, batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This rank's share of the tuning pathways: (P, T) sum of each pathway's label losses per task and
        (P, T) its number of labels, tasks in sorted order. Per pathway, so that the selection loss's sampling
        error can be measured (`selection_standard_error`)."""
        self.module.eval()
        tasks = sorted(self.module.config.tasks)
        mine = self.tune_idx[self.rank :: self.world]
        order = mine[np.argsort(self.data.encoded.lengths[mine], kind="stable")]
        sums = np.zeros((order.size, len(tasks)))  # (P, T)
        counts = np.zeros((order.size, len(tasks)))  # (P, T)
        bs = batch_size or self.config.batch_size
        for s in range(0, order.size, bs):
            batch = self.data.batch(order[s : s + bs]).to(self.device)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                out = self.module(batch)
            for j, task in enumerate(tasks):
                if task in out.task_losses:
                    sums[s : s + bs, j], counts[s : s + bs, j] = self._pathway_label_losses(batch, out, task)
        return sums, counts

    def _pathway_label_losses(self, batch, out, task: str) -> tuple[np.ndarray, np.ndarray]:
        """(B,) sum of the task's label losses per pathway and (B,) its number of labels, by the model's own
        `task_loss` on one pathway at a time (its mean times its count is the pathway's sum)."""
        from hamburg_mamba.nn.heads import task_loss

        spec = self.module.config.tasks[task]
        valid = batch.label_mask[task]
        if spec["level"] == "event":
            prediction, valid = out.step_logits[task], valid & batch.mask
        else:
            prediction = out.pathway_logits[task]
        stats = self.module.config.target_stats.get(task)
        n = valid.reshape(valid.shape[0], -1).sum(dim=1).double()  # (B,)
        mean = torch.stack(
            [
                task_loss(spec["kind"], prediction[b].float(), batch.labels[task][b], valid[b], stats)
                for b in range(valid.shape[0])
            ]
        ).double()  # (B,)
        return (mean * n).cpu().numpy(), n.cpu().numpy()

    def selection_standard_error(self, n_pathways: int, draws: int = 200, seed: int = 0) -> dict[str, float]:
        """Sampling error of the selection loss when early stopping reads `n_pathways` tuning pathways drawn at
        random instead of the whole tuning split (single process): the spread of the selection loss over
        `draws` random subsets, against the whole split's value. Used to size `eval_max_pathways`."""
        sums, counts = self.tuning_pathway_losses()
        tasks = sorted(self.module.config.tasks)
        rng = np.random.default_rng(seed)

        def loss_of(rows) -> float:
            s, c = sums[rows].sum(axis=0), counts[rows].sum(axis=0)
            return self.selection_loss({t: s[j] / c[j] for j, t in enumerate(tasks) if c[j] > 0})

        n = min(n_pathways, sums.shape[0])
        values = [loss_of(rng.choice(sums.shape[0], n, replace=False)) for _ in range(draws)]
        return {
            "n_pathways": n,
            "tuning_pathways": int(sums.shape[0]),
            "whole_split": loss_of(slice(None)),
            "standard_error": float(np.std(values, ddof=1)),
        }

    def _evaluate(self, train_loss: float, events_per_s: float) -> None:
        tl = self.tuning_loss() if self.tune_idx.size else {"loss": train_loss, "unweighted": train_loss}
        row = {
            "step": self.step,
            "epoch": self.epoch,
            "train_loss": train_loss,
            "tuning_loss": tl["loss"],
            "tuning_loss_unweighted": tl["unweighted"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "events_per_s": events_per_s,
            "tuning_task_loss": {k: v for k, v in tl.items() if k not in ("loss", "unweighted")},
        }
        self.history.append(row)
        selected = tl["loss"] if self.config.selection == "objective" else tl["unweighted"]
        if selected < self.best_loss - 1e-6:
            self.best_loss, self.best_step, self.bad_evals = selected, self.step, 0
            if self.rank == 0:
                save_model(self.run_dir, self.module, self.data.schema)
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.config.patience:
                self.stopped = "early_stopping"
        if self.rank == 0:
            atomic_write_text(self.run_dir / "history.json", json.dumps(self.history, indent=1))

    def _state(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_loss": self.best_loss,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "history": self.history,
            "stopped": self.stopped,
            "skipped_batches": self.skipped_batches,
            "world_size": self.world,
        }

    def _checkpoint(self) -> None:
        if self.rank == 0:
            save_checkpoint(self.run_dir, self.step, self.module, self.optimizer, self._state())
        if self.world > 1:
            dist.barrier()

    def _prepare_run_folder(self, overwrite: bool) -> None:
        """Refuse a folder that holds a run with other settings, or clear it when `overwrite`; then write the
        run files of a fresh run. Every rank checks before rank 0 writes, so none reads a half-written folder."""
        settings = {
            "config.json": json.loads(self.module.config.to_json()),
            "train_config.json": dataclasses.asdict(self.config),
            "data_spec.json": self.data_spec,
        }
        differences = [] if overwrite else settings_differences(self.run_dir, settings)
        if differences is None:  # no earlier run in the folder
            differences, fresh = [], True
        else:
            fresh = overwrite
        if differences:
            raise RunSettingsMismatch(self.run_dir, differences)
        if self.world > 1:
            dist.barrier()
        if self.rank == 0 and fresh:
            clear_run_folder(self.run_dir)
            self._write_run_files()
        if self.world > 1:
            dist.barrier()

    def _restore(self, path: Path, state: dict) -> None:
        if state.get("world_size", 1) != self.world:
            raise ValueError(
                f"resume: checkpoint {path} was written by {state.get('world_size')} processes, "
                f"this run has {self.world}; the batch split would differ"
            )
        for key in (
            "step",
            "epoch",
            "batch_in_epoch",
            "best_loss",
            "best_step",
            "bad_evals",
            "history",
            "stopped",
            "skipped_batches",
        ):
            setattr(self, key, state[key])
        # each rank's RNG: the checkpoint holds rank 0's; offset as at the start
        if self.rank:
            torch.manual_seed(self.config.seed + self.rank + self.step)

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.json", self.module.config.to_json())
        atomic_write_text(self.run_dir / "train_config.json", self.config.to_json())
        atomic_write_text(self.run_dir / "data_spec.json", json.dumps(self.data_spec, indent=1, default=str))
        self.data.schema.save(self.run_dir / "schema.json")

    def _load_best(self) -> None:
        from safetensors.torch import load_file

        best = self.run_dir / "model.safetensors"
        if self.best_step >= 0 and best.exists():
            self.module.load_state_dict(load_file(str(best)))
        elif self.rank == 0:
            save_model(self.run_dir, self.module, self.data.schema)
        if self.world > 1:
            dist.barrier()
