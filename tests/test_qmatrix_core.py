import pickle

import pytest
import torch

from kdtool import QMatrix
from kdtool.errors import KdtoolError


def make_q(k=4):
    torch.manual_seed(0)
    return QMatrix(torch.randn(k, k), [f"c{i}" for i in range(k)], 0.1, "toy", "lls")


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
