import pytest
import torch

from kdtool.errors import KdtoolError
from kdtool.models.registry import MODELS, build_model
from kdtool.models.text import TEXT_MODELS


@pytest.mark.parametrize("name", sorted(set(MODELS) - set(TEXT_MODELS)))
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_models_follow_the_dataset_shape(name, channels, size):
    model = build_model(name, 7, channels, size).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, channels, size, size)).shape == (2, 7)


def test_unknown_model():
    with pytest.raises(KdtoolError, match="unknown model"):
        build_model("vgg99", 10, 3, 32)
