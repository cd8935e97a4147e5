"""Model registry: every network kdtool trains, sized by the dataset (image shape or vocabulary) and K: kdtool's
own (:data:`MODELS`) and the ``timm:`` and ``torchvision:`` zoos (:mod:`kdtool.models.zoo`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kdtool.data.dataset import DatasetInfo
from kdtool.errors import KdtoolError, unknown_choice
from kdtool.models.text import TEXT_MODELS
from kdtool.models.zoo import ZOOS, build_zoo_model, check_zoo_name, is_zoo_name, torchvision_models


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


def _cifar_resnet(depth: int) -> Callable[[int, int, int], nn.Module]:
    """torchvision's ResNet with a CIFAR stem (3×3 stride-1 first conv, no max-pool) for small images."""

    def build(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        net = getattr(torchvision_models(), f"resnet{depth}")(weights=None, num_classes=num_classes)
        if image_size <= 64:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        return net

    return build


def _mobilenet_v2(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    net = torchvision_models().mobilenet_v2(weights=None, num_classes=num_classes)
    stem = net.features[0][0]
    stride = 1 if image_size <= 64 else 2  # keep resolution on small images
    net.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, 3, stride=stride, padding=1, bias=False)
    return net


# Image models are factory(num_classes, in_channels, image_size); text models (TEXT_MODELS) are
# factory(num_classes, vocab_size, embed_dim=..., hidden_size=...).
MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "alexnet": SmallAlexNet,
    "resnet18": _cifar_resnet(18),
    "resnet34": _cifar_resnet(34),
    "resnet50": _cifar_resnet(50),
    "mobilenet_v2": _mobilenet_v2,
    **TEXT_MODELS,
}
# one line per model of MODELS, for `kdtool models` (a test keeps the two in step)
DESCRIPTIONS = {
    "lenet5": "LeNet-5 (ReLU, max-pooling), 28–32 px images",
    "alexnet": "small AlexNet for 28–32 px images (5 convolutions, 2 hidden FC layers)",
    "resnet18": "ResNet-18 with a CIFAR stem on images up to 64 px (torchvision's stem above)",
    "resnet34": "ResNet-34 with a CIFAR stem on images up to 64 px (torchvision's stem above)",
    "resnet50": "ResNet-50 with a CIFAR stem on images up to 64 px (torchvision's stem above)",
    "mobilenet_v2": "MobileNetV2, stride-1 stem on images up to 64 px",
    "bilstm": "text: embedding, bidirectional LSTM, max-pooling over time",
    "textcnn": "text: embedding, convolutions of widths 3, 4, 5, max-pooling (Kim 2014)",
}


# kdtool.fit records a user's own module as python:CLASS; kdtool cannot rebuild it from that name
PYTHON_PREFIX = "python:"


def check_model_name(name: str) -> None:
    """Refuse a model name kdtool cannot build (one line naming the choices, or close zoo names)."""
    if name.startswith(PYTHON_PREFIX):
        return
    if is_zoo_name(name):
        check_zoo_name(name)
    elif name not in MODELS:
        zoos = " or ".join(f"{z}:NAME" for z in ZOOS)
        raise unknown_choice("model", name, tuple(MODELS), f"{', '.join(MODELS)}, {zoos} (kdtool models)")


def build_model(
    name: str, num_classes: int | DatasetInfo, in_channels: int = 1, image_size: int = 28, **text_options: int
) -> nn.Module:
    """Instantiate a registered model.

    Pass the dataset's :class:`DatasetInfo` in place of ``num_classes`` to size any model from it
    (image models by channels and image size, text models by vocabulary size), or, for image models,
    ``num_classes, in_channels, image_size``. ``text_options`` (``embed_dim``, ``hidden_size``) size
    text models; image models ignore them.
    """
    check_model_name(name)
    if name.startswith(PYTHON_PREFIX):
        raise KdtoolError(f"{name} is a module of your own (trained by kdtool.fit): kdtool cannot build it; load "
                          f"the run's model.safetensors into it with load_state_dict")  # fmt: skip
    info = num_classes if isinstance(num_classes, DatasetInfo) else None
    if name in TEXT_MODELS:
        if info is None or info.kind != "text":
            raise KdtoolError(f"model {name!r} reads text: train it on goemotions, goemotions-ekman or text:PATH")
        return TEXT_MODELS[name](info.num_classes, info.vocab_size, **text_options)
    if info is not None:
        if info.kind != "image":
            raise KdtoolError(f"model {name!r} reads images but {info.name} is text: use {' or '.join(TEXT_MODELS)}")
        num_classes, in_channels, image_size = info.num_classes, info.channels, info.image_size
    if is_zoo_name(name):
        return build_zoo_model(name, num_classes, in_channels, image_size)
    return MODELS[name](num_classes, in_channels, image_size)
