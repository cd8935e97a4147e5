"""QMatrix in both forms: files, validation, targets, subsets, the sparse top-N form, estimation, reports."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils._python_dispatch import TorchDispatchMode

from kdtool import QMatrix, SparseLogits
from kdtool.errors import KdtoolError
from kdtool.reporting.qreport import HEATMAP_MAX_CLASSES, check_heatmap_size, confusion_agreement, confusion_on_classes
from kdtool.training.metrics import confusion_matrix

K = 6
NAMES = [f"c{i}" for i in range(K)]


def dense_q(k=K, seed=0):
    g = torch.Generator().manual_seed(seed)
    return QMatrix(torch.randn(k, k, generator=g) * 2, [f"c{i}" for i in range(k)], 0.2, "toy", "lls")


def random_sparse(k, n, seed=0):
    """A valid top-N form drawn directly, without any K×K tensor: N distinct off-diagonal columns per row."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, k - 1, (k, 1), generator=g)
    indices = (torch.arange(k)[:, None] + 1 + (start + torch.arange(n)) % (k - 1)) % k
    values = torch.randn(k, n, generator=g) + 4
    return SparseLogits(indices, values, torch.randn(k, generator=g), torch.randn(k, generator=g))


# -- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dense", "sparse", "sparse-full"])
def test_roundtrip_is_bit_exact(tmp_path, form):
    q = {"dense": dense_q(), "sparse": dense_q().to_sparse(2), "sparse-full": dense_q().to_sparse(K - 1)}[form]
    q = q.with_extra({"note": "kept"})
    q.save(tmp_path / "q.safetensors")
    back = QMatrix.load(tmp_path / "q.safetensors")
    assert back.is_sparse == (form != "dense")
    saved, loaded = q._tensors(), back._tensors()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[name], loaded[name]) for name in saved)  # -inf rest logits included
    assert (back.class_names, back.alpha, back.dataset, back.source) == (q.class_names, q.alpha, q.dataset, q.source)
    assert back.extra == q.extra and back.extra["note"] == "kept"


def write_artifact(path, tensors, meta):
    save_file(tensors, str(path), metadata=meta)
    return path


def valid_contents(tmp_path, form):
    q = dense_q() if form == "dense" else dense_q().to_sparse(2)
    q.save(tmp_path / "ok.safetensors")
    return load_file(str(tmp_path / "ok.safetensors")), q.metadata()


def _set(mapping, key, value):
    mapping[key] = value


# (form, how to break the file's tensors `t` / metadata `m`, expected message)
FAULTS = [
    ("dense", lambda t, m: _set(m, "format", "kdtool.q/99"), "unknown format 'kdtool.q/99'"),
    ("dense", lambda t, m: m.pop("dataset"), "metadata lacks dataset"),
    ("dense", lambda t, m: _set(m, "class_names", json.dumps(NAMES[:-1])), "5 class names for K=6"),
    ("sparse", lambda t, m: _set(m, "class_names", json.dumps([*NAMES, "x"])), "7 class names for K=6"),
    ("dense", lambda t, m: _set(m, "class_names", json.dumps({"a": 1})), "JSON list of strings"),
    ("dense", lambda t, m: _set(m, "alpha", "0.0"), "alpha must be in (0, 1)"),
    ("sparse", lambda t, m: _set(m, "alpha", "1.5"), "alpha must be in (0, 1)"),
    ("dense", lambda t, m: _set(m, "alpha", "nan"), "alpha must be in (0, 1)"),
    ("dense", lambda t, m: _set(m, "alpha", "lots"), "malformed metadata"),
    ("dense", lambda t, m: _set(m, "num_classes", "5"), "q_logits has shape (6, 6) but num_classes is 5"),
    ("dense", lambda t, m: _set(t, "q_logits", torch.zeros(K, K + 1)), "q_logits must be K×K"),
    ("dense", lambda t, m: _set(t, "q_logits", torch.zeros(K, K, dtype=torch.float64)), "must be torch.float32"),
    ("dense", lambda t, m: t["q_logits"].__setitem__((1, 2), math.nan), "q_logits contains NaN or +inf"),
    ("dense", lambda t, m: t["q_logits"].__setitem__((1, 2), math.inf), "q_logits contains NaN or +inf"),
    ("dense", lambda t, m: t["q_logits"][3].fill_(-math.inf), "a row of q_logits is entirely -inf"),
    ("dense", lambda t, m: t.pop("q_logits"), "no Q tensor: expected q_logits"),
    ("dense", lambda t, m: _set(t, "rest_logits", torch.zeros(K)), "both a dense q_logits and sparse"),
    ("dense", lambda t, m: _set(t, "extra_tensor", torch.zeros(2)), "unexpected tensor 'extra_tensor'"),
    ("sparse", lambda t, m: t.pop("rest_logits"), "sparse Q lacks tensor rest_logits"),
    ("sparse", lambda t, m: _set(m, "num_classes", "7"), "diag_logits has shape (6,) but num_classes is 7"),
    ("sparse", lambda t, m: _set(t, "topn_indices", t["topn_indices"].int()), "topn_indices must be torch.int64"),
    ("sparse", lambda t, m: t["topn_indices"].__setitem__((0, 0), K), "outside 0..5"),
    ("sparse", lambda t, m: t["topn_indices"].__setitem__((0, 0), -1), "outside 0..5"),
    ("sparse", lambda t, m: t["topn_indices"].__setitem__((2, 1), 2), "lists a row's own class"),
    ("sparse", lambda t, m: t["topn_indices"].__setitem__((2, 1), t["topn_indices"][2, 0]), "repeats a class"),
    ("sparse", lambda t, m: _set(t, "topn_logits", t["topn_logits"][:, :1].clone()), "topn_logits has shape (6, 1)"),
    ("sparse", lambda t, m: _set(t, "rest_logits", torch.zeros(K - 1)), "rest_logits must have K=6 entries"),
    (
        "sparse",
        lambda t, m: t.update(topn_indices=torch.zeros(K, K, dtype=torch.long), topn_logits=torch.zeros(K, K)),
        "1 ≤ N ≤ K−1 = 5",
    ),
    ("sparse", lambda t, m: t["topn_logits"].__setitem__((4, 0), math.nan), "topn_logits contains NaN"),
    ("sparse", lambda t, m: t["rest_logits"].__setitem__(4, math.inf), "rest_logits contains NaN or +inf"),
    ("sparse", lambda t, m: t["diag_logits"].__setitem__(4, math.nan), "diag_logits contains NaN"),
    (
        "sparse",
        lambda t, m: [t[name][5].fill_(-math.inf) for name in ("topn_logits", "diag_logits", "rest_logits")],
        "a row of Q is entirely -inf",
    ),
]


@pytest.mark.parametrize(("form", "breaker", "message"), FAULTS)
def test_each_fault_gives_its_message(tmp_path, form, breaker, message):
    tensors, meta = valid_contents(tmp_path, form)
    breaker(tensors, meta)
    path = write_artifact(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(KdtoolError) as info:
        QMatrix.load(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_neg_inf_entries_are_allowed(tmp_path):
    """A prior may give a class no mass: −inf is valid wherever a row keeps some finite logit."""
    logits = dense_q().logits.clone()
    logits[0, 3] = -math.inf
    q = QMatrix(logits, NAMES, 0.1, "toy", "prior")
    assert q.probabilities()[0, 3] == 0
    tensors, meta = valid_contents(tmp_path, "sparse")
    tensors["rest_logits"][1] = -math.inf
    sparse = QMatrix.load(write_artifact(tmp_path / "s.safetensors", tensors, meta))
    assert sparse.probabilities()[1].sum().item() == pytest.approx(1.0)


def test_a_header_length_byte_of_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    """A pickle starts with 0x80, and so does a safetensors file whose header length is 128 mod 256."""
    path = tmp_path / "q.safetensors"
    for pad in range(300):
        dense_q().with_extra({"pad": "x" * pad}).save(path)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert QMatrix.load(path).extra["pad"] == "x" * pad


def test_not_a_safetensors_file(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(KdtoolError, match="not a readable safetensors file"):
        QMatrix.load(junk)
    with pytest.raises(KdtoolError, match="does not exist"):
        QMatrix.load(tmp_path / "missing.safetensors")


def test_exactly_one_form():
    with pytest.raises(KdtoolError, match="exactly one"):
        QMatrix(None, NAMES, 0.1, "toy", "lls")
    with pytest.raises(KdtoolError, match="exactly one"):
        QMatrix(torch.zeros(K, K), NAMES, 0.1, "toy", "lls", sparse=random_sparse(K, 2))


# -- targets, subsets, the sparse form ---------------------------------------------------------


def test_targets_mix_one_hot_and_softmax_of_the_row():
    q = dense_q()
    labels = torch.tensor([0, 2, 2, 5])
    expected = 0.7 * torch.nn.functional.one_hot(labels, K) + 0.3 * torch.softmax(q.logits[labels], 1)
    torch.testing.assert_close(q.targets(labels, alpha=0.3), expected)
    torch.testing.assert_close(q.log_targets(labels).exp(), q.targets(labels))
    with pytest.raises(KdtoolError, match=r"outside 0\.\.5"):
        q.targets(torch.tensor([K]))


@pytest.mark.parametrize("sparse", [False, True])
def test_subset_equals_slicing_then_softmax_over_kept(sparse):
    q = dense_q(k=8).to_sparse(3) if sparse else dense_q(k=8)
    kept = [6, 1, 3, 0]
    sub = q.subset(kept)
    full = q.to_dense().logits  # the matrix a sparse Q stands for
    torch.testing.assert_close(sub.probabilities(), torch.softmax(full[kept][:, kept], dim=1))
    assert sub.class_names == ["c6", "c1", "c3", "c0"] and sub.source == "subset"
    assert json.loads(sub.extra["parent_classes"]) == kept
    assert sub.is_sparse == sparse
    if sparse:
        assert sub.sparse.n == 3  # capped at |S|−1
    labels = torch.tensor([0, 3])
    expected = 0.8 * torch.nn.functional.one_hot(labels, 4) + 0.2 * torch.softmax(full[kept][:, kept], 1)[labels]
    torch.testing.assert_close(sub.targets(labels), expected)


def test_subset_rejects_bad_classes():
    with pytest.raises(KdtoolError, match="listed twice"):
        dense_q().subset([1, 1])
    with pytest.raises(KdtoolError, match="out of range"):
        dense_q().to_sparse(2).subset([0, 9])


def test_sparse_keeps_each_kept_probability_and_the_row_mass():
    q = dense_q(k=9)
    s = q.to_sparse(3)
    assert s.is_sparse and s.source == "sparse" and s.extra["topn"] == "3" and s.extra["parent_source"] == "lls"
    dense_p, sparse_p = q.probabilities(), s.probabilities()
    off = q.logits.masked_fill(torch.eye(9, dtype=torch.bool), -math.inf)
    assert torch.equal(s.sparse.indices.sort(1).values, off.topk(3, dim=1).indices.sort(1).values)
    torch.testing.assert_close(sparse_p.gather(1, s.sparse.indices), dense_p.gather(1, s.sparse.indices))
    torch.testing.assert_close(sparse_p.diagonal(), dense_p.diagonal())
    torch.testing.assert_close(sparse_p.sum(1), torch.ones(9))
    # the 9−1−3 other entries of a row share equally what the kept ones leave
    others = torch.ones(9, 9, dtype=torch.bool).scatter(1, s.sparse.indices, False) & ~torch.eye(9, dtype=torch.bool)
    row_others = sparse_p[0][others[0]]
    torch.testing.assert_close(row_others, torch.full_like(row_others, dense_p[0][others[0]].mean().item()))


def test_sparse_with_n_k_minus_1_reproduces_dense_targets():
    q = dense_q(k=10)
    s = q.to_sparse(9)
    assert torch.isneginf(s.sparse.rest).all()  # nothing left over
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s.targets(labels), q.targets(labels), atol=1e-6, rtol=0)
    assert torch.equal(s.to_dense().logits, q.logits)


def test_shrinking_a_sparse_q_equals_sparsifying_its_dense_form():
    s = dense_q(k=12).to_sparse(6)
    direct = s.to_dense().to_sparse(2)
    shrunk = s.to_sparse(2)
    torch.testing.assert_close(shrunk.probabilities(), direct.probabilities())
    with pytest.raises(KdtoolError, match="keeps N=6"):
        s.to_sparse(7)
    with pytest.raises(KdtoolError, match="between 1 and 11"):
        dense_q(k=12).to_sparse(0)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any torch operation produces while active."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_sparse_targets_at_imagenet21k_scale_never_build_k_by_k():
    k, n, batch = 21841, 32, 256
    labels = torch.randint(0, k, (batch,), generator=torch.Generator().manual_seed(2))
    with LargestTensor() as largest:
        q = QMatrix(None, [str(i) for i in range(k)], 0.1, "in21k", "sparse", sparse=random_sparse(k, n))
        targets = q.targets(labels)
        stats = q.row_stats(5)
        smaller = q.to_sparse(8)
    assert largest.numel <= batch * k  # the B×K output; K×K would be 477M values (1.9 GB)
    assert targets.shape == (batch, k) and smaller.sparse.n == 8 and stats.similar.shape == (k, 5)
    torch.testing.assert_close(targets.sum(1), torch.ones(batch))
    # one row by hand: the others share rest, the row's normaliser counts it K−1−N times
    y = int(labels[0])
    sp = q.sparse
    log_z = torch.cat([sp.diag[y : y + 1], sp.values[y], sp.rest[y : y + 1] + math.log(k - 1 - n)]).logsumexp(0)
    assert targets[0, y].item() == pytest.approx(0.9 + 0.1 * math.exp(sp.diag[y] - log_z), rel=1e-5)
    column = int(sp.indices[y, 0])
    assert targets[0, column].item() == pytest.approx(0.1 * math.exp(sp.values[y, 0] - log_z), rel=1e-5)
    other = next(j for j in range(k) if j != y and j not in sp.indices[y].tolist())
    assert targets[0, other].item() == pytest.approx(0.1 * math.exp(sp.rest[y] - log_z), rel=1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_row_stats_match_the_probabilities(sparse):
    q = dense_q(k=7).to_sparse(4) if sparse else dense_q(k=7)
    p = q.probabilities()
    stats = q.row_stats(top=10)
    assert stats.similar.shape == (7, 4 if sparse else 6)  # capped at N, or at K−1
    torch.testing.assert_close(stats.diagonal, p.diagonal())
    torch.testing.assert_close(stats.entropy, -(p * p.log()).sum(1))
    off = p.masked_fill(torch.eye(7, dtype=torch.bool), -1)
    torch.testing.assert_close(stats.similar_probs, off.topk(stats.similar.shape[1], dim=1).values)
    torch.testing.assert_close(p.gather(1, stats.similar), stats.similar_probs)


# -- estimation and reports --------------------------------------------------------------------


def test_q_from_class_means_of_log_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0], [1.0, 1.0, 0.0], [0.0, 3.0, 0.0], [-1.0, 0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 2])
    q = QMatrix.from_class_means(logits, labels, ["a", "b", "c"], 0.1, "toy", {"run": "r"})
    log_p = torch.log_softmax(logits, 1)
    torch.testing.assert_close(q.logits, torch.stack([log_p[:2].mean(0), log_p[2], log_p[3]]))
    assert q.source == "teacher" and q.extra["estimator"] == "class-mean-log-prob" and q.extra["run"] == "r"
    with pytest.raises(KdtoolError, match="class 'c' has no samples"):
        QMatrix.from_class_means(logits[:3], labels[:3], ["a", "b", "c"], 0.1, "toy")


def test_confusion_matrix_counts_true_rows_predicted_columns():
    logits = torch.eye(3)[[0, 1, 1, 2, 0]]
    labels = torch.tensor([0, 1, 2, 2, 2])
    assert confusion_matrix(logits, labels).tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 1]]


def test_confusion_agreement():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.5], [2.0, 0.5, 0.0]])
    q = QMatrix(logits, ["a", "b", "c"], 0.1, "toy", "lls")
    # a is mistaken for b most (as Q says), b for c (Q says a), c never mistaken
    confusion = torch.tensor([[6, 3, 1], [1, 7, 2], [0, 0, 10]])
    result = confusion_agreement(q, confusion)
    assert result.q_top == [1, 0, 0]
    assert result.confusion_top == [[1], [2], []]
    assert result.agrees == [True, False, None] and result.top1_agreement == (1, 2)
    assert result.cells == 6 and -1.0 <= result.spearman <= 1.0
    assert result.row_spearman[0] == pytest.approx(1.0) and math.isnan(result.row_spearman[2])
    tied = confusion_agreement(q, torch.tensor([[6, 2, 2], [2, 6, 2], [0, 0, 10]]))
    assert tied.confusion_top[1] == [0, 2] and tied.agrees[1] is True  # Q's choice shares the top mistake
    perfect = confusion_agreement(q, (q.probabilities() * 1000).round().long())
    assert perfect.spearman == pytest.approx(1.0) and perfect.top1_agreement == (3, 3)


def test_confusion_on_classes_follows_the_subset_rule():
    logits = torch.tensor([[0.0, 5.0, 1.0], [1.0, 0.0, 9.0], [3.0, 0.0, 2.0]])
    labels = torch.tensor([2, 0, 1])
    # kept c, a: the sample of b is dropped; the others are predicted among c and a only
    confusion = confusion_on_classes(logits, labels, ["a", "b", "c"], ["c", "a"])
    assert confusion.tolist() == [[1, 0], [1, 0]]
    with pytest.raises(KdtoolError, match="not among the run's"):
        confusion_on_classes(logits, labels, ["a", "b", "c"], ["a", "z"])


def test_heatmap_refuses_huge_k():
    q = QMatrix(None, [str(i) for i in range(HEATMAP_MAX_CLASSES + 1)], 0.1, "big", "sparse",
                sparse=random_sparse(HEATMAP_MAX_CLASSES + 1, 2))  # fmt: skip
    with pytest.raises(KdtoolError, match="unreadable"):
        check_heatmap_size(q)
