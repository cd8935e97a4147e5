"""The baseline methods (OLS, TF-KD, Zipf LS, focal, prior) against hand computations on 3 classes."""

import math

import pytest
import torch
from torch import nn

from kdtool.config.runconfig import SMOOTHING_METHODS, TrainConfig
from kdtool.errors import KdtoolError
from kdtool.losses import (
    FocalLoss,
    OnlineLabelSmoothing,
    PriorSmoothing,
    TeacherFreeRegularization,
    TeacherFreeSelf,
    ZipfLabelSmoothing,
)
from kdtool.losses.focal import flsd53_gamma, parse_focal_gamma
from kdtool.losses.zipf import zipf_targets
from kdtool.q.priors import prior_q
from kdtool.workflows.methods import METHODS, build_method
from tests.conftest import TINY

Z = [2.0, 1.0, 0.0]  # the logits of every hand computation below


def softmax(z, t=1.0):
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def logits(*rows):
    return torch.tensor(rows or [Z], dtype=torch.float32)


def test_every_method_the_cli_accepts_has_a_builder():
    assert list(METHODS) == list(SMOOTHING_METHODS)
    assert {"ols", "tfkd-reg", "tfkd-self", "zipf", "focal", "prior"} <= set(METHODS)


# -- OLS -------------------------------------------------------------------------------------------
def test_ols_starts_uniform_and_mixes_hard_and_soft_cross_entropy():
    ols = OnlineLabelSmoothing(3)
    assert torch.allclose(ols.soft, torch.full((3, 3), 1 / 3))
    p = softmax(Z)
    expected = 0.5 * -math.log(p[0]) + 0.5 * sum(-math.log(v) / 3 for v in p)
    assert ols(logits(), torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)


def test_ols_rows_after_two_synthetic_epochs():
    ols = OnlineLabelSmoothing(3).train()
    a, b, c = [3.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]
    # epoch 1: two correct samples of class 0, one wrong of class 1, one correct of class 2
    ols(logits(a, b, a, c), torch.tensor([0, 0, 1, 2]))
    ols.on_epoch_end(0)
    row0 = [(x + y) / 2 for x, y in zip(softmax(a), softmax(b), strict=True)]
    assert ols.soft[0].tolist() == pytest.approx(row0, rel=1e-5)
    assert ols.soft[1].tolist() == pytest.approx([1 / 3] * 3)  # no correct sample: keeps its (uniform) row
    assert ols.soft[2].tolist() == pytest.approx(softmax(c), rel=1e-5)
    # epoch 2 uses epoch 1's rows; only class 1 is classified correctly this time
    d = [0.0, 1.5, 0.0]
    loss = ols(logits(d, a), torch.tensor([1, 2]))
    p_d, p_a = softmax(d), softmax(a)
    by_hand = 0.5 * (-math.log(p_d[1]) + sum(-math.log(v) / 3 for v in p_d))
    by_hand += 0.5 * (-math.log(p_a[2]) - sum(s * math.log(v) for s, v in zip(softmax(c), p_a, strict=True)))
    assert loss.item() == pytest.approx(by_hand / 2, rel=1e-5)
    ols.eval()
    ols(logits(b), torch.tensor([0]))  # evaluation never counts
    ols.on_epoch_end(1)
    assert ols.soft[0].tolist() == pytest.approx(row0, rel=1e-5)  # no correct sample of class 0 in epoch 2
    assert ols.soft[1].tolist() == pytest.approx(p_d, rel=1e-5)
    assert ols.soft[2].tolist() == pytest.approx(softmax(c), rel=1e-5)
    assert torch.allclose(ols.soft.sum(1), torch.ones(3))


# -- TF-KD -----------------------------------------------------------------------------------------
def test_tfkd_reg_matches_the_papers_formula():
    tf = TeacherFreeRegularization(3, temperature=2.0, weight=0.4, multiplier=3.0, correct_prob=0.9)
    teacher = softmax([0.9, 0.05, 0.05], t=2.0)  # virtual teacher softened by τ
    assert sum(teacher) == pytest.approx(1.0)
    expected = 0.6 * -math.log(softmax(Z)[0]) + 0.4 * 3.0 * kl(teacher, softmax(Z, t=2.0))
    assert tf(logits(), torch.tensor([0])).item() == pytest.approx(expected, rel=1e-5)


def test_tfkd_self_distils_a_frozen_teacher_that_stays_in_eval_mode():
    net = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Dropout(0.5))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3))
    tf = TeacherFreeSelf(net, temperature=1.0, weight=1.0).train()
    assert not net.training and not any(p.requires_grad for p in tf.parameters())
    inputs = torch.tensor([[0.0, 1.0, 3.0]])  # the teacher's logits, dropout off
    expected = kl(softmax([0.0, 1.0, 3.0]), softmax(Z))
    assert tf(logits(), torch.tensor([0]), inputs).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(KdtoolError, match="inputs"):
        tf(logits(), torch.tensor([0]))


def test_tfkd_self_refuses_a_teacher_with_other_classes(run_cli, tmp_path):
    assert run_cli("train-teacher", "--smoothing", "onehot", *TINY, "--out", tmp_path / "t")[0] == 0
    cfg = TrainConfig(smoothing="tfkd-self", teacher=str(tmp_path / "t")).resolve()
    with pytest.raises(KdtoolError, match="10 classes"):
        build_method(cfg, 3)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"temperature": 0}, "temperature"), ({"weight": 1.5}, "weight"), ({"multiplier": 0}, "multiplier"),
     ({"correct_prob": 0.2}, "at least 1/K")],
)  # fmt: skip
def test_tfkd_rejects_bad_options(options, message):
    with pytest.raises(KdtoolError, match=message):
        TeacherFreeRegularization(3, **options)


# -- Zipf --------------------------------------------------------------------------------------------
def test_zipf_target_follows_the_rank_of_the_other_classes():
    targets = zipf_targets(logits(Z, Z, [0.0, 5.0, 1.0]), torch.tensor([0, 1, 1]), exponent=1.0)
    assert targets[0].tolist() == pytest.approx([0, 2 / 3, 1 / 3])  # class 1 ranks first among the others
    assert targets[1].tolist() == pytest.approx([2 / 3, 0, 1 / 3])
    assert targets[2].tolist() == pytest.approx([1 / 3, 0, 2 / 3])
    assert torch.allclose(targets.sum(1), torch.ones(3))
    assert zipf_targets(logits(), torch.tensor([0]), exponent=2.0)[0].tolist() == pytest.approx([0, 0.8, 0.2])


def test_zipf_loss_is_ce_plus_weighted_kl_on_the_non_target_classes():
    zipf = ZipfLabelSmoothing(weight=0.5, exponent=1.0)
    z = logits().requires_grad_()
    loss = zipf(z, torch.tensor([0]))
    non_target = softmax(Z[1:])  # prediction renormalised without the true class
    expected = -math.log(softmax(Z)[0]) + 0.5 * kl([2 / 3, 1 / 3], non_target)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(z.grad).all()


# -- focal -------------------------------------------------------------------------------------------
def test_focal_loss_with_fixed_gamma():
    p = softmax(Z)
    assert FocalLoss(3)(logits(), torch.tensor([0])).item() == pytest.approx(-((1 - p[0]) ** 3) * math.log(p[0]))
    ce = -math.log(p[1])
    assert FocalLoss(0)(logits(), torch.tensor([1])).item() == pytest.approx(ce, rel=1e-6)


def test_flsd53_schedule():
    assert flsd53_gamma(torch.tensor([0.05, 0.1999, 0.2, 0.9])).tolist() == [5.0, 5.0, 3.0, 3.0]
    p = softmax(Z)  # p = 0.665, 0.245, 0.090: γ = 3, 3, 5
    loss = FocalLoss("adaptive")(logits(Z, Z, Z), torch.tensor([0, 1, 2])).item()
    by_hand = [-((1 - p[i]) ** g) * math.log(p[i]) for i, g in ((0, 3), (1, 3), (2, 5))]
    assert loss == pytest.approx(sum(by_hand) / 3, rel=1e-6)


def test_focal_gamma_parsing():
    assert parse_focal_gamma("ADAPTIVE") == "adaptive" and parse_focal_gamma("3") == 3.0
    for bad in ("-1", "high"):
        with pytest.raises(KdtoolError, match="focal-gamma"):
            parse_focal_gamma(bad)


# -- prior -------------------------------------------------------------------------------------------
THETA = torch.tensor([[0.0, 0.75, 0.25], [0.5, 0.0, 0.5], [0.2, 0.8, 0.0]])


def test_prior_target_and_loss():
    prior = PriorSmoothing(THETA, epsilon=0.1)
    target = prior.targets(torch.tensor([0, 2]))
    assert target.tolist()[0] == pytest.approx([0.9, 0.075, 0.025])
    assert torch.allclose(target.sum(1), torch.ones(2))
    expected = -sum(t * math.log(p) for t, p in zip([0.9, 0.075, 0.025], softmax(Z), strict=True))
    assert prior(logits(), torch.tensor([0])).item() == pytest.approx(expected, rel=1e-6)


def test_prior_reads_a_q_artifact_with_minus_inf_logits(tmp_path):
    path = tmp_path / "p.q.safetensors"
    prior_q(THETA, ["a", "b", "c"], 0.1, "toy", "superclass").save(path)
    prior = build_method(TrainConfig(smoothing="prior", prior=str(path), epsilon=0.2).resolve(), 3)
    assert torch.allclose(prior.theta, THETA)
    z = logits().requires_grad_()
    prior(z, torch.tensor([1])).backward()
    assert torch.isfinite(z.grad).all()
    with pytest.raises(KdtoolError, match="3 classes, the data 10"):
        build_method(TrainConfig(smoothing="prior", prior=str(path)).resolve(), 10)
