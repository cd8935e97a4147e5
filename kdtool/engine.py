"""The one training loop, shared by every method, teacher or student.

The engine sees a model, a :class:`~kdtool.targets.Target` and two loaders. It never asks which
method it trains: the target turns logits into a loss and may own parameters (put in the same
optimizer as the network, with their own weight decay).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from kdtool.config import TrainConfig
from kdtool.data import BatchLoader
from kdtool.metrics import classification_metrics
from kdtool.targets import Target

StepCallback = Callable[[], None]


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, target: Target, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD over the network and the method's own parameters (LLS's Q), as the paper trains them."""
    groups = [{"params": list(model.parameters()), "weight_decay": cfg.weight_decay}]
    method_params = [p for p in target.parameters() if p.requires_grad]
    if method_params:
        groups.append({"params": method_params, "weight_decay": cfg.q_weight_decay})
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``warmup_epochs`` (per step), then ×gamma at each milestone epoch."""
    warmup_steps = cfg.warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    epoch = step // steps_per_epoch
    return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)


@torch.no_grad()
def predict(model: nn.Module, loader: BatchLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of a whole split, in order, with the model in eval mode."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for x, y in loader.epoch():
        logits.append(model(x).float())
        labels.append(y)
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


@dataclass
class Trainer:
    model: nn.Module
    target: Target
    train_loader: BatchLoader
    test_loader: BatchLoader
    cfg: TrainConfig

    def __post_init__(self) -> None:
        self.optimizer = build_optimizer(self.model, self.target, self.cfg)
        steps = len(self.train_loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, steps, self.cfg)
        )

    def train_epoch(self, epoch: int, on_step: StepCallback | None = None) -> dict[str, float]:
        self.model.train()
        self.target.train()
        device = self.train_loader.device
        # Sums stay on the device: one host sync per epoch, not one per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        for x, y in self.train_loader.epoch(epoch):
            logits = self.model(x)
            loss = self.target(logits, y, x)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach() * y.shape[0]
            correct += (logits.detach().argmax(1) == y).sum()
            if on_step is not None:
                on_step()
        self.target.on_epoch_end(epoch)
        n = self.train_loader.num_samples
        return {"train_loss": loss_sum.item() / n, "train_acc": correct.item() / n}

    def evaluate(self) -> dict[str, float]:
        logits, labels = predict(self.model, self.test_loader)
        return classification_metrics(logits, labels, prefix="test_")

    def epochs(self, on_step: StepCallback | None = None) -> Iterator[dict[str, float]]:
        """Train epoch by epoch, yielding each epoch's metrics row."""
        for epoch in range(self.cfg.epochs):
            lr = self.optimizer.param_groups[0]["lr"]
            start = time.perf_counter()
            row: dict[str, float] = {"epoch": epoch + 1, "lr": lr}
            row.update(self.train_epoch(epoch, on_step))
            row["train_seconds"] = time.perf_counter() - start
            row.update(self.evaluate())
            row["seconds"] = time.perf_counter() - start
            yield row
