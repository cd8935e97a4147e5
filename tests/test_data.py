import gzip

import pytest
import torch

from kdtool.data import BatchLoader, ImageBatchTransform, Split, load_dataset
from kdtool.data.embedded import load_embedded_fashion_mnist
from kdtool.data.idx import read_idx
from kdtool.data.loader import random_crop
from kdtool.errors import KdtoolError


def test_embedded_fashion_mnist_is_complete():
    ds = load_embedded_fashion_mnist()
    assert ds.train.inputs.shape == (60000, 1, 28, 28) and ds.train.inputs.dtype == torch.uint8
    assert ds.test.inputs.shape == (10000, 1, 28, 28)
    assert ds.train.labels.dtype == torch.int64
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert ds.info.class_names[0] == "T-shirt/top" and ds.info.class_names[9] == "Ankle boot"


def test_read_idx_roundtrip_and_truncation(tmp_path):
    header = bytes([0, 0, 0x08, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    good = tmp_path / "a.gz"
    good.write_bytes(gzip.compress(header + bytes(range(6))))
    assert read_idx(good).tolist() == [[0, 1, 2], [3, 4, 5]]
    bad = tmp_path / "b.gz"
    bad.write_bytes(gzip.compress(header + bytes(range(5))))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(bad)


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    out = random_crop(images, 2, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) for w in windows)
    same = random_crop(images, 2, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)


def test_loader_is_seeded_and_covers_every_sample():
    split = Split(
        torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 4, 4).contiguous(), torch.arange(10)
    )
    tf = ImageBatchTransform((0.0,), (1.0,), crop_padding=1, hflip=True)
    a = BatchLoader(split, 4, tf, torch.device("cpu"), shuffle=True, augment=True, seed=3)
    b = BatchLoader(split, 4, tf, torch.device("cpu"), shuffle=True, augment=True, seed=3)
    batches_a, batches_b = list(a.epoch(2)), list(b.epoch(2))
    assert len(a) == 3
    assert sorted(torch.cat([y for _, y in batches_a]).tolist()) == list(range(10))
    for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(torch.cat([y for _, y in a.epoch(0)]), torch.cat([y for _, y in a.epoch(1)]))


def test_normalisation():
    tf = ImageBatchTransform((0.5,), (0.25,))
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    assert tf(x, None).flatten().tolist() == pytest.approx([-2.0, 2.0])


def test_limits_and_unknown_dataset():
    ds = load_dataset("fashion-mnist").limited(100, 50, seed=0)
    assert len(ds.train) == 100 and len(ds.test) == 50
    with pytest.raises(KdtoolError, match="unknown dataset"):
        load_dataset("imagenet-42")


def test_torchvision_sets_need_a_root_and_explain_missing_files(tmp_path):
    with pytest.raises(KdtoolError, match="--data-root is required"):
        load_dataset("cifar100")
    with pytest.raises(KdtoolError, match="does not exist"):
        load_dataset("cifar10", data_root=tmp_path / "nowhere")
    with pytest.raises(KdtoolError, match="--download"):
        load_dataset("cifar10", data_root=tmp_path)


def test_imagefolder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (20, 10), color=(i * 100, 50, 200)).save(tmp_path / split / cls / f"{i}.png")
    ds = load_dataset(f"imagefolder:{tmp_path}", image_size=16)
    assert ds.info.class_names == ("cat", "dog")
    assert ds.train.inputs.shape == (4, 3, 16, 16) and ds.train.inputs.dtype == torch.uint8
    assert ds.test.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(KdtoolError, match="train/ and val/"):
        load_dataset(f"imagefolder:{tmp_path / 'train'}")
