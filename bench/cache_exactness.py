"""How far a teacher cache's replayed loss and gradient are from the live teacher's, per KD loss.

    python bench/cache_exactness.py [--classes 100] [--top-k 10] [--batch 256]

Teacher and student logits are drawn at random (a peaked teacher: a scale of 4 on standard normals); the
teacher's go through the cache's own compression (kdtool.distill.cache.compress_logits, then the dense
logits a replay builds). For each loss: the largest |Δ| of the loss and of its gradient with respect to the
student's logits, and the gradient norm relative to the live one, at k = K (what cache-teacher stores by
default) and at the given top-k.
"""

from __future__ import annotations

import argparse

import torch
from common import parse

from kdtool.distill.cache import compress_logits
from kdtool.losses import DISTKD, DecoupledKD, KnowledgeDistillation

LOSSES = {
    "kd T=1": lambda: KnowledgeDistillation(None, temperature=1.0),
    "kd T=4": lambda: KnowledgeDistillation(None, temperature=4.0),
    "kd + std T=2": lambda: KnowledgeDistillation(None, beta=0.1, temperature=2.0, standardize=True),
    "dkd T=4": lambda: DecoupledKD(None, temperature=4.0, warmup_epochs=0),
    "dist T=4": lambda: DISTKD(None, temperature=4.0),
}


def replayed(teacher: torch.Tensor, top_k: int, labels: torch.Tensor) -> torch.Tensor:
    """The teacher logits a cache of ``top_k`` per sample gives back (top-k and ground truth exact, the others at
    the rest logit), as float32 (the cache dtype's rounding is not measured here)."""
    parts = compress_logits(teacher, top_k, labels)
    if "logits" in parts:
        return parts["logits"]
    dense = parts["rest_logit"][:, None].expand_as(teacher).clone()
    dense.scatter_(1, labels[:, None], parts["gt_logit"][:, None])
    return dense.scatter_(1, parts["topk_indices"], parts["topk_logits"])


def loss_and_gradient(loss, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor):
    student = student.detach().clone().requires_grad_(True)
    value = loss(student, labels, teacher_logits=teacher)
    value.backward()
    return value.detach(), student.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=256)
    args = parse(parser, {"classes": 10, "top_k": 3, "batch": 16})
    g = torch.Generator().manual_seed(0)
    teacher = 4 * torch.randn(args.batch, args.classes, generator=g)
    student = torch.randn(args.batch, args.classes, generator=g)
    labels = teacher.argmax(1)
    print("| loss | k | max abs Δloss | max abs Δgrad | grad norm cache / live |")
    print("| --- | --- | --- | --- | --- |")
    for name, make in LOSSES.items():
        live_loss, live_grad = loss_and_gradient(make(), student, teacher, labels)
        for k in (args.classes, args.top_k):
            loss, grad = loss_and_gradient(make(), student, replayed(teacher, k, labels), labels)
            print(
                f"| {name} | {k} of {args.classes} | {(loss - live_loss).abs().item():.2e} | "
                f"{(grad - live_grad).abs().max().item():.2e} | {grad.norm().item() / live_grad.norm().item():.3f} |"
            )


if __name__ == "__main__":
    main()
