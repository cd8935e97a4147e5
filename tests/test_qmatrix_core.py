import pickle

import pytest
import torch

from kdtool import QMatrix
from kdtool.errors import KdtoolError


def make_q(k=4):
    torch.manual_seed(0)
    return QMatrix(torch.randn(k, k), [f"c{i}" for i in range(k)], 0.1, "toy", "lls")


def test_roundtrip_is_bit_exact(tmp_path):
    q = make_q()
    q.save(tmp_path / "q.safetensors")
    back = QMatrix.load(tmp_path / "q.safetensors")
    assert torch.equal(back.logits, q.logits)
    assert back.class_names == q.class_names and back.alpha == q.alpha and back.source == "lls"


def test_targets_rows_sum_to_one_and_mix_correctly():
    q = make_q()
    labels = torch.tensor([0, 2])
    t = q.targets(labels, alpha=0.3)
    torch.testing.assert_close(t.sum(1), torch.ones(2))
    expected = 0.7 * torch.nn.functional.one_hot(labels, 4) + 0.3 * q.probabilities()[labels]
    torch.testing.assert_close(t, expected)


def test_pickle_renamed_safetensors_is_rejected(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"q_logits": [1, 2]}))
    with pytest.raises(KdtoolError, match="never unpickles"):
        QMatrix.load(path)
    torch.save({"q": torch.zeros(2, 2)}, tmp_path / "t.safetensors")
    with pytest.raises(KdtoolError, match="never unpickles"):
        QMatrix.load(tmp_path / "t.safetensors")


def test_invalid_contents():
    with pytest.raises(KdtoolError, match="NaN"):
        QMatrix(torch.tensor([[0.0, float("nan")], [0.0, 0.0]]), ["a", "b"], 0.1, "d", "lls")
    with pytest.raises(KdtoolError, match="class names"):
        QMatrix(torch.zeros(2, 2), ["a"], 0.1, "d", "lls")
    with pytest.raises(KdtoolError, match="alpha"):
        QMatrix(torch.zeros(2, 2), ["a", "b"], 1.0, "d", "lls")
