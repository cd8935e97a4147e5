"""An LLS-ST distillation epoch / a KD-from-teacher epoch: ResNet-18 teacher -> LeNet-5 student.

Both run through kdtool's engine on the same Fashion-MNIST subset (CPU: a ResNet-18 forward per
batch makes the full set too slow here; ``--limit`` says how many samples). KD runs the frozen
teacher on every augmented batch; LLS-ST reads the class-wise targets of a Q artifact instead
(K = 10, α = 0.1). Weights do not change the speed, so both networks are freshly initialised.

    .venv/bin/python bench/llsst_vs_kd.py [--limit N] [--repeats R] [--threads T]
"""

from __future__ import annotations

import torch
from common import KdtoolEpochs, Timing, arguments, fashion_mnist, interleave, kdtool_config, lenet5, machine, report

from kdtool.losses.kd import KnowledgeDistillation, SubstituteTeacher
from kdtool.models.registry import build_model
from kdtool.q.matrix import QMatrix
from kdtool.training.accel import frozen_for_inference

TARGET = 0.6


def main() -> None:
    args = arguments(__doc__.splitlines()[0], limit=1024)
    dataset = fashion_mnist(args.limit)
    names = list(dataset.info.class_names)
    torch.manual_seed(0)
    teacher = build_model("resnet18", 10, 1, 28)
    q = QMatrix(torch.randn(10, 10), names, 0.1, "fashion-mnist", "lls")
    llsst = KdtoolEpochs(dataset, lenet5(), SubstituteTeacher(q), kdtool_config(args.batch_size, smoothing="lls-st"))
    teacher = frozen_for_inference(teacher, channels_last=True)  # as `kdtool distill` prepares it on a CPU
    kd = KdtoolEpochs(dataset, lenet5(), KnowledgeDistillation(teacher), kdtool_config(args.batch_size, smoothing="kd"))
    a, b = Timing("LLS-ST epoch"), Timing("KD epoch (ResNet-18 teacher)")
    with llsst, kd:
        interleave(a, llsst, b, kd, args.repeats, args.warmup)
    inputs = {
        "bench": "llsst_vs_kd",
        **machine(),
        "student": "lenet5",
        "teacher": "resnet18 (CIFAR stem), KD only",
        "data": f"fashion-mnist train subset, {len(dataset.train)} of 60000",
        "batch size": args.batch_size,
        "repeats": args.repeats,
    }
    report(inputs, a, b, TARGET, clock="cpu")


if __name__ == "__main__":
    main()
