"""LLS's loss with all four terms, for rows of Q given as values, and its gradient in closed form.

``½ Σ_k (t_k − p_k)(log t_k − log p_k)`` per sample, batch mean, with ``p = softmax(z)`` and
``t = (1−α)·e_y + α·softmax(q)``. Autograd would go over the B×K tensors some thirty times and
allocate most of them anew; the gradients written out need a dozen passes, mostly in place::

    ∂f/∂z = ½ [p ⊙ (1 + Σ_k p_k d_k − d) − t]                        d = log t − log p
    ∂f/∂q = u − s·Σ_k u_k,   u = ½ [t ⊙ (d + 1) − p] − ½ (1−α)(d_y + 1 − p_y/t_y)·e_y,   s = softmax(q)

(from ∂f/∂t_k = ½(d_k + 1 − p_k/t_k) and α·s_k = t_k off the label). The gradient of Q comes back
dense (K×K, zero off the batch's rows), or as a sparse tensor of the batch's rows, so that only those
rows are ever updated (kdtool.optim.lazysgd).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F


def loss_and_gradients(
    logits: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, alpha: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The batch-mean loss and its gradients w.r.t. ``logits`` and ``rows``, all float32, in one pass.

    Everything is computed in the forward pass (the backward only scales by the incoming gradient), so that on
    a GPU this whole function is one compiled graph: a handful of fused kernels instead of some thirty launches
    (:func:`fused_for`). Mostly in place, so that eagerly (on a CPU) it stays a dozen passes over B×K."""
    index = labels[:, None]
    per_row = torch.is_tensor(alpha)  # one α per sample (B×1), or one number
    log_p = F.log_softmax(logits.float(), dim=1)
    # log t as kdtool.q.maths.mixture_log_target computes it, in place; it becomes d below
    d = F.log_softmax(rows.float(), dim=1).add_(alpha.log() if per_row else math.log(alpha))
    on_label = d.gather(1, index)
    rest = torch.log1p(-alpha) if per_row else torch.full_like(on_label, math.log1p(-alpha))
    d.scatter_(1, index, torch.logaddexp(on_label, rest))
    t = d.exp()
    d.sub_(log_p)
    p = log_p.exp_()  # log p is not needed any more
    u = t * d  # t ⊙ d, which ∂f/∂q starts from
    p_dot_d = torch.linalg.vecdot(p, d)
    loss = 0.5 * (u.sum(1) - p_dot_d).mean()
    half = 0.5 / labels.numel()  # ½ and the batch mean
    # u, doubled: t ⊙ (d + 1) − p, then its on-label correction
    u.add_(t).sub_(p)
    p_label, t_label, d_label = p.gather(1, index), t.gather(1, index), d.gather(1, index)
    u.scatter_add_(1, index, -(1.0 - alpha) * (d_label + 1.0 - p_label / t_label))
    total = u.sum(1, keepdim=True)
    # minus s·Σu, with s = t/α off the label and (t_y − (1−α))/α on it
    u.addcmul_(t, total / alpha, value=-1.0)
    u.scatter_add_(1, index, total * ((1.0 - alpha) / alpha))
    # ∂f/∂z in d's memory
    grad_logits = torch.sub((1.0 + p_dot_d)[:, None], d, out=d).mul_(p).sub_(t).mul_(half)
    return loss, grad_logits, u.mul_(half)


_COMPILED: dict[str, object] = {}  # "fn": the compiled loss_and_gradients, once a CUDA run asked for it


def fused_for(device: torch.device):
    """:func:`loss_and_gradients` as the ``device`` should run it: compiled into fused kernels on a CUDA GPU with
    Triton (bench/gpu.sh, parts lls-100 and lls-1000), eagerly elsewhere (or where compiling fails, said once)."""
    if device.type != "cuda" or "failed" in _COMPILED:
        return loss_and_gradients
    if "fn" not in _COMPILED:
        from torch.utils._triton import has_triton

        if not (torch._dynamo.is_dynamo_supported() and has_triton()):
            _COMPILED["failed"] = True
            return loss_and_gradients
        _COMPILED["fn"] = torch.compile(loss_and_gradients, dynamic=False, fullgraph=True)
    return _guarded


def _guarded(*args):
    try:
        return _COMPILED["fn"](*args)
    except Exception as exc:  # a compiler that cannot build here: the eager function gives the same values
        _COMPILED["failed"] = True
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        warnings.warn(
            f"LLS loss: torch.compile failed ({type(exc).__name__}: {first}); computing it eagerly", stacklevel=2
        )
        return loss_and_gradients(*args)


class _SymmetricKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, q, rows, labels, alpha, sparse):
        with torch.autocast(logits.device.type, enabled=False):  # the row dot products stay float32
            loss, grad_logits, grad_rows = fused_for(logits.device)(logits, rows, labels, alpha)
        ctx.save_for_backward(grad_logits, grad_rows, labels)
        ctx.sparse, ctx.logits_dtype, ctx.q_shape, ctx.q_dtype = sparse, logits.dtype, q.shape, q.dtype
        return loss

    @staticmethod
    def backward(ctx, grad):
        grad_logits, grad_rows, labels = ctx.saved_tensors
        u = grad_rows.mul_(grad).to(ctx.q_dtype)
        if ctx.sparse:
            grad_q = torch.sparse_coo_tensor(labels[None], u, ctx.q_shape, check_invariants=False)
        else:  # as autograd's gradient of q[labels]
            grad_q = u.new_zeros(ctx.q_shape, dtype=ctx.q_dtype).index_add_(0, labels, u)
        return grad_logits.mul_(grad).to(ctx.logits_dtype), grad_q, None, None, None, None


def symmetric_kl_loss(
    logits: torch.Tensor,
    q: torch.Tensor,
    rows: torch.Tensor,
    labels: torch.Tensor,
    alpha: float | torch.Tensor,
    sparse: bool,
) -> torch.Tensor:
    """The batch-mean LLS loss (all four terms) with ``rows`` = the values of ``q[labels]`` (shifted by a
    constant per column, the gradient is the same) and
    ``alpha`` a number or one per sample (B×1); ``q``'s gradient is dense, or with ``sparse`` a sparse COO
    tensor with one row per sample."""
    return _SymmetricKL.apply(logits, q, rows, labels, alpha, sparse)
