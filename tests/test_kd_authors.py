"""WTTM, NKD and logit standardisation (with every loss) against transcriptions of their authors' code, in
float64: the loss and its gradient with respect to the student's logits.

Transcribed (kept as the authors wrote them, modulo names):
- logit standardisation: sunshangquan/logit-standardization-KD @ f6e5aa5172bad618e801163c3385322eea673754,
  mdistiller/distillers/KD.py ``normalize`` and ``kd_loss``, mdistiller/distillers/DKD.py ``dkd_loss``;
- WTTM: zkxufo/TTM @ 2de9060d32b85221c00d864d47b8f68016491d86, distiller_zoo/wttm.py ``WTTM.forward``;
- NKD: yzd-v/cls_KD @ 9466b3f3d8e06a1021d722bf3f4a7ebee99e3aed, mmcls/models/dis_losses/nkd.py ``NKDLoss.forward``;
- DIST: hunto/image_classification_sota @ 6f7a70a1dd57fd88413d83909d3d53243068f701, lib/models/losses/dist_kd.py.
"""

import pytest
import torch
import torch.nn.functional as F

from kdtool.losses import DISTKD, WTTM, DecoupledKD, KnowledgeDistillation, NormalizedKD, nkd_loss, wttm_loss
from kdtool.losses.teacher import standardize_logits

# -- the authors' functions ----------------------------------------------------------------------------


def authors_normalize(logit):
    mean = logit.mean(dim=-1, keepdims=True)
    stdv = logit.std(dim=-1, keepdims=True)
    return (logit - mean) / (1e-7 + stdv)


def authors_kd(logits_student_in, logits_teacher_in, temperature, logit_stand):
    logits_student = authors_normalize(logits_student_in) if logit_stand else logits_student_in
    logits_teacher = authors_normalize(logits_teacher_in) if logit_stand else logits_teacher_in
    log_pred_student = F.log_softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    loss_kd = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean()
    loss_kd *= temperature**2
    return loss_kd


def _cat_mask(t, mask1, mask2):
    return torch.cat([(t * mask1).sum(dim=1, keepdims=True), (t * mask2).sum(1, keepdims=True)], dim=1)


def authors_dkd(logits_student_in, logits_teacher_in, target, alpha, beta, temperature, logit_stand):
    logits_student = authors_normalize(logits_student_in) if logit_stand else logits_student_in
    logits_teacher = authors_normalize(logits_teacher_in) if logit_stand else logits_teacher_in
    gt_mask = torch.zeros_like(logits_student).scatter_(1, target.unsqueeze(1), 1).bool()
    other_mask = torch.ones_like(logits_student).scatter_(1, target.unsqueeze(1), 0).bool()
    pred_student = F.softmax(logits_student / temperature, dim=1)
    pred_teacher = F.softmax(logits_teacher / temperature, dim=1)
    pred_student = _cat_mask(pred_student, gt_mask, other_mask)
    pred_teacher = _cat_mask(pred_teacher, gt_mask, other_mask)
    log_pred_student = torch.log(pred_student)
    tckd_loss = F.kl_div(log_pred_student, pred_teacher, reduction="sum") * (temperature**2) / target.shape[0]
    pred_teacher_part2 = F.softmax(logits_teacher / temperature - 1000.0 * gt_mask, dim=1)
    log_pred_student_part2 = F.log_softmax(logits_student / temperature - 1000.0 * gt_mask, dim=1)
    nckd_loss = F.kl_div(log_pred_student_part2, pred_teacher_part2, reduction="sum") * (temperature**2)
    return alpha * tckd_loss + beta * nckd_loss / target.shape[0]


def authors_dist(z_s, z_t, beta, gamma, tau):
    def pearson(a, b, eps=1e-8):
        a, b = a - a.mean(1).unsqueeze(1), b - b.mean(1).unsqueeze(1)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)

    y_s, y_t = (z_s / tau).softmax(dim=1), (z_t / tau).softmax(dim=1)
    inter_loss = tau**2 * (1 - pearson(y_s, y_t).mean())
    intra_loss = tau**2 * (1 - pearson(y_s.transpose(0, 1), y_t.transpose(0, 1)).mean())
    return beta * inter_loss + gamma * intra_loss


def authors_wttm(y_s, y_t, l):  # noqa: E741 (the authors' name for the exponent γ)
    p_s = F.log_softmax(y_s, dim=1)
    p_t = torch.pow(torch.softmax(y_t, dim=1), l)
    norm = torch.sum(p_t, dim=1)
    p_t = p_t / norm.unsqueeze(1)
    KL = torch.sum(F.kl_div(p_s, p_t, reduction="none"), dim=1)
    return torch.mean(norm * KL)


def authors_nkd(logit_s, logit_t, gt_label, temp, gamma):
    label = gt_label.view(len(gt_label), 1)
    N, c = logit_s.shape  # noqa: RUF059
    s_i = F.log_softmax(logit_s, dim=1)
    t_i = F.softmax(logit_t, dim=1)
    s_t = torch.gather(s_i, 1, label)
    t_t = torch.gather(t_i, 1, label).detach()
    loss_t = -(t_t * s_t).mean()
    mask = torch.ones_like(logit_s).scatter_(1, label, 0).bool()
    logit_s = logit_s[mask].reshape(N, -1)
    logit_t = logit_t[mask].reshape(N, -1)
    S_i = F.log_softmax(logit_s / temp, dim=1)
    T_i = F.softmax(logit_t / temp, dim=1)
    loss_non = (T_i * S_i).sum(dim=1).mean()
    loss_non = -gamma * (temp**2) * loss_non
    return loss_t + loss_non


# -- helpers ----------------------------------------------------------------------------------------


def logits(num_classes, seed=0, batch=8):
    g = torch.Generator().manual_seed(seed)
    zs = (torch.randn(batch, num_classes, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
    zt = torch.randn(batch, num_classes, generator=g, dtype=torch.float64) * 4
    return zs, zt, torch.randint(0, num_classes, (batch,), generator=g)


def assert_same_loss_and_gradient(ours, theirs, zs):
    """Equal values and equal gradients with respect to the student's logits ``zs``."""
    (g_ours,) = torch.autograd.grad(ours, zs, retain_graph=True)
    (g_theirs,) = torch.autograd.grad(theirs, zs)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)
    assert ours.dtype == torch.float64 and g_ours.abs().max() > 1e-6  # a real comparison, not of zeros


# -- WTTM and NKD -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_classes", "gamma"), [(2, 0.5), (10, 0.2), (100, 0.1), (10, 1.0)])
def test_wttm_equals_the_authors_function(num_classes, gamma):
    zs, zt, _ = logits(num_classes, seed=num_classes)
    assert_same_loss_and_gradient(wttm_loss(zs, zt, gamma), authors_wttm(zs, zt, gamma), zs)


def test_wttm_is_finite_where_the_authors_power_underflows():
    # p_t of ~e^-700 to the power 0.1 is fine in the log domain; the authors' torch.pow sees exact zeros in
    # float32 and still agrees, since zero-mass classes add nothing
    zs = torch.randn(2, 5, requires_grad=True)
    zt = torch.tensor([[700.0, 0.0, -5.0, 1.0, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    loss = wttm_loss(zs, zt, 0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zs.grad).all()
    torch.testing.assert_close(loss, authors_wttm(zs, zt, 0.1))


@pytest.mark.parametrize(("num_classes", "gamma", "temperature"), [(2, 1.5, 1.0), (10, 1.5, 1.0), (100, 3.5, 3.0)])
def test_nkd_equals_the_authors_function(num_classes, gamma, temperature):
    zs, zt, y = logits(num_classes, seed=num_classes + 1)
    ours = nkd_loss(zs, zt, y, gamma, temperature)
    assert_same_loss_and_gradient(ours, authors_nkd(zs, zt, y, temperature, gamma), zs)


def test_wttm_and_nkd_targets_add_the_cross_entropy_on_the_raw_logits():
    zs, zt, y = logits(10, seed=3)
    wttm = WTTM(None, ce_weight=0.5, gamma=0.2, weight=4.0)
    expected = 0.5 * F.cross_entropy(zs, y) + 4.0 * authors_wttm(zs, zt, 0.2)
    torch.testing.assert_close(wttm(zs, y, teacher_logits=zt), expected, rtol=1e-12, atol=1e-12)
    nkd = NormalizedKD(None, ce_weight=1.0, gamma=3.5, temperature=3.0)
    expected = F.cross_entropy(zs, y) + authors_nkd(zs, zt, y, 3.0, 3.5)
    torch.testing.assert_close(nkd(zs, y, teacher_logits=zt), expected, rtol=1e-12, atol=1e-12)


def test_wttm_at_gamma_one_is_kd_at_temperature_one_weighted_by_one():
    # U_1(p_t) = Σ p_t = 1 and q = p_t: WTTM with γ = 1 is plain KL(p_t ‖ p_s)
    zs, zt, _ = logits(10, seed=4)
    torch.testing.assert_close(wttm_loss(zs, zt, 1.0), authors_kd(zs, zt, 1.0, False), rtol=1e-12, atol=1e-12)


# -- logit standardisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 10, 100])
def test_standardisation_equals_the_authors_normalize(num_classes):
    zs, _, _ = logits(num_classes, seed=5)
    assert_same_loss_and_gradient(standardize_logits(zs).square().mul(zs).sum(),
                                  authors_normalize(zs).square().mul(zs).sum(), zs)  # fmt: skip


def _targets(num_classes):
    """(our target with standardisation, the authors' loss of (zs, zt, y) with it) for every loss."""
    return {
        "kd": (KnowledgeDistillation(None, beta=0.1, temperature=2.0, standardize=True, kd_weight=9.0),
               lambda zs, zt, y: 0.1 * F.cross_entropy(zs, y) + 9.0 * authors_kd(zs, zt, 2.0, True)),
        "dkd": (DecoupledKD(None, ce_weight=1.0, alpha=9.0, beta=72.0, temperature=2.0, warmup_epochs=0,
                            standardize=True),
                lambda zs, zt, y: F.cross_entropy(zs, y) + authors_dkd(zs, zt, y, 9.0, 72.0, 2.0, True)),
        "dist": (DISTKD(None, ce_weight=1.0, beta=2.0, gamma=2.0, temperature=2.0, standardize=True),
                 lambda zs, zt, y: F.cross_entropy(zs, y) + authors_dist(authors_normalize(zs),
                                                                         authors_normalize(zt), 2.0, 2.0, 2.0)),
        "wttm": (WTTM(None, ce_weight=1.0, gamma=0.2, weight=4.0, standardize=True),
                 lambda zs, zt, y: F.cross_entropy(zs, y) + 4.0 * authors_wttm(authors_normalize(zs),
                                                                               authors_normalize(zt), 0.2)),
        "nkd": (NormalizedKD(None, ce_weight=1.0, gamma=1.5, temperature=2.0, standardize=True),
                lambda zs, zt, y: F.cross_entropy(zs, y) + authors_nkd(authors_normalize(zs),
                                                                       authors_normalize(zt), y, 2.0, 1.5)),
    }  # fmt: skip


@pytest.mark.parametrize("loss", ["kd", "dkd", "dist", "wttm", "nkd"])
@pytest.mark.parametrize("num_classes", [2, 10, 100])
def test_every_loss_with_standardisation_equals_the_authors(loss, num_classes):
    zs, zt, y = logits(num_classes, seed=num_classes + 7)
    target, theirs = _targets(num_classes)[loss]
    ours = target(zs, y, teacher_logits=zt)
    assert_same_loss_and_gradient(ours, theirs(zs, zt, y), zs)


@pytest.mark.parametrize("loss", ["kd", "dkd", "dist", "wttm", "nkd"])
def test_a_zero_variance_student_row_has_the_authors_finite_gradient(loss):
    zs, zt, y = logits(10, seed=9)
    zs = zs.detach().clone()
    zs[0] = 0.0  # a freshly zero-initialised head: all its logits equal
    zs.requires_grad_(True)
    target, theirs = _targets(10)[loss]
    ours = target(zs, y, teacher_logits=zt)
    (grad,) = torch.autograd.grad(ours, zs, retain_graph=True)
    assert torch.isfinite(ours) and torch.isfinite(grad).all()
    assert_same_loss_and_gradient(ours, theirs(zs, zt, y), zs)  # torch.std's backward is 0 at 0 variance
    assert standardize_logits(zs)[0].abs().max() == 0
