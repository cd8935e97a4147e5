"""Evaluation metrics computed from a split's logits: accuracy, macro-F1, NLL, expected calibration error; on
imbalanced data balanced accuracy and many/medium/few-shot accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true labels (natural log)."""
    return F.cross_entropy(logits.float(), labels).item()


def calibration_bins(
    logits: torch.Tensor, labels: torch.Tensor, bins: int = 15
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per equal-width confidence bin (b/bins, (b+1)/bins]: sample count, summed confidence, summed hits.

    The reliability diagram plots hits/count against confidence/count for the non-empty bins.
    """
    probs = F.softmax(logits.float(), dim=1)
    confidence, predicted = probs.max(1)
    correct = (predicted == labels).float()
    bin_index = ((confidence * bins).ceil().long().clamp(1, bins) - 1).cpu()
    count = torch.bincount(bin_index, minlength=bins)
    conf_sum = torch.zeros(bins).index_add_(0, bin_index, confidence.cpu())
    acc_sum = torch.zeros(bins).index_add_(0, bin_index, correct.cpu())
    return count, conf_sum, acc_sum


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE with ``bins`` equal-width confidence bins: Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|."""
    _, conf_sum, acc_sum = calibration_bins(logits, labels, bins)
    # |B|/N·|acc−conf| = |Σacc − Σconf|/N per bin
    return ((acc_sum - conf_sum).abs().sum() / labels.numel()).item()


def per_class_f1(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """F1 = 2·TP / (2·TP + FP + FN) of each of the K classes (K = logits' width).

    A class that is neither in ``labels`` nor ever predicted has no F1: its entry is NaN.
    """
    k = logits.shape[1]
    predicted, labels = logits.argmax(1).cpu(), labels.cpu()
    true_pos = torch.bincount(labels[predicted == labels], minlength=k).double()
    denominator = torch.bincount(labels, minlength=k) + torch.bincount(predicted, minlength=k)  # 2TP + FP + FN
    return torch.where(denominator > 0, 2 * true_pos / denominator.clamp(min=1), torch.nan)


def macro_f1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Unweighted mean of the per-class F1 over the classes that occur in the labels or the predictions."""
    return per_class_f1(logits, labels).nanmean().item()


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, prefix: str = "test_") -> dict[str, float]:
    return {
        f"{prefix}acc": accuracy(logits, labels),
        f"{prefix}macro_f1": macro_f1(logits, labels),
        f"{prefix}nll": nll(logits, labels),
        f"{prefix}ece": expected_calibration_error(logits, labels),
    }


def confusion_matrix(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Counts ``C[i, j]`` of samples of class i predicted as class j (K×K int64, K = logits' width)."""
    k = logits.shape[1]
    cells = labels.cpu() * k + logits.argmax(1).cpu()
    return torch.bincount(cells, minlength=k * k).view(k, k)


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy on each class's samples (recall), K entries; NaN for a class without samples."""
    confusion = confusion_matrix(logits, labels).double()
    support = confusion.sum(1)
    return torch.where(support > 0, confusion.diagonal() / support.clamp(min=1), torch.nan)


def select_classes(logits: torch.Tensor, labels: torch.Tensor, kept: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Only the samples of the ``kept`` classes, with logits sliced to them and labels renumbered 0..n-1
    in ``kept``'s order, so predictions are the argmax over the kept classes (the class-subset rule)."""
    remap = torch.full((logits.shape[1],), -1, dtype=torch.long)
    remap[torch.as_tensor(kept)] = torch.arange(len(kept))
    labels = labels.cpu()
    keep = remap[labels] >= 0
    return logits.cpu()[keep][:, kept], remap[labels[keep]]


# A training split is imbalanced from this ratio of its largest to its smallest class count on.
IMBALANCE_FROM = 3
# Many-shot: more than 100 training samples; few-shot: fewer than 20 (Liu et al., CVPR 2019, OLTR).
MANY_ABOVE, FEW_BELOW = 100, 20
SHOT_NAMES = ("many", "medium", "few")
BANDS_RULE = f"many > {MANY_ABOVE}, medium {FEW_BELOW}–{MANY_ABOVE}, few < {FEW_BELOW} training samples"
THIRDS_RULE = "thirds of the classes by training count (too few for the > 100 / 20–100 / < 20 bands)"


def is_imbalanced(counts: Sequence[int]) -> bool:
    """Whether the largest class count is at least :data:`IMBALANCE_FROM` times the smallest."""
    return len(counts) > 1 and max(counts) >= IMBALANCE_FROM * min(counts)


def shot_groups(counts: Sequence[int]) -> tuple[torch.Tensor, str]:
    """Each class's group (0 many, 1 medium, 2 few) and the rule that made them: the OLTR bands where each
    band holds a class, else the thirds of the classes sorted by training count (ties in class order)."""
    n = torch.as_tensor(list(counts))
    bands = torch.where(n > MANY_ABOVE, 0, torch.where(n >= FEW_BELOW, 1, 2))
    if len(bands.unique()) == len(SHOT_NAMES):
        return bands, BANDS_RULE
    groups = torch.empty_like(n)
    order = torch.sort(n, descending=True, stable=True).indices
    for group, members in enumerate(torch.tensor_split(order, len(SHOT_NAMES))):
        groups[members] = group
    return groups, THIRDS_RULE


def balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-class recall over the classes present in ``labels`` (a class never predicted counts 0)."""
    return per_class_accuracy(logits, labels).nanmean().item()


def long_tail_metrics(
    logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, prefix: str = "test_"
) -> dict[str, float]:
    """Balanced accuracy and the mean recall of the many/medium/few-shot classes (``groups`` of
    :func:`shot_groups`); NaN for a group without samples in ``labels``."""
    recall = per_class_accuracy(logits, labels)
    metrics = {f"{prefix}balanced_acc": recall.nanmean().item()}
    for group, name in enumerate(SHOT_NAMES):
        metrics[f"{prefix}{name}_acc"] = recall[groups.cpu() == group].nanmean().item()
    return metrics
