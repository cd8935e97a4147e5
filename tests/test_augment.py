"""Batched augmentations (Cutout, RandAugment, Mixup, CutMix) and how the engine trains with them."""

import pytest
import torch

from kdtool.data.augment import OPS, BatchMixer, MixedBatch, cutout, parse_augment, rand_augment
from kdtool.data.embedded import FASHION_MNIST_INFO
from kdtool.data.loader import ImageBatchTransform
from kdtool.errors import KdtoolError
from kdtool.losses import LearnableLabelSmoothing


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_parse_augment():
    assert parse_augment("standard") == ("standard",)
    assert parse_augment("randaugment, MIXUP") == ("standard", "mixup", "randaugment")
    assert parse_augment("none") == () and parse_augment(False) == () and parse_augment("true") == ("standard",)
    for bad in ("none,mixup", "autoaugment", ""):
        with pytest.raises(KdtoolError, match="unknown augmentation"):
            parse_augment(bad)


def test_mixed_loss_with_lls_gives_gradient_to_both_rows_of_q():
    lls = LearnableLabelSmoothing(3, alpha=0.2)
    with torch.no_grad():
        lls.q.normal_()
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    batch = MixedBatch(torch.zeros(1, 1), torch.tensor([0]), torch.tensor([1]), torch.tensor(0.7))
    loss = batch.loss(lls, logits)
    expected = 0.7 * lls(logits, torch.tensor([0])) + 0.3 * lls(logits, torch.tensor([1]))
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    row_grad = lls.q.grad.abs().sum(1)
    assert row_grad[0] > 0 and row_grad[1] > 0 and row_grad[2] == 0
    assert batch.hits(logits).item() == pytest.approx(0.7)  # right for the first label only


def test_mixup_mixes_each_image_with_its_partner():
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 4, 4)
    labels = torch.arange(6)
    batch = BatchMixer(("mixup",))(x, labels, gen())
    lam = batch.lam.item()
    assert 0 <= lam <= 1 and sorted(batch.paired_labels.tolist()) == list(range(6))
    expected = lam * labels + (1 - lam) * batch.paired_labels
    assert torch.allclose(batch.inputs[:, 0, 0, 0], expected.float())
    again = BatchMixer(("mixup",))(x, labels, gen())
    assert torch.equal(again.inputs, batch.inputs)  # seeded by the generator alone


def test_cutmix_lambda_is_the_kept_area():
    # image i is filled with the value i + 1: every pixel of a mixed image tells where it came from
    x = (torch.arange(4, dtype=torch.float32) + 1).view(4, 1, 1, 1).expand(4, 1, 16, 16)
    mixed_images = 0
    for seed in range(5):
        batch = BatchMixer(("cutmix",))(x, torch.arange(4), gen(seed))
        lam = batch.lam.item()
        for i, partner in enumerate(batch.paired_labels.tolist()):
            image = batch.inputs[i, 0]
            assert set(image.unique().tolist()) <= {i + 1.0, partner + 1.0}
            if partner == i:  # mixed with itself: unchanged whatever the box
                assert torch.equal(image, x[i, 0])
                continue
            assert (image == i + 1).float().mean().item() == pytest.approx(lam)  # λ is the kept area
            assert (image == partner + 1).float().mean().item() == pytest.approx(1 - lam)
            mixed_images += 0 < lam < 1
    assert mixed_images >= 8  # most images of these 5 seeded batches got a non-empty box from another image


def test_no_mixing_returns_the_batch_unchanged():
    x, y = torch.randn(3, 1, 2, 2), torch.tensor([0, 1, 2])
    batch = BatchMixer(())(x, y, None)
    assert not isinstance(batch, MixedBatch) and batch.inputs is x and batch.hits(torch.eye(3)).item() == 3


def test_cutout_zeroes_one_clipped_square_per_image():
    x = torch.ones(16, 1, 10, 10)
    out = cutout(x, 4, gen())
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert (zeros > 0).all() and (zeros <= 16).all()
    assert (zeros == 16).any()  # an unclipped square has exactly 4×4 pixels


def test_rand_augment_is_seeded_and_keeps_shape_and_range():
    x = torch.randint(0, 256, (32, 3, 12, 12), dtype=torch.uint8)
    a, b = rand_augment(x, gen(1)), rand_augment(x, gen(1))
    assert a.dtype == torch.uint8 and a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)
    for name, op in OPS.items():
        out = op(x.float(), torch.ones(32), 0.3)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255, name


def test_transform_adds_randaugment_and_cutout_only_when_asked():
    assert ImageBatchTransform.for_dataset(FASHION_MNIST_INFO, ()) == ImageBatchTransform((0.2860,), (0.3530,))
    tf = ImageBatchTransform.for_dataset(FASHION_MNIST_INFO, parse_augment("cutout,randaugment"))
    assert tf.randaugment and tf.cutout == 14 and tf.crop_padding == 4
    images = torch.full((8, 1, 28, 28), 200, dtype=torch.uint8)
    out = tf(images, gen())
    assert out.shape == (8, 1, 28, 28) and (out == 0).any()
    assert torch.equal(out, tf(images, gen()))
