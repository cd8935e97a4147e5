"""The one training loop, shared by every method, teacher or student.

The engine sees a model, a :class:`~kdtool.losses.Target` and two loaders. It never asks which
method it trains: the target turns logits into a loss and may own parameters (put in the same
optimizer as the network, with their own weight decay; row-lazily updated where the target says
their gradients are row-sparse, see :mod:`kdtool.optim.lazysgd`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from kdtool.data import BatchLoader
from kdtool.data.augment import BatchMixer, parse_augment
from kdtool.distributed import DistEnv, all_reduce_sum, select_device
from kdtool.losses import Target
from kdtool.optim.lazysgd import RowLazySGD
from kdtool.optim.rowgrads import average_method_gradients
from kdtool.training.accel import Accel
from kdtool.training.metrics import classification_metrics, long_tail_metrics
from kdtool.training.tally import DIVERGENCE_CHECK_STEPS, EpochTally

StepCallback = Callable[[], None]


class TrainingOptions(Protocol):
    """The options the loop reads (kdtool.config.runconfig.TrainConfig has them all)."""

    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    decay_bias_norm: bool
    mixup_alpha: float
    q_weight_decay: float | None
    schedule: str
    warmup_epochs: float
    milestones: Sequence[int]
    gamma: float
    augment: str


__all__ = ["Trainer", "build_optimizer", "lr_factor", "predict", "seed_everything", "select_device", "unwrap_model"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, target: Target, cfg: TrainingOptions) -> torch.optim.Optimizer:
    """SGD over the network and the method's own parameters (LLS's Q), as the paper trains them.

    A method with row-sparse gradients (LLS's Q with sparse updates) gets the same SGD, row-lazily
    (:class:`~kdtool.optim.lazysgd.RowLazySGD`), through which it reads them, up to date."""
    if target.lazy_rows is not None:
        target.lazy_rows.sync()  # rows an earlier optimizer of this method left behind
    groups = network_groups(model, cfg.weight_decay, cfg.decay_bias_norm)
    method_params = [p for p in target.parameters() if p.requires_grad]
    if method_params:
        lazy = {"row_lazy": True} if target.row_sparse else {}
        groups.append({"params": method_params, "weight_decay": cfg.q_weight_decay, **lazy})
    if not target.row_sparse:
        return fused_sgd(groups, cfg.lr, cfg.momentum)
    optimizer = RowLazySGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    target.lazy_rows = optimizer
    return optimizer


def fused_sgd(groups: list[dict], lr: float, momentum: float) -> torch.optim.SGD:
    """torch's SGD, fused: one kernel per group and step instead of a few per tensor, and with fp16 loss scaling
    the skipped-step check stays on the device (GradScaler reads it on the host for other optimizers).

    The momentum buffers start at zero, which gives the same first step as torch's (with no dampening the buffer
    becomes the gradient either way) but also when that step is skipped: torch's fused SGD then leaves the
    buffers it allocated unwritten (torch 2.14), and the next step would read whatever memory held."""
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
    if momentum:
        for group in optimizer.param_groups:
            for param in group["params"]:
                optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)
    return optimizer


def network_groups(model: nn.Module, weight_decay: float, decay_bias_norm: bool) -> list[dict]:
    """The network's parameter groups: weights at ``weight_decay``; biases and normalisation parameters (every
    parameter of one dimension, as timm's ``param_groups_weight_decay`` tells them) at 0 unless ``decay_bias_norm``."""
    params = list(model.parameters())
    if decay_bias_norm:
        return [{"params": params, "weight_decay": weight_decay}]
    groups = ({"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0})  # fmt: skip
    return [group for group in groups if group["params"]]


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainingOptions) -> float:
    """Linear warm-up over ``warmup_epochs`` (per step; rounded to whole steps), then the ``schedule``:
    ``multistep`` (×gamma at each milestone epoch), ``cosine`` (to 0 at the end) or ``constant``."""
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        progress = (step - warmup_steps) / max(1, cfg.epochs * steps_per_epoch - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    epoch = step // steps_per_epoch
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def gradient_norm(model: nn.Module) -> torch.Tensor:
    """L2 norm of the network's whole gradient vector, as a device tensor (no host sync)."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    # One multi-tensor kernel instead of one norm() call per parameter (per-step cost on small networks).
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


@torch.no_grad()
def predict(model: nn.Module, loader: BatchLoader, accel: Accel = Accel()) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32) and labels of a whole split, in order, with the model in eval mode."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for x, y in loader.epoch():
        with accel.autocast():
            # a copy: with --compile-mode reduce-overhead the output lives in CUDA-graph memory the next batch reuses
            logits.append(model(accel.inputs(x)).to(torch.float32, copy=True))
        labels.append(y)
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


@dataclass
class Trainer:
    model: nn.Module
    target: Target
    train_loader: BatchLoader
    test_loader: BatchLoader
    cfg: TrainingOptions
    dist_env: DistEnv = field(default_factory=DistEnv)
    val_loader: BatchLoader | None = None
    accel: Accel = field(default_factory=Accel)  # mixed precision and memory format of every step
    shot_groups: torch.Tensor | None = None  # imbalanced training data: each class's many/medium/few group

    def __post_init__(self) -> None:
        self.scaler = self.accel.grad_scaler()
        self.optimizer = build_optimizer(self.model, self.target, self.cfg)
        steps, cfg = len(self.train_loader), self.cfg
        # the schedule takes cfg, not self: a lambda holding the trainer would make a reference cycle, and its loaders
        # (a streamed one's worker processes) would then wait for the garbage collector to be stopped
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: lr_factor(step, steps, cfg))
        self.mixer = BatchMixer(parse_augment(self.cfg.augment), self.cfg.mixup_alpha)  # mixup/cutmix, or as they come
        self.first_loss: float | None = None  # the run's first step's loss (kept in checkpoints)

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> dict[str, float]:
        self.model.train()
        self.target.train()
        self.target.on_epoch_start(epoch)
        tally = EpochTally(epoch, len(self.train_loader), self.train_loader.device, self.dist_env, self.first_loss)
        generator = self.train_loader.augment_generator(epoch)
        for step, (x, y, teacher_logits) in enumerate(self.train_loader.training_batches(epoch, generator)):
            batch = self.mixer(self.accel.inputs(x), y, generator, teacher_logits)
            with self.accel.autocast():
                logits = self.model(batch.inputs)
                loss = batch.loss(self.target, logits)
            self.optimizer.zero_grad(set_to_none=True)
            self._backward(loss)
            average_method_gradients(self.target.parameters(), self.dist_env)
            if tally.wants_grad_norm(step):
                norm = gradient_norm(self.model)
                tally.grad_norms.append(norm if self.scaler is None else norm.nan_to_num(0.0, 0.0, 0.0))  # fp16 skip: 0
            lr = self.optimizer.param_groups[0]["lr"]  # this step's rate: the scheduler moves it after the step
            self._optimizer_step()
            self.scheduler.step()
            tally.record(loss.detach(), batch.hits(logits.detach()), y.shape[0], lr)
            if self.first_loss is None:  # one host read a run: the scale a diverged loss is measured against
                self.first_loss = tally.first_loss = float(loss.detach())
            if on_step is not None:
                on_step()
            if (step + 1) % DIVERGENCE_CHECK_STEPS == 0:
                tally.check(self._lr_at)
        tally.check(self._lr_at)
        if isinstance(self.optimizer, RowLazySGD):
            # every row up to date, at the same step on every rank: what follows (checkpoint, model
            # selection, export) reads Q, and rows brought up to date at other steps differ in the last bits
            self.optimizer.sync()
        for name in self.target.epoch_accumulators:
            all_reduce_sum(self.target.get_buffer(name), self.dist_env)  # a dotted name: a wrapped method's
        self.target.on_epoch_end(epoch)
        return tally.row()

    def _lr_at(self, step: int) -> float:
        """The network's learning rate at the run's (0-based) optimizer step ``step``."""
        return self.cfg.lr * lr_factor(step, len(self.train_loader), self.cfg)

    def _backward(self, loss: torch.Tensor) -> None:
        """Gradients of ``loss``; with fp16 loss scaling they come back unscaled (true norms and averages)."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)

    def _optimizer_step(self) -> None:
        if self.scaler is None:
            self.optimizer.step()
            return
        self.scaler.step(self.optimizer)  # skipped when fp16 gradients overflowed
        self.scaler.update()

    def evaluate(self, loader: BatchLoader | None = None, prefix: str = "test_") -> dict[str, float]:
        """The metrics of the test split (or of ``loader``'s), with the long-tail ones on imbalanced data."""
        logits, labels = predict(self.model, self.test_loader if loader is None else loader, self.accel)
        metrics = classification_metrics(logits, labels, prefix=prefix)
        if self.shot_groups is not None:
            metrics.update(long_tail_metrics(logits, labels, self.shot_groups, prefix))
        return metrics

    def state_dict(self) -> dict:
        """Everything that changes during training (for checkpoints)."""
        state = {
            "model": unwrap_model(self.model).state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "first_loss": self.first_loss,
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        unwrap_model(self.model).load_state_dict(state["model"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.first_loss = state.get("first_loss")  # absent from older checkpoints: measured at the next step
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def epochs(self, on_step: StepCallback | None = None, start_epoch: int = 0) -> Iterator[dict[str, float]]:
        """Train epoch by epoch from ``start_epoch`` (0-based), yielding each epoch's metrics row."""
        for epoch in range(start_epoch, self.cfg.epochs):
            start = time.perf_counter()
            row: dict[str, float] = {"epoch": epoch + 1}
            row.update(self.train_epoch(epoch, on_step))
            row["train_seconds"] = time.perf_counter() - start
            if self.val_loader is not None:
                row.update(self.evaluate(self.val_loader, prefix="val_"))
            row.update(self.evaluate())
            # PLS's generalization error |test error − train error|, with the running training error.
            row["generalization_error"] = abs(row["train_acc"] - row["test_acc"])
            row["seconds"] = time.perf_counter() - start
            yield row
