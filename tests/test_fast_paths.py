"""Every fast path against the plain computation it replaces, and the speed options on a CPU."""

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from kdtool.config.runconfig import TrainConfig, check_amp
from kdtool.data import BatchLoader, ImageBatchTransform, Split
from kdtool.data.loader import random_crop
from kdtool.errors import KdtoolError
from kdtool.losses import OneHot
from kdtool.models.registry import build_model
from kdtool.runs.folder import RunDir
from kdtool.training import accel as accel_module
from kdtool.training.accel import Accel, frozen_for_inference, maybe_compile, resolve_accel
from kdtool.training.engine import Trainer, gradient_norm, predict
from kdtool.training.rundata import predict_run
from kdtool.workflows.pipeline import train_teacher

from .conftest import TINY

CPU = torch.device("cpu")


def reference_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """The plain per-pixel gather the batched crop replaces (same random draws)."""
    b, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)
    rows = offsets[0, :, None] + torch.arange(h)
    cols = offsets[1, :, None] + torch.arange(w)
    return padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("shape", [(7, 1, 28, 28), (5, 3, 32, 24)])
def test_batched_crop_equals_the_per_pixel_gather(dtype, shape):
    images = torch.randint(0, 256, shape).to(dtype)
    fast = random_crop(images, 4, torch.Generator().manual_seed(3))
    plain = reference_crop(images, 4, torch.Generator().manual_seed(3))
    assert fast.shape == images.shape and fast.dtype == dtype and fast.is_contiguous()
    assert torch.equal(fast, plain)
    assert random_crop(images, 0, torch.Generator()) is images


def test_batched_crop_draws_every_offset_uniformly():
    # One lit pixel per image: where it lands tells the offset the crop drew.
    n, size, padding = 8100, 9, 4
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    images[:, 0, 4, 4] = 255
    out = random_crop(images, padding, torch.Generator().manual_seed(0))
    assert out.min() == 0 and out.max() == 255
    lit = out.flatten(1).argmax(1)
    assert (out.flatten(1).amax(1) == 255).all()  # a 9-px image cropped with padding 4 always keeps the pixel
    counts = torch.bincount(lit, minlength=size * size).float()
    assert (counts > 0).all()  # all 81 offsets occur
    assert counts.max() / counts.mean() < 1.5 and counts.min() / counts.mean() > 0.5


def test_gradient_norm_equals_the_norm_of_all_gradients():
    model = build_model("lenet5", 10, 1, 28)
    F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    flat = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(gradient_norm(model), flat.norm())


def test_amp_values_are_checked_and_fp16_is_refused_on_cpu():
    assert check_amp(" BF16 ") == "bf16"
    with pytest.raises(KdtoolError, match="unknown --amp 'fp8'"):
        TrainConfig(amp="fp8").resolve()
    with pytest.raises(KdtoolError, match="--amp fp16 needs a CUDA device"):
        resolve_accel("fp16", False, CPU, print)
    plain = resolve_accel("none", False, CPU, print)
    assert plain == Accel() and plain.grad_scaler() is None


def test_bf16_on_cpu_autocasts_and_says_when_it_is_slow(monkeypatch):
    notes = []
    monkeypatch.setattr(accel_module, "_cpu_has_native_bf16", lambda: False)
    accel = resolve_accel("bf16", False, CPU, notes.append)
    assert len(notes) == 1 and "no native bfloat16" in notes[0]
    with accel.autocast():
        assert torch.nn.Linear(3, 2)(torch.randn(1, 3)).dtype == torch.bfloat16


def test_compile_falls_back_to_eager_with_a_reason(monkeypatch):
    notes = []
    monkeypatch.setattr(accel_module, "compile_unavailable", lambda device: "no C++ compiler")
    model = build_model("lenet5", 10, 1, 28)
    assert maybe_compile(model, CPU, notes.append) is model
    assert notes == ["--compile: torch.compile is unavailable here (no C++ compiler); training runs eagerly"]


def test_compile_error_at_the_first_forward_falls_back_to_eager(monkeypatch):
    """torch.compile is lazy: a compiler that fails only when first called must also end in eager mode
    (stand-in for torch.compile: nothing is compiled here)."""
    calls = []

    def lazily_failing_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            calls.append("compiled")
            raise RuntimeError("BackendCompilerFailed: inductor: g++ exited with 1\nlong traceback")

        return compiled

    monkeypatch.setattr(accel_module, "compile_unavailable", lambda device: None)
    monkeypatch.setattr(torch, "compile", lazily_failing_compile)
    notes = []
    torch.manual_seed(0)
    model = build_model("lenet5", 10, 1, 28)
    x = torch.randn(4, 1, 28, 28)
    expected = model._call_impl(x)  # the eager forward, bypassing the (patched) compiled one
    assert maybe_compile(model, CPU, notes.append) is model and notes == []
    first = model(x)  # the compiled call raises; answered eagerly
    assert torch.equal(first, expected) and calls == ["compiled"]
    assert notes == ["--compile: torch.compile is unavailable here (RuntimeError at its first call: "
                     "BackendCompilerFailed: inductor: g++ exited with 1); training runs eagerly"]  # fmt: skip
    first.sum().backward()  # the eager answer trains
    assert torch.equal(model(x), expected) and calls == ["compiled"] and len(notes) == 1  # eager from now on


def test_compile_that_works_at_the_first_forward_stays_compiled(monkeypatch):
    calls = []

    def working_compile(fn, *args, **kwargs):
        def compiled(*a, **k):
            calls.append("compiled")
            return fn(*a, **k)

        return compiled

    monkeypatch.setattr(accel_module, "compile_unavailable", lambda device: None)
    monkeypatch.setattr(torch, "compile", working_compile)
    notes = []
    model = maybe_compile(build_model("lenet5", 10, 1, 28), CPU, notes.append)
    x = torch.randn(2, 1, 28, 28)
    model(x), model(x)
    assert calls == ["compiled", "compiled"] and notes == []


def test_channels_last_and_frozen_teacher_keep_the_outputs():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, 3, 32).eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics worth folding
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0), bn.weight.data.normal_(), bn.bias.data.normal_()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        teacher = frozen_for_inference(model, channels_last=True)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.modules())  # folded into the convs
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is untouched
        assert not any(p.requires_grad for p in teacher.parameters())
        assert teacher.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(teacher(x), expected, rtol=1e-4, atol=1e-4)
        batch = Accel(channels_last=True).inputs(x)
        assert batch.is_contiguous(memory_format=torch.channels_last) and torch.equal(batch, x)


def test_a_teacher_that_cannot_be_traced_or_has_no_batchnorm_is_used_as_it_is():
    from kdtool.models.text import BiLSTMClassifier

    lstm = BiLSTMClassifier(3, 20, embed_dim=8, hidden_size=4)
    lstm.lstm.register_module("bn", torch.nn.BatchNorm1d(4))  # a BatchNorm, so folding is tried and fails
    assert frozen_for_inference(lstm, channels_last=False) is lstm
    lenet = build_model("lenet5", 10, 1, 28)
    assert frozen_for_inference(lenet, channels_last=False) is lenet


def _tiny_trainer(accel: Accel) -> Trainer:
    split = Split(torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8), torch.arange(32) % 10)
    tf = ImageBatchTransform((0.5,), (0.25,), crop_padding=4)
    train = BatchLoader(split, 8, tf, CPU, shuffle=True, augment=True)
    test = BatchLoader(split, 16, ImageBatchTransform((0.5,), (0.25,)), CPU)
    torch.manual_seed(0)
    model = accel.prepare(build_model("lenet5", 10, 1, 28))
    return Trainer(model, OneHot(), train, test, TrainConfig(epochs=1, warmup_epochs=0).resolve(), accel=accel)


def test_loss_scaling_path_trains_and_checkpoints_its_scale():
    # fp16 autocast is refused on CPUs by resolve_accel; built directly, it exercises the GradScaler path.
    trainer = _tiny_trainer(Accel("cpu", torch.float16))
    row = trainer.train_epoch(0)
    assert trainer.scaler is not None and "scaler" in trainer.state_dict()
    assert all(torch.isfinite(torch.tensor(v)) for v in row.values())
    trainer.load_state_dict(trainer.state_dict())


def test_channels_last_engine_matches_the_plain_one():
    plain, fast = _tiny_trainer(Accel()), _tiny_trainer(Accel(channels_last=True))
    plain.train_epoch(0), fast.train_epoch(0)
    logits_plain, labels = predict(plain.model, plain.test_loader)
    logits_fast, labels_fast = predict(fast.model, fast.test_loader, fast.accel)
    assert torch.equal(labels, labels_fast)
    torch.testing.assert_close(logits_fast, logits_plain, rtol=1e-3, atol=1e-3)


def test_cli_accepts_the_speed_flags_and_channels_last_predicts_the_same(run_cli, tmp_path):
    common = ("train-teacher", "--smoothing", "ls", "--model", "lenet5", *TINY)
    code, _, stderr = run_cli(*common, "--out", tmp_path / "plain")
    assert code == 0, stderr
    code, stdout, stderr = run_cli(*common, "--channels-last", "--amp", "bf16", "--out", tmp_path / "bf16")
    assert code == 0, stderr
    assert ("no native bfloat16" in stdout) != accel_module._cpu_has_native_bf16()
    code, _, stderr = run_cli(*common, "--channels-last", "--out", tmp_path / "fast")
    assert code == 0, stderr
    assert RunDir(tmp_path / "fast").config()["channels_last"] is True
    plain, labels, _ = predict_run(RunDir(tmp_path / "plain"), device="cpu")
    fast, labels_fast, _ = predict_run(RunDir(tmp_path / "fast"), device="cpu")
    assert torch.equal(labels, labels_fast)
    torch.testing.assert_close(fast, plain, rtol=1e-3, atol=1e-3)
    code, _, stderr = run_cli(*common, "--amp", "fp16", "--out", tmp_path / "fp16")
    assert code == 2 and "--amp fp16 needs a CUDA device" in stderr
    assert not (tmp_path / "fp16").exists()


def test_compile_flag_without_its_compiler_trains_eagerly(monkeypatch, tmp_path):
    monkeypatch.setattr(accel_module, "compile_unavailable", lambda device: "no C++ compiler")
    cfg = TrainConfig(smoothing="onehot", limit_train=64, limit_test=32, epochs=1, batch_size=32, compile=True,
                      out=str(tmp_path / "run"))  # fmt: skip
    console = Console(record=True, width=200)
    _, rows = train_teacher(cfg, False, console)
    assert "torch.compile is unavailable here (no C++ compiler); training runs eagerly" in console.export_text()
    assert len(rows) == 1


def _stepping_trainer(samples: int, batch: int) -> Trainer:
    split = Split(torch.randint(0, 256, (samples, 1, 28, 28), dtype=torch.uint8), torch.arange(samples) % 10)
    train = BatchLoader(split, batch, ImageBatchTransform((0.5,), (0.25,)), CPU, shuffle=True)
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1, warmup_epochs=0).resolve()
    return Trainer(build_model("lenet5", 10, 1, 28), OneHot(), train, train, cfg)


def test_the_gradient_norm_is_the_mean_over_every_tenth_step_and_says_how_many(monkeypatch):
    from kdtool.training import engine, tally

    measured: list[float] = []

    def recording(model):
        norm = engine_gradient_norm(model)
        measured.append(norm.item())
        return norm

    engine_gradient_norm = engine.gradient_norm
    monkeypatch.setattr(engine, "gradient_norm", recording)
    trainer = _stepping_trainer(samples=92, batch=4)  # 23 steps: steps 1, 11 and 21 are measured
    row = trainer.train_epoch(0)
    assert tally.GRAD_NORM_EVERY == 10 and len(measured) == 3 and row["grad_norm_steps"] == 3
    assert row["grad_norm"] == pytest.approx(sum(measured) / 3, rel=1e-6)


def test_the_epoch_row_is_the_sample_weighted_mean_of_its_steps(monkeypatch):
    losses: list[tuple[float, int]] = []
    forward = OneHot.forward

    def recording(self, logits, labels, inputs=None):
        loss = forward(self, logits, labels, inputs)
        losses.append((loss.item(), labels.shape[0]))
        return loss

    monkeypatch.setattr(OneHot, "forward", recording)
    row = _stepping_trainer(samples=30, batch=8).train_epoch(0)  # 8, 8, 8 and 6 samples
    assert [n for _, n in losses] == [8, 8, 8, 6]
    assert row["train_loss"] == pytest.approx(sum(v * n for v, n in losses) / 30, rel=1e-6)
    assert 0.0 <= row["train_acc"] <= 1.0


def test_a_skipped_first_fp16_step_leaves_the_fused_momentum_at_zero():
    # torch's fused SGD allocates its momentum buffers unwritten when a GradScaler skips the first step
    from kdtool.training.engine import fused_sgd

    param = torch.nn.Parameter(torch.ones(4))
    optimizer = fused_sgd([{"params": [param], "weight_decay": 5e-4}], lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    scaler.scale((param * torch.tensor([1e30, 1.0, 1.0, 1.0])).sum()).backward()  # overflows: the step is skipped
    scaler.unscale_(optimizer)
    scaler.step(optimizer)
    scaler.update()
    assert torch.equal(param.detach(), torch.ones(4))
    assert torch.equal(optimizer.state[param]["momentum_buffer"], torch.zeros(4))
    optimizer.zero_grad()
    param.sum().backward()  # a finite step: the same as torch's plain SGD from scratch
    plain_param = torch.nn.Parameter(torch.ones(4))
    plain = torch.optim.SGD([{"params": [plain_param], "weight_decay": 5e-4}], lr=0.1, momentum=0.9)
    plain_param.sum().backward()
    optimizer.step(), plain.step()
    assert torch.equal(param.detach(), plain_param.detach())


def test_compile_mode_reaches_torch_compile_and_needs_compile(monkeypatch, run_cli, tmp_path):
    import torch._inductor.config as inductor_config

    modes = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: modes.append(kwargs.get("mode")))
    monkeypatch.setattr(accel_module, "compile_unavailable", lambda device: None)
    monkeypatch.setattr(inductor_config.triton, "cudagraph_skip_dynamic_graphs", False)
    for mode in ("default", "reduce-overhead"):
        maybe_compile(build_model("lenet5", 10, 1, 28), CPU, print, mode)
    assert modes == [None, "reduce-overhead"] and inductor_config.triton.cudagraph_skip_dynamic_graphs
    common = ("train-teacher", "--smoothing", "ls", "--model", "lenet5", *TINY)
    code, _, stderr = run_cli(*common, "--compile-mode", "reduce-overhead", "--out", tmp_path / "no-compile")
    assert code == 2 and "--compile-mode does not apply to this run" in stderr and "--compile" in stderr
    code, _, stderr = run_cli(*common, "--compile", "--compile-mode", "fastest", "--out", tmp_path / "bad")
    assert code == 2 and "--compile-mode" in stderr and "reduce-overhead" in stderr
    assert not (tmp_path / "no-compile").exists() and not (tmp_path / "bad").exists()


def test_predict_keeps_each_batch_even_when_the_network_reuses_its_output_memory():
    # CUDA graphs (--compile-mode reduce-overhead) hand back the same output memory at every replay
    class ReusesItsOutput(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = torch.zeros(4, 3)

        def forward(self, x):
            return self.out.copy_(x.flatten(1)[:, :3].float())

    split = Split(torch.arange(8 * 3, dtype=torch.uint8).reshape(8, 1, 3, 1), torch.zeros(8, dtype=torch.long))
    logits, _ = predict(ReusesItsOutput(), BatchLoader(split, 4, ImageBatchTransform((0.0,), (1 / 255,)), CPU))
    torch.testing.assert_close(logits, torch.arange(24, dtype=torch.float32).reshape(8, 3))
