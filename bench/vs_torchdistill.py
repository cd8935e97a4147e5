"""kdtool's KD epoch / torchdistill's KD epoch: small CNN teacher -> LeNet-5 student, Fashion-MNIST, CPU.

torchdistill (PyPI, the ``bench`` extra) runs from ``torchdistill_kd.yaml``: its ``KDLoss`` at T = 1
with a pure soft target, its ``DistillationBox`` driven by the loop of its own examples
(pre-epoch, forward_process, post_forward_process per batch, post-epoch), over torchvision's
``FashionMNIST`` + ``DataLoader`` (the fastest ``num_workers`` here) + RandomCrop(28, padding=4),
ToTensor, Normalize. kdtool's epoch is its engine with the same teacher, student, loss
(β = 0, T = 1), batch size, SGD and crop augmentation. Both teachers are the same frozen network
in eval mode.

    .venv/bin/python bench/vs_torchdistill.py [--limit N] [--repeats R] [--workers W] [--threads T]
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from common import (
    KdtoolEpochs,
    Timing,
    arguments,
    best_num_workers,
    crop_transforms,
    fashion_mnist,
    interleave,
    kdtool_config,
    lenet5,
    machine,
    report,
    small_cnn,
    torchvision_fashion_mnist,
)
from torchdistill.common.yaml_util import load_yaml_file
from torchdistill.core.distillation import DistillationBox, get_distillation_box

from kdtool.losses.kd import KnowledgeDistillation
from kdtool.training.accel import frozen_for_inference

TARGET = 0.6
CONFIG = Path(__file__).with_name("torchdistill_kd.yaml")


def torchdistill_epoch(box: DistillationBox, device: torch.device) -> None:
    """One epoch the way torchdistill's example scripts train."""
    box.pre_epoch_process(epoch=0)
    for sample_batch, targets, supp_dict in box.train_data_loader:
        sample_batch, targets = sample_batch.to(device), targets.to(device)
        loss = box.forward_process(sample_batch, targets, supp_dict)
        box.post_forward_process(loss=loss)
    box.post_epoch_process()


def main() -> None:
    args = arguments(__doc__.splitlines()[0], workers=(int, None, "DataLoader num_workers (default: probe 0-3)"))
    dataset = fashion_mnist(args.limit)
    torch.manual_seed(0)
    teacher = small_cnn().eval()
    # the teacher as `kdtool distill` prepares it on a CPU
    kd_target = KnowledgeDistillation(frozen_for_inference(copy.deepcopy(teacher), True), beta=0.0, temperature=1.0)
    kdtool_epoch = KdtoolEpochs(dataset, lenet5(), kd_target, kdtool_config(args.batch_size, smoothing="kd"))
    device = torch.device("cpu")
    with torchvision_fashion_mnist(crop_transforms(), args.limit) as ds:
        workers = args.workers if args.workers is not None else best_num_workers(ds, args.batch_size)
        config = load_yaml_file(str(CONFIG))["train"]
        config["train_data_loader"]["kwargs"].update(batch_size=args.batch_size, num_workers=workers)
        box = get_distillation_box(teacher, lenet5(), {"fashion_mnist/train": ds}, config, device, None, False, 1)
        a, b = Timing("kdtool KD epoch"), Timing(f"torchdistill KD epoch (num_workers={workers})")
        with kdtool_epoch:
            interleave(a, kdtool_epoch, b, lambda: torchdistill_epoch(box, device), args.repeats, args.warmup)
    inputs = {
        "bench": "vs_torchdistill",
        **machine(),
        "teacher": "small CNN (conv-BN-ReLU 32/64/128, eval mode)",
        "student": "lenet5",
        "loss": "KD, T = 1, β = 0 (pure soft target)",
        "data": f"fashion-mnist train, {len(dataset.train)}",
        "batch size": args.batch_size,
        "augmentation": "random crop 28, padding 4",
        "num_workers": workers,
        "repeats": args.repeats,
    }
    report(inputs, a, b, TARGET)


if __name__ == "__main__":
    main()
