"""The distillation losses of ``distill --kd-loss``: DKD, DIST and logit standardisation, each against a hand
computation and against its paper's formula written out plainly; then the command line."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import kdtool
from kdtool import dist_loss, dkd_loss, kd_loss, standardize_logits
from kdtool.config.runconfig import KD_LOSSES
from kdtool.distill.teachers import KD_LOSSES as KD_LOSS_FACTORIES
from kdtool.errors import KdtoolError
from kdtool.losses import DISTKD, DecoupledKD, KnowledgeDistillation
from tests.conftest import TINY


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def softmax(z, temperature=1.0):
    e = [math.exp(v / temperature) for v in z]
    return [v / sum(e) for v in e]


# -- DKD ------------------------------------------------------------------------------------------


def test_dkd_matches_a_hand_computation():
    # One sample, three classes, label 0: z_s = (1, 0, -2), z_t = (0, 2, 1), T = 2, α = 1, β = 8.
    ps, pt = softmax([1, 0, -2], 2), softmax([0, 2, 1], 2)
    tckd = kl([pt[0], 1 - pt[0]], [ps[0], 1 - ps[0]])
    nckd = kl(softmax([2, 1], 2), softmax([0, -2], 2))  # the two non-target classes, renormalised
    expected = 4 * (1 * tckd + 8 * nckd)
    assert tckd > 0.05 and nckd > 0.01
    loss = dkd_loss(torch.tensor([[1.0, 0.0, -2.0]]), torch.tensor([[0.0, 2.0, 1.0]]), torch.tensor([0]),
                    alpha=1.0, beta=8.0, temperature=2.0)  # fmt: skip
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def dkd_as_in_the_paper(zs, zt, y, alpha, beta, temperature):
    """DKD written out sample by sample: b = [p_y, 1 − p_y], p̂ = the non-target distribution."""
    total = 0.0
    for s, t, label in zip(zs.tolist(), zt.tolist(), y.tolist(), strict=True):
        ps, pt = softmax(s, temperature), softmax(t, temperature)
        tckd = kl([pt[label], 1 - pt[label]], [ps[label], 1 - ps[label]])
        others = [k for k in range(len(s)) if k != label]
        nckd = kl([pt[k] / (1 - pt[label]) for k in others], [ps[k] / (1 - ps[label]) for k in others])
        total += temperature**2 * (alpha * tckd + beta * nckd)
    return total / len(y)


@pytest.mark.parametrize(("alpha", "beta", "temperature"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (2.0, 0.0, 3.0)])
def test_dkd_equals_the_papers_decomposition(alpha, beta, temperature):
    torch.manual_seed(0)
    zs, zt, y = torch.randn(7, 6) * 3, torch.randn(7, 6) * 3, torch.randint(0, 6, (7,))
    expected = dkd_as_in_the_paper(zs.double(), zt.double(), y, alpha, beta, temperature)
    assert dkd_loss(zs, zt, y, alpha, beta, temperature).item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kd_is_tckd_plus_teacher_non_target_mass_times_nckd_per_sample(temperature):
    torch.manual_seed(1)
    zs, zt, y = torch.randn(5, 8) * 2, torch.randn(5, 8) * 2, torch.randint(0, 8, (5,))
    for i in range(5):
        s, t, label = zs[i : i + 1], zt[i : i + 1], y[i : i + 1]
        kd = kd_loss(s, t, label, temperature=temperature) / temperature**2  # KL(p_t ‖ p_s)
        tckd = dkd_loss(s, t, label, alpha=1.0, beta=0.0, temperature=temperature) / temperature**2
        nckd = dkd_loss(s, t, label, alpha=0.0, beta=1.0, temperature=temperature) / temperature**2
        non_target_mass = 1 - F.softmax(t / temperature, 1)[0, label].item()
        assert kd.item() == pytest.approx(tckd.item() + non_target_mass * nckd.item(), rel=1e-5, abs=1e-7)


def test_dkd_is_zero_when_the_student_matches_and_keeps_the_teacher_fixed():
    zt = torch.randn(4, 5)
    zs = zt.clone().requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3])
    assert dkd_loss(zs, zt, y).item() == pytest.approx(0.0, abs=1e-6)
    teacher = torch.randn(4, 5, requires_grad=True)
    dkd_loss(torch.randn(4, 5, requires_grad=True), teacher, y).backward()
    assert teacher.grad is None


def test_dkd_stays_finite_with_a_saturated_teacher():
    zs, zt = torch.randn(3, 4), torch.tensor([[80.0, -80.0, -80.0, -80.0]] * 3)
    zs.requires_grad_(True)
    loss = dkd_loss(zs, zt, torch.tensor([0, 0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zs.grad).all()


def test_the_dkd_target_adds_cross_entropy_and_warms_up_per_epoch():
    torch.manual_seed(2)
    zs, zt, y = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    target = DecoupledKD(None, ce_weight=1.0, alpha=1.0, beta=8.0, temperature=4.0, warmup_epochs=20)
    term = dkd_loss(zs, zt, y, 1.0, 8.0, 4.0)
    for epoch, weight in ((0, 1 / 20), (9, 10 / 20), (19, 1.0), (50, 1.0)):
        target.on_epoch_start(epoch)
        torch.testing.assert_close(target(zs, y, teacher_logits=zt), F.cross_entropy(zs, y) + weight * term)
    no_warmup = DecoupledKD(None, ce_weight=0.0, warmup_epochs=0)
    torch.testing.assert_close(no_warmup(zs, y, teacher_logits=zt), term)


# -- DIST -----------------------------------------------------------------------------------------


def test_dist_matches_a_hand_computation():
    # Two samples, two classes, T = 1. Each row of a 2-class distribution is (p, 1-p): centred, it is
    # ±(p − ½)(1, −1), so every row correlation is +1 when both p's are on the same side of ½.
    zs, zt = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    ps, pt = F.softmax(zs, 1), F.softmax(zt, 1)
    inter = 0.0  # both rows perfectly correlated
    # columns: class 0 over the batch is (ps00, ps10) vs (pt00, pt10), both decreasing: correlation +1 too
    intra = 0.0
    assert (ps[0, 0] > ps[1, 0]) and (pt[0, 0] > pt[1, 0])
    assert dist_loss(zs, zt).item() == pytest.approx(inter + intra, abs=1e-6)
    # one row anti-correlated: the student prefers class 1 where the teacher prefers class 0
    flipped = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    assert dist_loss(flipped, zt, beta=1.0, gamma=0.0).item() == pytest.approx(1 - (-1 + 1) / 2, abs=1e-6)


def pearson(u, v):
    return float(np.corrcoef(u, v)[0, 1])


@pytest.mark.parametrize(("beta", "gamma", "temperature"), [(1.0, 1.0, 1.0), (2.0, 2.0, 4.0), (0.5, 3.0, 2.0)])
def test_dist_equals_the_papers_pearson_terms_per_row_and_per_column(beta, gamma, temperature):
    torch.manual_seed(3)
    zs, zt = torch.randn(9, 6) * 2, torch.randn(9, 6) * 2
    ps = F.softmax(zs.double() / temperature, 1).numpy()
    pt = F.softmax(zt.double() / temperature, 1).numpy()
    inter = 1 - np.mean([pearson(ps[i], pt[i]) for i in range(9)])
    intra = 1 - np.mean([pearson(ps[:, j], pt[:, j]) for j in range(6)])
    expected = temperature**2 * (beta * inter + gamma * intra)
    assert dist_loss(zs, zt, beta, gamma, temperature).item() == pytest.approx(expected, rel=1e-4)


def test_dist_target_adds_cross_entropy_and_a_batch_of_one_is_finite():
    torch.manual_seed(4)
    zs, zt, y = torch.randn(5, 4), torch.randn(5, 4), torch.randint(0, 4, (5,))
    target = DISTKD(None, ce_weight=1.0, beta=2.0, gamma=2.0, temperature=4.0)
    torch.testing.assert_close(target(zs, y, teacher_logits=zt), F.cross_entropy(zs, y) + dist_loss(zs, zt, 2, 2, 4))
    assert torch.isfinite(dist_loss(zs[:1], zt[:1]))  # one sample: its columns are constant


# -- logit standardisation ------------------------------------------------------------------------


def test_standardize_logits_is_a_z_score_per_row():
    z = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    mean, std = 3.0, math.sqrt(((1 - 3) ** 2 + 1 + 0 + 9) / 3)  # the K−1 sample std, as the authors' torch.std
    torch.testing.assert_close(standardize_logits(z)[0], (z[0] - mean) / (1e-7 + std))
    torch.testing.assert_close(standardize_logits(z)[1], torch.zeros(4))  # a constant row maps to 0
    torch.manual_seed(5)
    x = torch.randn(3, 7)
    torch.testing.assert_close(standardize_logits(2.5 * x + 4.0), standardize_logits(x), rtol=1e-5, atol=1e-5)


def test_kd_with_standardisation_z_scores_the_soft_term_only():
    torch.manual_seed(6)
    zs, zt, y = torch.randn(6, 5) * 4, torch.randn(6, 5) * 4, torch.randint(0, 5, (6,))
    soft = kd_loss(standardize_logits(zs), standardize_logits(zt), y, temperature=2.0)
    expected = 0.25 * F.cross_entropy(zs, y) + 0.75 * soft  # the cross-entropy keeps the raw logits
    torch.testing.assert_close(kd_loss(zs, zt, y, beta=0.25, temperature=2.0, standardize=True), expected)
    target = KnowledgeDistillation(None, 0.25, 2.0, standardize=True)
    torch.testing.assert_close(target(zs, y, teacher_logits=zt), expected)
    dkd = DecoupledKD(None, ce_weight=0.0, warmup_epochs=0, standardize=True)
    torch.testing.assert_close(dkd(zs, y, teacher_logits=zt), dkd_loss(standardize_logits(zs),
                                                                       standardize_logits(zt), y))  # fmt: skip


def test_a_target_without_a_teacher_needs_teacher_logits():
    with pytest.raises(KdtoolError, match="no teacher network"):
        KnowledgeDistillation(None)(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3))


def test_api_exports_and_every_kd_loss_has_a_factory():
    for name in ("dkd_loss", "dist_loss", "standardize_logits"):
        assert name in kdtool.__all__ and callable(getattr(kdtool, name))
    assert set(KD_LOSSES) == set(KD_LOSS_FACTORIES)


# -- command line ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tiny_onehot_run):
    """A tiny 1-hot LeNet-5 teacher run (1 epoch on 256 images): the session's (tests/conftest.py), read only here."""
    return tiny_onehot_run


@pytest.mark.parametrize(
    ("args", "recorded"),
    [
        (["--kd-loss", "dkd"], {"smoothing": "dkd", "kd_loss": "dkd", "beta": 1.0, "temperature": 1.0,
                                "dkd_alpha": 1.0, "dkd_beta": 2.0, "dkd_warmup_epochs": 1}),
        (["--kd-loss", "dist", "--dist-gamma", "2"], {"smoothing": "dist", "beta": 1.0, "temperature": 1.0,
                                                      "dist_beta": 1.0, "dist_gamma": 2.0}),
        (["--logit-standardize"], {"smoothing": "kd", "logit_standardize": True, "beta": 0.0, "temperature": 2.0}),
        (["--kd-loss", "dkd", "--logit-standardize", "--temperature", "3", "--beta", "0.5"],
         {"smoothing": "dkd", "logit_standardize": True, "beta": 0.5, "temperature": 3.0}),
    ],
)  # fmt: skip
def test_each_kd_loss_trains_end_to_end_and_records_its_options(run_cli, teacher, tmp_path, args, recorded):
    out = tmp_path / "student"
    code, stdout, stderr = run_cli("distill", "--teacher", teacher, *args, *TINY, "--out", out)
    assert code == 0, stderr
    assert "test accuracy" in stdout
    config = json.loads((out / "config.json").read_text())
    assert {key: config[key] for key in recorded} == recorded
    loss = recorded["smoothing"]
    foreign = {"dkd": "dkd_beta", "dist": "dist_beta"}
    assert all(key not in config for name, key in foreign.items() if name != loss)
    assert "alpha" not in config


def test_plain_kd_records_todays_defaults(run_cli, teacher, tmp_path):
    out = tmp_path / "kd"
    code, _, stderr = run_cli("distill", "--teacher", teacher, *TINY, "--out", out)
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert (config["smoothing"], config["kd_loss"], config["beta"], config["temperature"]) == ("kd", "kd", 0.0, 1.0)
    assert config["logit_standardize"] is False and "dkd_beta" not in config and "dist_beta" not in config
    assert "teacher_cache" not in config and "substitute_q" not in config


def test_the_engine_tells_dkd_the_epoch(run_cli, teacher, tmp_path, monkeypatch):
    seen = []
    original = DecoupledKD.on_epoch_start

    def record(self, epoch):
        seen.append(epoch)
        original(self, epoch)

    monkeypatch.setattr(DecoupledKD, "on_epoch_start", record)
    args = ("--limit-train", "64", "--limit-test", "64", "--epochs", "3", "--batch-size", "64")
    code, _, stderr = run_cli("distill", "--teacher", teacher, "--kd-loss", "dkd", *args, "--out", tmp_path / "d")
    assert code == 0, stderr
    assert seen == [0, 1, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kd-loss", "dist", "--dkd-beta", "2"], "--dkd-beta does not apply to this run (--kd-loss dist)"),
        (["--kd-loss", "wttm", "--temperature", "2"], "--temperature does not apply to this run (--kd-loss wttm)"),
        (["--dist-gamma", "1"], "used by --kd-loss dist only"),
        (["--kd-loss", "dkd", "--dist-beta", "1"], "--dist-beta does not apply"),
        (["--q", "--kd-loss", "kd"], "--kd-loss does not apply to this run (distill --substitute-q)"),
        (["--q", "--dkd-alpha", "2"], "--dkd-alpha does not apply to this run (distill --substitute-q)"),
        (["--q", "--logit-standardize"], "--logit-standardize does not apply"),
        (["--kd-loss", "crd"], "unknown --kd-loss 'crd'"),
        (["--kd-loss", "dkd", "--dkd-beta", "-1"], "--dkd-beta must be ≥ 0"),
        (["--kd-loss", "dist", "--beta", "1.5"], "--beta must be in [0, 1]"),
    ],
)
def test_inapplicable_or_bad_kd_loss_options_are_refused(run_cli, teacher, tmp_path, args, message):
    q = tmp_path / "q.safetensors"
    if "--q" in args:
        from kdtool import QMatrix
        from kdtool.data.classnames import dataset_class_names

        QMatrix(torch.zeros(10, 10), list(dataset_class_names("fashion-mnist")), 0.1, "fashion-mnist", "lls").save(q)
        source = ["--substitute-q", q]
        args = [a for a in args if a != "--q"]
    else:
        source = ["--teacher", teacher]
    out = tmp_path / "never"
    code, _, stderr = run_cli("distill", *source, *args, *TINY, "--out", out)
    assert code == 2 and message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()
