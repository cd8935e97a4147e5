"""Model zoos: ``timm:NAME`` (any model of ``timm.list_models()``, an optional extra) and ``torchvision:NAME``
(any classification model of torchvision), sized to the dataset's classes, channels and input size, with
pretrained weights from a local file or the zoo's own download.

Weights files are safetensors, or PyTorch state dicts read with ``torch.load(weights_only=True)``: nothing is
ever unpickled beyond tensors and containers.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from kdtool.errors import KdtoolError, close_names

ZOOS = ("timm", "torchvision")
HUB = "hub"  # --pretrained hub: the zoo's own download instead of a local file
TIMM_INSTALL = 'timm: models need the timm package: pip install "kdtool[timm]"'


def is_zoo_name(name: str) -> bool:
    """Whether ``name`` is a ``timm:`` or ``torchvision:`` model."""
    return name.partition(":")[0] in ZOOS and ":" in name


def _timm() -> ModuleType:
    try:
        import timm
    except ImportError:
        raise KdtoolError(TIMM_INSTALL) from None
    return timm


def torchvision_models() -> ModuleType:
    """``torchvision.models``; torchvision takes seconds to import (its ops pull in torch._dynamo): only when
    one of its networks is built or listed."""
    from torchvision import models

    return models


@cache
def zoo_names(zoo: str) -> tuple[str, ...]:
    """Every model name of ``zoo`` (without the ``zoo:`` prefix), sorted."""
    if zoo == "timm":
        return tuple(sorted(_timm().list_models()))
    models = torchvision_models()
    return tuple(sorted(models.list_models(module=models)))


def timm_available() -> bool:
    try:
        _timm()
    except KdtoolError:
        return False
    return True


def matches(name: str, pattern: str) -> bool:
    """Whether ``name`` matches ``pattern``: a glob (``resnet*``), or else a substring."""
    return fnmatch.fnmatchcase(name, pattern if any(c in pattern for c in "*?[") else f"*{pattern}*")


def matching(zoo: str, pattern: str) -> list[str]:
    """``zoo:NAME`` for the names of ``zoo`` matching ``pattern`` (see :func:`matches`)."""
    return [f"{zoo}:{n}" for n in zoo_names(zoo) if matches(n, pattern)]


def check_zoo_name(name: str) -> None:
    """Refuse a zoo name its zoo does not have (suggesting close ones), or a timm name without timm."""
    zoo, _, arch = name.partition(":")
    names = zoo_names(zoo)
    if arch.split(".")[0] in names:  # timm names may carry a pretrained tag: resnet50.a1_in1k
        return
    close = close_names(arch, names, n=3)
    hint = f"did you mean {', '.join(f'{zoo}:{c}' for c in close)}?" if close else f"see kdtool models {zoo}:"
    raise KdtoolError(f"unknown {zoo} model {arch!r}: {hint}")


@dataclass(frozen=True)
class ZooDataConfig:
    """What a zoo model's pretrained weights were trained on: input size and normalisation (0–1 scale)."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def data_config_source(name: str) -> str:
    """Where :func:`zoo_data_config` takes a zoo model's input from, in words."""
    zoo, _, arch = name.partition(":")
    return f"timm's pretrained config for {arch}" if zoo == "timm" else f"torchvision's default weights of {arch}"


def zoo_data_config(name: str) -> ZooDataConfig:
    """The model's own data config: timm's pretrained config, or torchvision's default weights' transforms."""
    zoo, _, arch = name.partition(":")
    if zoo == "timm":
        from timm.data import resolve_data_config

        cfg = _timm().models.get_pretrained_cfg(arch)
        data = resolve_data_config({}, pretrained_cfg=cfg.to_dict() if cfg is not None else {})
        return ZooDataConfig(int(data["input_size"][-1]), tuple(data["mean"]), tuple(data["std"]))
    transforms = torchvision_models().get_model_weights(arch).DEFAULT.transforms()
    return ZooDataConfig(int(transforms.crop_size[0]), tuple(transforms.mean), tuple(transforms.std))


@dataclass(frozen=True)
class LoadReport:
    """What a pretrained load took from the weights: tensors loaded, and the names of those skipped."""

    loaded: int
    skipped: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(self.skipped[:4]) + (", ..." if len(self.skipped) > 4 else "")
        return f"{self.loaded} tensors loaded, {len(self.skipped)} skipped" + (f" ({shown})" if shown else "")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: safetensors, or a PyTorch state dict (``weights_only``; a checkpoint
    holding it under ``state_dict`` or ``model`` is unwrapped). Anything else is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise KdtoolError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load's refusals (pickled code), corrupt files: one line
        raise KdtoolError(f"cannot read weights file {path} as safetensors or a plain state dict: "
                          f"{_first_line(exc)}") from None  # fmt: skip
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KdtoolError(f"weights file {path} is not a state dict (a mapping of names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _timm_head(arch: str) -> tuple[str, ...]:
    cfg = _timm().models.get_pretrained_cfg(arch)
    classifier = (cfg.classifier if cfg is not None else None) or ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _timm_fixed_size(arch: str) -> bool:
    cfg = _timm().models.get_pretrained_cfg(arch)
    return bool(cfg is not None and cfg.fixed_input_size)


def _create_timm(arch: str, num_classes: int, channels: int, size: int, **pretrained: object) -> nn.Module:
    # models whose size is fixed at construction (ViTs' position embeddings) are built for the input size
    sized = {"img_size": size} if _timm_fixed_size(arch) else {}
    return _timm().create_model(arch, num_classes=num_classes, in_chans=channels, **sized, **pretrained)


def input_and_head_layers(model: nn.Module) -> tuple[str, str]:
    """Names of a network's first convolution and of its classifier head (its last linear layer)."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return convs[0], linears[-1]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _create_torchvision(arch: str, num_classes: int, channels: int) -> nn.Module:
    model = torchvision_models().get_model(arch, weights=None, num_classes=num_classes)
    first, _ = input_and_head_layers(model)
    conv = model.get_submodule(first)
    if conv.in_channels != channels:  # the zoo's stem, reading the dataset's channels
        _set_module(model, first, nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                            conv.dilation, conv.groups, conv.bias is not None))  # fmt: skip
    return model


def _check_input_size(model: nn.Module, name: str, channels: int, size: int) -> nn.Module:
    """Refuse (one line) a network that cannot read ``channels``×``size``×``size`` images."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, size, size))
    except (RuntimeError, ValueError, AssertionError, TypeError) as exc:
        raise KdtoolError(f"{name} cannot take {size}×{size} px inputs ({_first_line(exc)}): choose another "
                          f"--input-size (its own is {zoo_data_config(name).size})") from None  # fmt: skip
    return model.train(was_training)


def build_zoo_model(name: str, num_classes: int, channels: int, size: int) -> nn.Module:
    """A freshly initialised zoo network with ``num_classes`` outputs, reading ``channels``×``size`` px images."""
    check_zoo_name(name)
    zoo, _, arch = name.partition(":")
    if zoo == "timm":
        model = _create_timm(arch, num_classes, channels, size)
    else:
        model = _create_torchvision(arch, num_classes, channels)
    return _check_input_size(model, name, channels, size)


@contextlib.contextmanager
def _quiet_download() -> Iterator[None]:
    """A zoo download without its progress lines and retry warnings: kdtool reports a failure in one line."""
    hub = logging.getLogger("huggingface_hub")
    level = hub.level
    hub.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hub.setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _download_error(name: str, source: str, exc: Exception) -> KdtoolError:
    reason = _first_line(exc)
    return KdtoolError(f"could not download the pretrained weights of {name} from {source} ({reason}): "
                       f"pass a local file, --pretrained FILE")  # fmt: skip


def _timm_pretrained(arch: str, name: str, num_classes: int, channels: int, size: int,
                     weights: str) -> tuple[nn.Module, LoadReport]:  # fmt: skip
    """timm's own pretrained loading (head dropped and first convolution adapted by timm's rules)."""
    head = [f"{c}.{p}" for c in _timm_head(arch) for p in ("weight", "bias")]
    if weights == HUB:
        return _timm_hub(arch, name, num_classes, channels, size, head)
    state = read_state_dict(weights)
    file_classes = next((int(state[k].shape[0]) for k in head if k in state and k.endswith(".weight")), num_classes)
    overlay = {"file": str(weights), "num_classes": file_classes}  # timm keeps the head when it has K outputs
    try:
        model = _create_timm(arch, num_classes, channels, size, pretrained=True, pretrained_cfg_overlay=overlay)
    except (RuntimeError, KeyError) as exc:
        raise _misfit(weights, name, exc) from None
    skipped = tuple(k for k in head if k in state) if file_classes != num_classes else ()
    return model, LoadReport(len(state) - len(skipped), skipped)


def _timm_hub(arch: str, name: str, num_classes: int, channels: int, size: int,
              head: list[str]) -> tuple[nn.Module, LoadReport]:  # fmt: skip
    """timm's pretrained weights for ``arch`` from its hub (``head``, its classifier's tensors, dropped unless it
    has ``num_classes`` outputs there too)."""
    cfg = _timm().models.get_pretrained_cfg(arch)
    source = (cfg.hf_hub_id or cfg.url) if cfg is not None else None
    if not source:
        raise KdtoolError(f"timm has no pretrained weights for {name}: pass a local file, --pretrained FILE")
    try:
        with _quiet_download():
            model = _create_timm(arch, num_classes, channels, size, pretrained=True)
    except Exception as exc:  # offline: huggingface_hub and urllib raise their own kinds
        raise _download_error(name, source, exc) from None
    kept = num_classes == (cfg.num_classes or 1000)
    return model, LoadReport(len(model.state_dict()) - (0 if kept else len(head)), () if kept else tuple(head))


def _misfit(weights: str | os.PathLike, name: str, exc: Exception) -> KdtoolError:
    text = " ".join(str(exc).split())
    return KdtoolError(f"weights file {weights} does not fit {name}: {text[:200]}{'...' if len(text) > 200 else ''}")


def check_fits(state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], name: str,
               weights: str | os.PathLike, replaceable: set[str] = frozenset()) -> None:  # fmt: skip
    """Refuse (one line, with counts and an example each) weights ``state`` that are not a state dict of the
    network ``name`` (whose own is ``own``): tensors missing or foreign, or of another shape outside
    ``replaceable``."""
    missing = [k for k in own if k not in state and k not in replaceable]
    foreign = [k for k in state if k not in own]
    misshapen = [k for k in state if k in own and state[k].shape != own[k].shape and k not in replaceable]
    if missing or foreign or misshapen:
        problems = [f"{len(v)} {what} (e.g. {v[0]!r})" for v, what in ((missing, f"tensors of {name} missing"),
                    (foreign, "tensors not in it"), (misshapen, "of another shape")) if v]  # fmt: skip
        raise KdtoolError(f"weights file {weights} does not fit {name}: {', '.join(problems)}")


def _torchvision_pretrained(arch: str, name: str, num_classes: int, channels: int,
                            weights: str) -> tuple[nn.Module, LoadReport]:  # fmt: skip
    """A torchvision network from a state dict: its head and a first convolution of another shape are skipped
    (left freshly initialised); any other difference means another architecture and is refused."""
    if weights == HUB:
        default = torchvision_models().get_model_weights(arch).DEFAULT
        try:
            with _quiet_download():
                state = default.get_state_dict(progress=False)
        except Exception as exc:  # offline: urllib's errors
            raise _download_error(name, default.url, exc) from None
    else:
        state = read_state_dict(weights)
    model = _create_torchvision(arch, num_classes, channels)
    first, head = input_and_head_layers(model)
    own = model.state_dict()
    check_fits(state, own, name, weights, {k for k in own if k.startswith((f"{first}.", f"{head}."))})
    loadable = {k: v for k, v in state.items() if v.shape == own[k].shape}
    model.load_state_dict(loadable, strict=False)
    return model, LoadReport(len(loadable), tuple(k for k in state if k not in loadable))


def load_pretrained(name: str, num_classes: int, channels: int, size: int,
                    weights: str) -> tuple[nn.Module, LoadReport]:  # fmt: skip
    """A zoo network initialised from pretrained ``weights`` (a file, or :data:`HUB`), with its head sized to
    ``num_classes`` and its first convolution to ``channels``; with what was loaded and skipped."""
    check_zoo_name(name)
    zoo, _, arch = name.partition(":")
    if zoo == "timm":
        model, report = _timm_pretrained(arch, name, num_classes, channels, size, weights)
    else:
        model, report = _torchvision_pretrained(arch, name, num_classes, channels, weights)
    return _check_input_size(model, name, channels, size), report
