import math

import pytest
import torch
import torch.nn.functional as F

from kdtool import LearnableLabelSmoothing, label_smoothing_loss
from kdtool.errors import KdtoolError
from kdtool.losses import LLS_TERMS, parse_lls_terms


def hand_lls(logits, labels, q, alpha, terms=LLS_TERMS):
    """Straight from DESIGN.md with plain python floats."""
    total = 0.0
    for z, y in zip(logits.tolist(), labels.tolist(), strict=True):
        k = len(z)
        p = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
        qrow = q[y].tolist()
        s = [math.exp(v) / sum(math.exp(u) for u in qrow) for v in qrow]
        t = [(1 - alpha) * (i == y) + alpha * s[i] for i in range(k)]
        value = {
            "target_entropy": sum(ti * math.log(ti) for ti in t),
            "forward_ce": -sum(ti * math.log(pi) for ti, pi in zip(t, p, strict=True)),
            "prediction_entropy": sum(pi * math.log(pi) for pi in p),
            "reverse_ce": -sum(pi * math.log(ti) for ti, pi in zip(t, p, strict=True)),
        }
        total += 0.5 * sum(value[name] for name in terms)
    return total / len(labels)


def test_lls_loss_matches_hand_computation():
    lls = LearnableLabelSmoothing(3, alpha=0.2)
    with torch.no_grad():
        lls.q.copy_(torch.tensor([[0.0, 1.0, -1.0], [0.5, 0.0, 0.2], [2.0, -0.3, 0.0]]))
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels = torch.tensor([0, 2])
    expected = hand_lls(logits, labels, lls.q.detach(), 0.2)
    assert lls(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_lls_equals_symmetric_kl():
    torch.manual_seed(0)
    lls = LearnableLabelSmoothing(5, alpha=0.3)
    with torch.no_grad():
        lls.q.normal_()
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    t = lls.targets(labels)
    log_p = F.log_softmax(logits, 1)
    kl_tp = (t * (t.log() - log_p)).sum(1)
    kl_pt = (log_p.exp() * (log_p - t.log())).sum(1)
    assert lls(logits, labels).item() == pytest.approx((0.5 * (kl_tp + kl_pt)).mean().item(), rel=1e-5)


def test_zero_q_target_is_label_smoothing_with_epsilon_alpha():
    lls = LearnableLabelSmoothing(4, alpha=0.1)
    labels = torch.tensor([0, 3, 1])
    expected = 0.9 * F.one_hot(labels, 4).float() + 0.1 / 4
    torch.testing.assert_close(lls.targets(labels), expected)
    # and the forward-CE term is then exactly LS's loss with epsilon = alpha
    logits = torch.randn(3, 4)
    forward_ce = lls.term_values(logits, labels)["forward_ce"].mean()
    torch.testing.assert_close(forward_ce, label_smoothing_loss(logits, labels, 0.1))


@pytest.mark.parametrize("scale", [1.0, 1e3, 1e6])
def test_q_gets_finite_nonzero_gradient(scale):
    lls = LearnableLabelSmoothing(6, alpha=0.1)
    logits = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)) * scale
    labels = torch.arange(16) % 6
    lls(logits, labels).backward()
    grad = lls.q.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert grad.abs().sum() > 0
    assert grad[torch.unique(labels)].abs().sum(1).gt(0).all()  # every used row moves


def test_target_is_not_detached_reverse_term_reaches_q():
    lls = LearnableLabelSmoothing(3, alpha=0.1, terms="reverse-ce")
    lls(torch.tensor([[3.0, 0.0, -2.0]]), torch.tensor([0])).backward()
    assert lls.q.grad[0].abs().sum() > 0


@pytest.mark.parametrize("dropped", LLS_TERMS)
def test_each_term_switch_removes_exactly_that_term(dropped):
    torch.manual_seed(3)
    full = LearnableLabelSmoothing(4, alpha=0.25)
    with torch.no_grad():
        full.q.normal_()
    kept = [t for t in LLS_TERMS if t != dropped]
    partial = LearnableLabelSmoothing(4, alpha=0.25, terms=",".join(t.replace("_", "-") for t in kept))
    partial.load_state_dict(full.state_dict())
    logits, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    values = full.term_values(logits, labels)
    difference = full(logits, labels) - partial(logits, labels)
    torch.testing.assert_close(difference, 0.5 * values[dropped].mean())
    assert partial(logits, labels).item() == pytest.approx(
        hand_lls(logits, labels, full.q.detach(), 0.25, kept), rel=1e-5
    )


def test_fused_all_terms_loss_equals_the_sum_of_terms_with_the_same_gradients():
    torch.manual_seed(4)
    fused = LearnableLabelSmoothing(6, alpha=0.2)
    with torch.no_grad():
        fused.q.normal_(std=3.0)
    logits = (torch.randn(10, 6) * 5).requires_grad_()
    labels = torch.randint(0, 6, (10,))
    fused(logits, labels).backward()
    values = fused.term_values(logits, labels)
    expected = 0.5 * sum(values.values()).mean()
    grads = torch.autograd.grad(expected, [logits, fused.q])
    torch.testing.assert_close(fused(logits, labels), expected)
    torch.testing.assert_close(logits.grad, grads[0])
    torch.testing.assert_close(fused.q.grad, grads[1])


def test_bad_arguments():
    with pytest.raises(KdtoolError, match="alpha"):
        LearnableLabelSmoothing(3, alpha=1.0)
    with pytest.raises(KdtoolError, match="unknown LLS term"):
        parse_lls_terms("forward-ce,bogus")
    assert parse_lls_terms("reverse_ce,forward-ce") == ("forward_ce", "reverse_ce")


def test_label_smoothing_loss_hand_computed():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    labels = torch.tensor([1])
    log_p = F.log_softmax(logits, 1)[0]
    target = torch.tensor([0.05, 0.85 + 0.05, 0.05])  # (1-ε)·e_y + ε/K
    expected = -(target * log_p).sum()
    torch.testing.assert_close(label_smoothing_loss(logits, labels, 0.15), expected)


@pytest.mark.parametrize("per_row_alpha", [False, True])
def test_the_fused_lls_loss_compiles_as_one_graph_with_the_same_loss_and_gradients(per_row_alpha):
    # On a GPU the loss runs compiled by inductor (bench/gpu.sh checks its values there); here the graph capture
    # (one graph, the in-place steps functionalised) is checked with the aot_eager backend.
    from kdtool.losses.symkl import loss_and_gradients

    torch._dynamo.reset()
    g = torch.Generator().manual_seed(7)
    logits, rows = torch.randn(16, 50, generator=g) * 4, torch.randn(16, 50, generator=g) * 2
    labels = torch.randint(0, 50, (16,), generator=g)
    alpha = torch.rand(16, 1, generator=g) * 0.5 + 0.05 if per_row_alpha else 0.1
    compiled = torch.compile(loss_and_gradients, backend="aot_eager", dynamic=False, fullgraph=True)
    expected_values = loss_and_gradients(logits, rows, labels, alpha)
    for got, expected in zip(compiled(logits, rows, labels, alpha), expected_values, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)
