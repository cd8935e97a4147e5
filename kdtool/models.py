"""Model registry: every network kdtool trains, sized by the dataset's channels, image size and K."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision import models as tvm

from kdtool.errors import KdtoolError


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max-pooling; 28×28 inputs get the classic 2-pixel padding."""

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2 if image_size < 32 else 0), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )  # fmt: skip
        flat = _flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Linear(flat, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallAlexNet(nn.Module):
    """The small AlexNet used for 28–32 px images (five convolutions, three poolings, two hidden FCs)."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
        )  # fmt: skip
        flat = _flat_features(self.features, in_channels, image_size)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(flat, 1024), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(1024, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _flat_features(features: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, in_channels, image_size, image_size)).shape[1])


def _cifar_resnet(builder: Callable[..., tvm.ResNet]) -> Callable[[int, int, int], nn.Module]:
    """torchvision's ResNet with a CIFAR stem (3×3 stride-1 first conv, no max-pool) for small images."""

    def build(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        net = builder(weights=None, num_classes=num_classes)
        if image_size <= 64:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        return net

    return build


def _mobilenet_v2(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    net = tvm.mobilenet_v2(weights=None, num_classes=num_classes)
    stem = net.features[0][0]
    stride = 1 if image_size <= 64 else 2  # keep resolution on small images
    net.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=stride, padding=1, bias=False)
    return net


MODELS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "lenet5": LeNet5,
    "alexnet": SmallAlexNet,
    "resnet18": _cifar_resnet(tvm.resnet18),
    "resnet34": _cifar_resnet(tvm.resnet34),
    "resnet50": _cifar_resnet(tvm.resnet50),
    "mobilenet_v2": _mobilenet_v2,
}


def build_model(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Instantiate a registered model for ``num_classes`` outputs and the given input shape."""
    if name not in MODELS:
        raise KdtoolError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return MODELS[name](num_classes, in_channels, image_size)
