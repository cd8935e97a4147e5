"""LLS with row-sparse Q updates (--q-update sparse) trains the same Q as the dense update."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from kdtool import LearnableLabelSmoothing, QMatrix, RowLazySGD
from kdtool.config.runconfig import TrainConfig
from kdtool.data import Dataset, DatasetInfo, Split
from kdtool.losses import resolve_q_update
from kdtool.losses.lls import SPARSE_Q_FROM
from kdtool.runs.folder import RunDir
from kdtool.training.accel import Accel
from kdtool.training.engine import Trainer, lr_factor, seed_everything
from kdtool.workflows.pipeline import make_loaders

K = 50
CPU = torch.device("cpu")
# 30 epochs of 10 steps: 300 steps, of which the first 30 warm up with a new learning rate every step
SCHEDULES = {
    "warmup-multistep": {"warmup_epochs": 3, "schedule": "multistep", "milestones": [10, 20]},
    "warmup-cosine": {"warmup_epochs": 3, "schedule": "cosine"},
    "mixup-q-weight-decay": {"warmup_epochs": 2, "schedule": "multistep", "augment": "mixup", "q_weight_decay": 0.05},
}


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def tiny_dataset(num_classes_used: int = K, n: int = 160) -> Dataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, num_classes_used, (n,), generator=g)
    split = Split(torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8), labels)
    info = DatasetInfo("tiny", tuple(f"c{i}" for i in range(K)), 1, 8, (0.5,), (0.25,), hflip=True)
    return Dataset(info, split, split)


def tiny_trainer(mode: str, dataset: Dataset, q_init: torch.Tensor | None = None, accel: Accel = Accel(),
                 **options) -> Trainer:  # fmt: skip
    # lr 0.5 spikes: rounding then grows 100×. Weight decay on every parameter: the trajectory whose fp16 rounding
    # the tolerances below were set on (the network's own decay is not what these tests compare)
    options = {"augment": "none", "epochs": 30, "lr": 0.2, "decay_bias_norm": True, **options}
    cfg = TrainConfig(smoothing="lls", batch_size=16, device="cpu", weight_decay=5e-3, **options).resolve()
    train, test = make_loaders(dataset, cfg, CPU)
    seed_everything(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, K))
    target = LearnableLabelSmoothing(K, 0.3, q_update=mode)
    if q_init is not None:
        with torch.no_grad():
            target.q.copy_(q_init)
    return Trainer(model, target, train, test, cfg, accel=accel)


def train(trainer: Trainer, epochs: range | None = None) -> torch.Tensor:
    for epoch in epochs if epochs is not None else range(trainer.cfg.epochs):
        trainer.train_epoch(epoch)
    return trainer.target.learned_q().clone()


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_sparse_updates_train_the_dense_q_over_300_steps(schedule):
    dense, sparse = (tiny_trainer(mode, tiny_dataset(), **SCHEDULES[schedule]) for mode in ("dense", "sparse"))
    assert isinstance(sparse.optimizer, RowLazySGD) and not isinstance(dense.optimizer, RowLazySGD)
    q_dense, q_sparse = train(dense), train(sparse)
    assert len(dense.train_loader) * dense.cfg.epochs == 300 and q_dense.abs().max() > 0.01
    assert relative_difference(q_sparse, q_dense) < 1e-5
    for a, b in zip(sparse.model.parameters(), dense.model.parameters(), strict=True):
        assert relative_difference(a.detach(), b.detach()) < 1e-5


def test_rows_never_touched_decay_exactly_as_in_the_dense_run():
    # labels 0..29 only: rows 30..49 never get gradient, and (from a non-zero Q) only decay
    q0 = torch.randn(K, K, generator=torch.Generator().manual_seed(1))
    dense, sparse = (tiny_trainer(m, tiny_dataset(30), q0, **SCHEDULES["warmup-cosine"]) for m in ("dense", "sparse"))
    q_dense, q_sparse = train(dense), train(sparse)
    untouched = slice(30, K)
    assert relative_difference(q_sparse[untouched], q_dense[untouched]) < 1e-5
    # ... and as the recurrence of SGD with zero gradient says, in float64
    cfg, steps = sparse.cfg, len(sparse.train_loader)
    r, m = q0[untouched].double(), torch.zeros(K - 30, K, dtype=torch.float64)
    for step in range(steps * cfg.epochs):
        lr = cfg.lr * lr_factor(step, steps, cfg)
        m = cfg.momentum * m + cfg.q_weight_decay * r
        r = r - lr * m
    assert relative_difference(q_sparse[untouched].double(), r) < 1e-5
    assert relative_difference(q0[untouched].double(), r) > 1e-3  # they did decay


def test_resume_at_an_arbitrary_epoch_continues_the_same_training(tmp_path):
    straight = train(tiny_trainer("sparse", tiny_dataset(), **SCHEDULES["mixup-q-weight-decay"]))
    first = tiny_trainer("sparse", tiny_dataset(), **SCHEDULES["mixup-q-weight-decay"])
    train(first, range(13))
    torch.save(first.state_dict(), tmp_path / "state.pt")  # what a checkpoint holds
    second = tiny_trainer("sparse", tiny_dataset(), **SCHEDULES["mixup-q-weight-decay"])
    second.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert second.optimizer.state[second.target.q]["step"] == 13 * len(first.train_loader)
    resumed = train(second, range(13, 30))
    torch.testing.assert_close(resumed, straight, rtol=0, atol=0)
    dense = train(tiny_trainer("dense", tiny_dataset(), **SCHEDULES["mixup-q-weight-decay"]))
    assert relative_difference(resumed, dense) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixed_precision_trains_the_dense_q(dtype):
    runs = {}
    for mode in ("dense", "sparse"):
        trainer = tiny_trainer(mode, tiny_dataset(), accel=Accel("cpu", dtype), **SCHEDULES["warmup-multistep"])
        if dtype == torch.float16:  # a huge first scale: the first steps overflow and are skipped, Q's too
            trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
        runs[mode] = (train(trainer), trainer)
    (q_dense, dense), (q_sparse, sparse) = runs["dense"], runs["sparse"]
    if dtype == torch.float16:
        assert sparse.scaler.get_scale() == dense.scaler.get_scale() < 2.0**30
        assert sparse.optimizer.state[sparse.target.q]["step"] < 300
    assert q_dense.abs().max() > 0.01 and relative_difference(q_sparse, q_dense) < 1e-5


def test_row_lazy_sgd_equals_torch_sgd_with_a_new_learning_rate_every_step():
    g = torch.Generator().manual_seed(0)
    start = torch.randn(12, 5, generator=g)
    lazy_q, dense_q = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    lazy = RowLazySGD([{"params": [lazy_q], "weight_decay": 0.01, "row_lazy": True}], lr=0.3, momentum=0.9)
    dense = torch.optim.SGD([{"params": [dense_q], "weight_decay": 0.01}], lr=0.3, momentum=0.9)
    for step in range(200):  # 12 rows: the products are folded into the rows every 13 steps too
        rows = torch.randint(0, 12, (3,), generator=g)
        values = torch.randn(3, 5, generator=g)
        lr = 0.3 * (0.5 + 0.5 * torch.rand((), generator=g).item())
        for optimizer in (lazy, dense):
            optimizer.param_groups[0]["lr"] = lr
        lazy_q.grad = torch.sparse_coo_tensor(rows[None], values, (12, 5))
        dense_q.grad = torch.zeros(12, 5).index_add_(0, rows, values)
        lazy.step()
        dense.step()
        if step == 100:  # a state_dict brings every row up to date; loading it goes on from there
            lazy.load_state_dict(lazy.state_dict())
            assert lazy.state[lazy_q]["step"] == 101
        if step % 37 == 0:  # reading rows does not change them
            torch.testing.assert_close(lazy.rows(lazy_q, rows), dense_q.detach()[rows], rtol=1e-5, atol=1e-6)
    lazy.sync()
    assert relative_difference(lazy_q.detach(), dense_q.detach()) < 1e-5
    momentum = lazy.state[lazy_q]["momentum_buffer"]
    assert relative_difference(momentum, dense.state[dense_q]["momentum_buffer"]) < 1e-5


def test_the_closed_form_gradient_equals_autograd():
    torch.manual_seed(0)
    dense, sparse = LearnableLabelSmoothing(7, 0.2), LearnableLabelSmoothing(7, 0.2, q_update="sparse")
    with torch.no_grad():
        dense.q.normal_()
        sparse.q.copy_(dense.q)
    labels = torch.tensor([0, 3, 3, 6, 1])
    logits = torch.randn(5, 7)
    z_dense, z_sparse = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss_dense, loss_sparse = dense(z_dense, labels), sparse(z_sparse, labels)
    (2 * loss_dense).backward()
    (2 * loss_sparse).backward()
    torch.testing.assert_close(loss_sparse, loss_dense)
    torch.testing.assert_close(z_sparse.grad, z_dense.grad)
    assert sparse.q.grad.is_sparse
    torch.testing.assert_close(sparse.q.grad.to_dense(), dense.q.grad)


def test_auto_chooses_sparse_updates_from_the_threshold():
    assert resolve_q_update("auto", SPARSE_Q_FROM - 1) == "dense"
    assert resolve_q_update("auto", SPARSE_Q_FROM) == "sparse"
    assert resolve_q_update("dense", 10**5) == "dense"
    assert LearnableLabelSmoothing(SPARSE_Q_FROM, q_update="auto").row_sparse


def test_q_update_is_recorded_said_in_the_header_and_refused_for_other_methods(run_cli, tmp_path):
    common = ("train-teacher", "--limit-train", "64", "--limit-test", "32", "--epochs", "1", "--batch-size", "32",
              "--device", "cpu")  # fmt: skip
    code, stdout, stderr = run_cli(*common, "--q-update", "sparse", "--out", tmp_path / "lls")
    assert code == 0, stderr
    assert "Q updates sparse (--q-update sparse, K = 10)" in stdout
    assert RunDir(tmp_path / "lls").config()["q_update"] == "sparse"
    code, stdout, _ = run_cli(*common, "--out", tmp_path / "auto")
    assert "Q updates dense (--q-update auto, K = 10)" in stdout
    code, _, stderr = run_cli(*common, "--smoothing", "ls", "--q-update", "sparse", "--out", tmp_path / "ls")
    assert code == 2 and "--q-update does not apply to this run (--smoothing ls)" in stderr
    assert run_cli(*common, "--smoothing", "ls", "--out", tmp_path / "ls")[0] == 0
    assert "q_update" not in RunDir(tmp_path / "ls").config()
    code, _, stderr = run_cli(*common, "--q-update", "rows", "--out", tmp_path / "bad")
    assert code == 2 and "unknown --q-update 'rows'" in stderr


def test_cli_resume_of_a_sparse_run_is_bit_identical(run_cli, tmp_path, monkeypatch):
    args = ("train-teacher", "--q-update", "sparse", "--limit-train", "256", "--limit-test", "64", "--batch-size",
            "32", "--epochs", "3", "--augment", "mixup", "--device", "cpu")  # fmt: skip
    assert run_cli(*args, "--out", tmp_path / "straight")[0] == 0
    original = Trainer.train_epoch

    def dies_in_second_epoch(self, epoch, on_step=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, on_step)

    monkeypatch.setattr(Trainer, "train_epoch", dies_in_second_epoch)
    assert run_cli(*args, "--out", tmp_path / "resumed")[0] == 130
    monkeypatch.setattr(Trainer, "train_epoch", original)
    code, _, stderr = run_cli(*args, "--out", tmp_path / "resumed", "--resume")
    assert code == 0, stderr
    straight = QMatrix.load(tmp_path / "straight" / "q.safetensors").logits
    torch.testing.assert_close(QMatrix.load(tmp_path / "resumed" / "q.safetensors").logits, straight, rtol=0, atol=0)


@pytest.mark.slow  # a 2-process torchrun job and a plain run: ~15 s on 2 cores
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_process_torchrun_keeps_q_identical_and_equal_to_one_process(tmp_path):
    common = ["train-teacher", "--smoothing", "lls", "--q-update", "sparse", "--limit-train", "256", "--limit-test",
              "64", "--epochs", "2", "--no-augment", "--device", "cpu", "--seed", "3"]  # fmt: skip
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [str(bin_dir / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "kdtool", *common,
         "--batch-size", "32", "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes; largest parameter difference from rank 0: 0" in two.stdout
    one = subprocess.run([str(bin_dir / "kdtool"), *common, "--batch-size", "64", "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    q_ddp = QMatrix.load(tmp_path / "ddp" / "q.safetensors").logits
    q_one = QMatrix.load(tmp_path / "one" / "q.safetensors").logits
    assert q_ddp.abs().max() > 0
    torch.testing.assert_close(q_ddp, q_one, rtol=1e-4, atol=1e-5)
