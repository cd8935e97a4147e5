import pytest
import torch

from kdtool.data import Dataset, DatasetInfo, Split
from kdtool.errors import KdtoolError
from kdtool.q.subsets import parse_name_list, resolve_classes

NAMES = ["a", "b", "c", "d"]


def test_resolve_by_name_and_index_keeps_order():
    assert resolve_classes(NAMES, names=parse_name_list("c, a")) == [2, 0]
    assert resolve_classes(NAMES, indices=[3, 1]) == [3, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"names": ["a", "z"]}, "unknown class 'z'"),
        ({"names": ["a", "a"]}, "listed twice"),
        ({"indices": [0, 9]}, "out of range"),
        ({"names": ["a"]}, "at least 2"),
        ({}, "either by name"),
    ],
)
def test_resolve_errors(kwargs, message):
    with pytest.raises(KdtoolError, match=message):
        resolve_classes(NAMES, **kwargs)


def test_dataset_subset_relabels_in_given_order():
    info = DatasetInfo("toy", tuple(NAMES), 1, 2, (0.0,), (1.0,))
    labels = torch.tensor([0, 1, 2, 3, 2, 0])
    split = Split(labels.view(-1, 1, 1, 1).expand(-1, 1, 2, 2).to(torch.uint8), labels)
    sub = Dataset(info, split, split).subset_classes([2, 0])
    assert sub.info.class_names == ("c", "a")
    assert sub.train.labels.tolist() == [1, 0, 0, 1]
    assert sub.train.inputs[:, 0, 0, 0].tolist() == [0, 2, 2, 0]  # original class ids of the kept samples
