"""Memory of a sparse top-N Q (K = 21841, N = 32) / a dense K×K Q, and the time to serve a batch of targets.

The sparse Q is built directly from random K×N pieces (each row's N off-diagonal columns, its
diagonal and one shared rest logit); the dense Q is the same matrix expanded (``to_dense``). Memory
is what holding each Q adds to this process's resident set; the peak working memory of one batch
of targets (B×K, on top of the Q) is printed too. Time: ``QMatrix.targets`` for a batch of random
labels, both forms interleaved.

    .venv/bin/python bench/sparse_q.py [--classes K] [--topn N] [--batch-size B] [--repeats R] [--threads T]
"""

from __future__ import annotations

import gc

import torch
from common import MIB, Timing, arguments, interleave, machine, peak_rss_mib, print_ratio, reset_peak_rss, rss_mib

from kdtool.q.matrix import QMatrix, SparseLogits

TARGET = 0.01


def random_sparse(k: int, n: int, seed: int = 0) -> SparseLogits:
    """K×N distinct off-diagonal columns per row (row + multiples of a random stride, mod K) and their logits."""
    g = torch.Generator().manual_seed(seed)
    stride = torch.randint(1, (k - 1) // n + 1, (k, 1), generator=g)
    indices = (torch.arange(k)[:, None] + stride * torch.arange(1, n + 1)) % k
    values = torch.randn(k, n, generator=g).sort(dim=1, descending=True).values + 2.0
    return SparseLogits(indices, values, torch.full((k,), 4.0), torch.randn(k, generator=g) - 2.0)


def held_mib(build) -> tuple[QMatrix, float]:
    """Build a Q and measure how much resident memory holding it adds."""
    gc.collect()
    before = rss_mib()
    q = build()
    gc.collect()
    return q, rss_mib() - before


def batch_peak_mib(q: QMatrix, labels: torch.Tensor) -> float:
    """Peak resident memory one batch of targets adds on top of the Q."""
    gc.collect()
    before = rss_mib()
    reset_peak_rss()
    q.targets(labels)
    return peak_rss_mib() - before


def main() -> None:
    args = arguments(
        __doc__.splitlines()[0],
        repeats=20,
        batch_size=256,
        tiny={"classes": 2000, "batch_size": 64},
        classes=(int, 21841, "K"),
        topn=(int, 32, "N kept logits per row"),
    )
    k, n = args.classes, args.topn
    names = [f"c{i}" for i in range(k)]
    # Build a small Q first: the library code a build touches for the first time would count as held.
    QMatrix(None, names[:100], 0.1, "bench", "sparse", sparse=random_sparse(100, 8)).to_dense()
    sparse, sparse_mib = held_mib(lambda: QMatrix(None, names, 0.1, "bench", "sparse", sparse=random_sparse(k, n)))
    dense, dense_mib = held_mib(sparse.to_dense)
    labels = torch.randint(0, k, (args.batch_size,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(sparse.targets(labels), dense.targets(labels))
    peaks = {name: batch_peak_mib(q, labels) for name, q in (("sparse", sparse), ("dense", dense))}

    a, b = Timing("sparse targets"), Timing("dense targets")
    interleave(a, lambda: sparse.targets(labels), b, lambda: dense.targets(labels), args.repeats, args.warmup)
    stored = {
        name: sum(t.nbytes for t in q._tensors().values()) / MIB for name, q in (("sparse", sparse), ("dense", dense))
    }
    inputs = {
        "bench": "sparse_q",
        **machine(),
        "K": k,
        "N": n,
        "batch size": args.batch_size,
        "repeats": args.repeats,
        "stored tensors": f"sparse {stored['sparse']:.1f} MiB, dense {stored['dense']:.1f} MiB",
        "resident memory of the Q": f"sparse {sparse_mib:.1f} MiB, dense {dense_mib:.1f} MiB",
        "peak extra memory of one batch of targets": f"sparse {peaks['sparse']:.1f}, dense {peaks['dense']:.1f} MiB",
    }
    for key, value in inputs.items():
        print(f"{key}: {value}")
    print(a.line(1e3, "ms"))
    print(b.line(1e3, "ms"))
    wall, cpu = a.median() / b.median(), a.median("cpu") / b.median("cpu")
    print(f"(time per batch sparse / dense: wall {wall:.3f}, CPU {cpu:.3f})")
    print_ratio("memory sparse Q / dense Q", sparse_mib / dense_mib, TARGET)


if __name__ == "__main__":
    main()
