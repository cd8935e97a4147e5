"""Evaluation metrics computed from a split's logits: accuracy, NLL, expected calibration error."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true labels (natural log)."""
    return F.cross_entropy(logits.float(), labels).item()


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE with ``bins`` equal-width confidence bins: Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|."""
    probs = F.softmax(logits.float(), dim=1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).float()
    # bin b holds confidences in (b/bins, (b+1)/bins]; |B|/N·|acc−conf| = |Σacc − Σconf|/N per bin
    bin_index = (confidence * bins).ceil().long().clamp(1, bins) - 1
    conf_sum = torch.zeros(bins).index_add_(0, bin_index.cpu(), confidence.cpu())
    acc_sum = torch.zeros(bins).index_add_(0, bin_index.cpu(), correct.cpu())
    return ((acc_sum - conf_sum).abs().sum() / labels.numel()).item()


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str = "test_") -> dict[str, float]:
    return {
        f"{prefix}acc": accuracy(logits, labels),
        f"{prefix}nll": nll(logits, labels),
        f"{prefix}ece": expected_calibration_error(logits, labels),
    }


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Counts ``C[i, j]`` of samples of class i predicted as class j (K×K int64, K = logits' width)."""
    k = logits.shape[1]
    cells = labels.cpu() * k + logits.argmax(1).cpu()
    return torch.bincount(cells, minlength=k * k).view(k, k)
