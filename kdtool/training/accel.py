"""Speed options of a run: mixed precision (``--amp``), channels-last memory format, ``torch.compile``.

They are resolved once against the training device into an :class:`Accel`, which the engine applies
on every step. Where an option cannot work (fp16 on a CPU, bf16 on a GPU without it) the run stops
before anything is written; where it can only work slowly or not at all (bf16 on a CPU without
native bf16, ``torch.compile`` without its compiler) one line says so and the run goes on. The
defaults leave training plain fp32 eager, bit for bit.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from kdtool.config.runconfig import check_amp
from kdtool.errors import KdtoolError

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

Note = Callable[[str], None]


def _cpu_has_native_bf16() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass(frozen=True)
class Accel:
    """How the engine runs each step: autocast dtype (None: fp32) and input memory format."""

    device_type: str = "cpu"
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context of forward passes and losses (mixed precision, or nothing)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp_dtype)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the network was put in (image batches only)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling so small gradients do not flush to zero; bf16 and fp32 do not."""
        return torch.amp.GradScaler(self.device_type) if self.amp_dtype == torch.float16 else None

    def prepare(self, model: nn.Module) -> nn.Module:
        """Put a network's weights in the memory format its inputs will have (in place)."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model


def resolve_accel(amp: str, channels_last: bool, device: torch.device, note: Note) -> Accel:
    """Check the speed options against ``device``; raise a KdtoolError where one cannot work there."""
    amp = check_amp(amp)
    dtype = _AMP_DTYPES.get(amp)
    if device.type == "cpu" and dtype == torch.float16:
        raise KdtoolError("--amp fp16 needs a CUDA device; on a CPU use --amp bf16, or leave --amp off")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise KdtoolError(f"--amp bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use --amp fp16")
    if device.type == "cpu" and dtype == torch.bfloat16 and not _cpu_has_native_bf16():
        note("--amp bf16: this CPU has no native bfloat16 (AVX512-BF16/AMX), so bf16 autocast runs slower than fp32")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels once
    return Accel(device.type, dtype, channels_last)


def compile_unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot run here, or None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return "TorchDynamo does not support this Python or platform"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed"
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("clang++")):
        return "no C++ compiler (g++ or clang++) for its CPU code"
    return None


def _compile_fallback_note(reason: str) -> str:
    return f"--compile: torch.compile is unavailable here ({reason}); training runs eagerly"


def maybe_compile(model: nn.Module, device: torch.device, note: Note, mode: str = "default") -> nn.Module:
    """``model`` compiled in place with ``torch.compile`` in ``mode`` (its state_dict keys unchanged), or as it
    was, with one line saying why, where torch.compile cannot run.

    ``reduce-overhead`` replays CUDA graphs, whose outputs the next replay overwrites: what keeps a network's
    outputs beyond a step copies them (:func:`~kdtool.training.engine.predict` does). A graph whose shapes vary
    (the last, smaller batch once compiled dynamically) runs without CUDA graphs rather than recording one per
    shape.

    torch.compile is lazy: most of its failures (no working compiler, an unsupported operation, a
    backend error) only show at the first forward. That first call is therefore guarded: if it
    raises, the same one line is printed and the model goes back to its eager forward for good (and
    the call is answered eagerly, so an error of the model itself still surfaces, from eager code)."""
    reason = compile_unavailable(device)
    if reason is not None:
        note(_compile_fallback_note(reason))
        return model
    if mode == "reduce-overhead":
        import torch._inductor.config

        torch._inductor.config.triton.cudagraph_skip_dynamic_graphs = True
    model.compile(mode=None if mode == "default" else mode)
    compiled = model._compiled_call_impl

    def first_call(*args, **kwargs):
        try:
            out = compiled(*args, **kwargs)
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            note(_compile_fallback_note(f"{type(exc).__name__} at its first call: {first_line}"[:300]))
            model._compiled_call_impl = None  # nn.Module.__call__ then runs the eager forward
            return model._call_impl(*args, **kwargs)
        model._compiled_call_impl = compiled  # it worked: later calls go straight to the compiled code
        return out

    model._compiled_call_impl = first_call
    return model


def frozen_for_inference(model: nn.Module, channels_last: bool) -> nn.Module:
    """A frozen network (a KD teacher) in eval mode, made cheaper to run where that changes nothing
    but rounding: each BatchNorm that follows a convolution folded into it (:func:`fold_batchnorm`),
    and the weights channels-last when asked (on a CPU its convolutions run about 1.5-2× faster that
    way). The result may be a new module; ``model`` itself is left as it was, apart from eval mode."""
    model.eval().requires_grad_(False)
    model = fold_batchnorm(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode ``model`` with every Conv→BatchNorm pair folded into one convolution
    (torch.fx), or ``model`` itself when it has no BatchNorm or cannot be traced symbolically (text
    models branch on their input's length): a frozen teacher's BatchNorms are affine maps that cost a
    pass over every activation (small CNN teacher on a CPU: 49 → 29 ms a batch)."""
    if model.training or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model
    from torch.fx.experimental.optimization import fuse

    try:
        fused = fuse(model, inplace=False)
    except Exception:  # tracing fails in many ways on data-dependent code; the unfolded model is exact
        return model
    for hook in model._forward_pre_hooks.values():  # tracing keeps forward() only: keep an input adapter
        fused.register_forward_pre_hook(hook)
    return fused
