"""Batched input augmentations beyond crop/flip: Cutout, RandAugment, Mixup and CutMix.

Everything works on a whole batch on the training device and draws every random choice from the
loader's per-epoch generator, so epochs replay exactly and no step waits for the host. The per-image
augmentations draw their choices first (``*_draw``) and then apply them (``*_at``, ``*_apply``), so a
teacher cache can store the choices and replay them (:meth:`~kdtool.data.loader.ImageBatchTransform.apply`).

- ``cutout`` (DeVries & Taylor 2017): one square of side ⌊size/2⌋ per image, centred anywhere
  (clipped at the border), set to 0 after normalisation, i.e. to the dataset's mean colour.
- ``randaugment`` (Cubuk et al. 2020): per image, 2 operations drawn from the 14 of torchvision's
  RandAugment, magnitude 9 of 30, each signed operation with a random sign.
- ``mixup`` (Zhang et al. 2018) and ``cutmix`` (Yun et al. 2019): one λ ~ Beta(1, 1) = U(0, 1) and
  one pairing (a permutation) per batch; CutMix pastes one box of area ≈ (1−λ) and sets λ to the
  exact kept area. With both, each batch uses one of them, chosen with probability ½. The loss of a
  mixed batch is λ·loss(labels) + (1−λ)·loss(paired labels) (:class:`MixedBatch`), so every method
  works unchanged, and LLS's Q gets gradient through both labels' rows. Teacher logits that come
  with a batch (a teacher cache) are mixed like the inputs: λ·z + (1−λ)·paired z.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from kdtool.errors import KdtoolError

# A method's loss, as kdtool.losses.Target implements it: (logits, labels, inputs) -> scalar; distillation
# targets also take the batch's ``teacher_logits=`` where they come with it (a teacher cache).
LossFunction = Callable[..., torch.Tensor]

STANDARD = "standard"
EXTRAS = ("cutout", "mixup", "cutmix", "randaugment")
MIXERS = ("mixup", "cutmix")


def parse_augment(spec: str | bool) -> tuple[str, ...]:
    """``--augment`` -> the augmentations to apply: ``()`` for none, else ``("standard", *extras)``.

    ``standard`` (crop, and flip where it fits the data) is on unless the value is ``none``; the
    extras add to it. The boolean of earlier kdtool versions (``--augment/--no-augment``, stored in
    their config.json) still reads: true = standard, false = none.
    """
    if isinstance(spec, bool) or spec.strip().lower() in ("true", "false"):
        return (STANDARD,) if str(spec).lower() == "true" else ()
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in (STANDARD, *EXTRAS)]
    if unknown or not names:
        raise KdtoolError(
            f"unknown augmentation {unknown[0] if unknown else '(none)'!r}: use 'none', or '{STANDARD}' "
            f"and any of {', '.join(EXTRAS)}"
        )
    return (STANDARD, *(n for n in EXTRAS if n in names))


# -- Cutout --------------------------------------------------------------------------------------
def cutout_draw(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The squares' centres of a B×C×H×W batch: B×2 (row, column), uniform over the image."""
    b, _, h, w = shape
    cy = torch.randint(0, h, (b, 1, 1), generator=generator, device=device)
    cx = torch.randint(0, w, (b, 1, 1), generator=generator, device=device)
    return torch.cat([cy.view(b, 1), cx.view(b, 1)], dim=1)


def cutout_at(images: torch.Tensor, size: int, centres: torch.Tensor) -> torch.Tensor:
    """Zero one ``size``×``size`` square per image around its ``centres`` row (B×2), clipped at the border."""
    _, _, h, w = images.shape
    cy, cx = centres[:, 0, None, None], centres[:, 1, None, None]
    rows = torch.arange(h, device=images.device)[None, :, None]
    cols = torch.arange(w, device=images.device)[None, None, :]
    half = size // 2
    inside = (rows >= cy - half) & (rows < cy - half + size) & (cols >= cx - half) & (cols < cx - half + size)
    return images.masked_fill(inside[:, None], 0.0)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size``×``size`` square per image, centred uniformly at random, clipped at the border."""
    return cutout_at(images, size, cutout_draw(images.shape, generator, images.device))


# -- RandAugment ---------------------------------------------------------------------------------
# Each operation maps (float images in [0, 255], per-image sign ±1, level = magnitude/30) -> images.
Op = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each image with its own 2×3 affine matrix (normalised coordinates), zeros outside."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _matrix(sign: torch.Tensor, **entries: torch.Tensor) -> torch.Tensor:
    """Identity 2×3 matrices (one per image) with some entries (``a01``, ``a12`` ...) replaced."""
    theta = torch.eye(2, 3, device=sign.device).repeat(sign.shape[0], 1, 1)
    for key, value in entries.items():
        theta[:, int(key[1]), int(key[2])] = value
    return theta


def _rotate(x: torch.Tensor, sign: torch.Tensor, level: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    angle = sign * math.radians(30.0 * level)
    cos, sin = angle.cos(), angle.sin()
    return _affine(x, _matrix(sign, a00=cos, a01=-sin * h / w, a10=sin * w / h, a11=cos))


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, as PIL and torchvision compute greyscale (single-channel images unchanged)."""
    if x.shape[1] != 3:
        return x
    weights = torch.tensor([0.2989, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    # torchvision takes seconds to import: load it only when RandAugment runs
    from torchvision.transforms.v2.functional import equalize

    return equalize(x.round().to(torch.uint8)).float()


def _smoothed(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH kernel (ones with a centre of 5, over 13), the degenerate image of sharpness."""
    box = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (9.0 * box + 4.0 * x) / 13.0


def _blend(x: torch.Tensor, degenerate: torch.Tensor, sign: torch.Tensor, level: float) -> torch.Tensor:
    """``d + f·(x − d)`` with the factor f = 1 ± 0.9·level of torchvision's RandAugment."""
    factor = (1.0 + 0.9 * level * sign)[:, None, None, None]
    return (degenerate + factor * (x - degenerate)).clamp(0.0, 255.0)


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    low, high = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    span = high - low
    stretched = ((x - low) * (255.0 / span.clamp_min(1.0))).clamp(0.0, 255.0)  # clamp: float rounding
    return torch.where(span > 0, stretched, x)


def _posterize(x: torch.Tensor, level: float) -> torch.Tensor:
    step = 2.0 ** round(4 * level)  # keep 8 − round(4·level) bits, as torchvision does
    return (x / step).floor() * step


# Shear factor 0.3·level, translation (150/331)·level of the side, rotation 30°·level, as in torchvision.
OPS: dict[str, Op] = {
    "identity": lambda x, s, m: x,
    "shear_x": lambda x, s, m: _affine(x, _matrix(s, a01=s * 0.3 * m * x.shape[-2] / x.shape[-1])),
    "shear_y": lambda x, s, m: _affine(x, _matrix(s, a10=s * 0.3 * m * x.shape[-1] / x.shape[-2])),
    "translate_x": lambda x, s, m: _affine(x, _matrix(s, a02=s * 2 * (150 / 331) * m)),
    "translate_y": lambda x, s, m: _affine(x, _matrix(s, a12=s * 2 * (150 / 331) * m)),
    "rotate": _rotate,
    "brightness": lambda x, s, m: _blend(x, torch.zeros_like(x), s, m),
    "color": lambda x, s, m: _blend(x, _grey(x).expand_as(x), s, m),
    "contrast": lambda x, s, m: _blend(x, _grey(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), s, m),
    "sharpness": lambda x, s, m: _blend(x, _smoothed(x), s, m),
    "posterize": lambda x, s, m: _posterize(x, m),
    "solarize": lambda x, s, m: torch.where(x >= 255.0 * (1 - m), 255.0 - x, x),
    "autocontrast": lambda x, s, m: _autocontrast(x),
    "equalize": lambda x, s, m: _equalize(x),
}


def rand_augment_draw(batch: int, generator: torch.Generator, device: torch.device, num_ops: int = 2) -> torch.Tensor:
    """Each image's choices for ``num_ops`` rounds: B×(2·num_ops), per round the operation (index into
    :data:`OPS`) and whether its sign is negative (1) or positive (0)."""
    drawn = []
    for _ in range(num_ops):
        drawn.append(torch.randint(0, len(OPS), (batch,), generator=generator, device=device))
        drawn.append((torch.rand(batch, generator=generator, device=device) < 0.5).long())
    return torch.stack(drawn, dim=1)


def rand_augment(
    images: torch.Tensor, generator: torch.Generator, num_ops: int = 2, magnitude: int = 9
) -> torch.Tensor:
    """RandAugment on a uint8 N×C×H×W batch: ``num_ops`` rounds, each image drawing its own operation."""
    return rand_augment_apply(images, rand_augment_draw(images.shape[0], generator, images.device, num_ops), magnitude)


def rand_augment_apply(images: torch.Tensor, choices: torch.Tensor, magnitude: int = 9) -> torch.Tensor:
    """RandAugment on a uint8 N×C×H×W batch with the choices of :func:`rand_augment_draw`."""
    level = magnitude / 30.0
    x = images.float()
    rounds = choices.long().reshape(x.shape[0], -1, 2)
    for op, negative in zip(rounds[:, :, 0].T, rounds[:, :, 1].T, strict=True):
        sign = torch.where(negative.bool(), -1.0, 1.0)
        # Group the images by operation so each runs once on its own images: one host sync per round.
        order = op.argsort(stable=True)
        counts = torch.bincount(op, minlength=len(OPS)).tolist()
        groups = zip(OPS.values(), x[order].split(counts), sign[order].split(counts), strict=True)
        done = torch.cat([fn(xs, ss, level) if len(xs) else xs for fn, xs, ss in groups])
        x = torch.empty_like(x).index_copy_(0, order, done).round()
    return x.to(torch.uint8)


# -- Mixup / CutMix ------------------------------------------------------------------------------
@dataclass
class Batch:
    """A training batch as the engine sees it: the loss is the method's loss on the labels.

    ``teacher_logits``: the teacher's logits for these very inputs where they come with the data (a
    teacher cache replays them), passed on to the method; None where a method computes its own.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    teacher_logits: torch.Tensor | None = field(default=None, kw_only=True)

    def loss(self, target: LossFunction, logits: torch.Tensor) -> torch.Tensor:
        return self.loss_for(target, logits, self.labels)

    def loss_for(self, target: LossFunction, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The method's loss of ``logits`` against ``labels`` (and the batch's teacher logits, if any)."""
        if self.teacher_logits is None:
            return target(logits, labels, self.inputs)
        return target(logits, labels, self.inputs, teacher_logits=self.teacher_logits)

    def hits(self, logits: torch.Tensor) -> torch.Tensor:
        """Number of correct predictions (a device tensor)."""
        return (logits.argmax(1) == self.labels).sum()


@dataclass
class MixedBatch(Batch):
    """A batch mixed with a permutation of itself: ``λ·inputs + (1−λ)·paired inputs`` (or a pasted box)."""

    paired_labels: torch.Tensor
    lam: torch.Tensor

    def loss(self, target: LossFunction, logits: torch.Tensor) -> torch.Tensor:
        paired = self.loss_for(target, logits, self.paired_labels)
        return self.lam * super().loss(target, logits) + (1.0 - self.lam) * paired

    def hits(self, logits: torch.Tensor) -> torch.Tensor:
        """Correct predictions counted as λ for the first label and 1−λ for the paired one."""
        predicted = logits.argmax(1)
        return self.lam * (predicted == self.labels).sum() + (1.0 - self.lam) * (predicted == self.paired_labels).sum()


def cutmix_box(shape: torch.Size, lam: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """H×W mask of one box of area ≈ (1−λ)·H·W, centred uniformly, clipped at the border."""
    _, _, h, w = shape
    device = lam.device
    ratio = (1.0 - lam).sqrt()
    cut_h, cut_w = (h * ratio).floor(), (w * ratio).floor()
    cy = torch.randint(0, h, (), generator=generator, device=device)
    cx = torch.randint(0, w, (), generator=generator, device=device)
    top, bottom = (cy - cut_h // 2).clamp(0, h), (cy + cut_h // 2).clamp(0, h)
    left, right = (cx - cut_w // 2).clamp(0, w), (cx + cut_w // 2).clamp(0, w)
    rows = torch.arange(h, device=device)[:, None]
    cols = torch.arange(w, device=device)[None, :]
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


def beta_draw(alpha: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """One draw of Beta(α, α) from ``generator``, on ``device`` (no host synchronisation): G₁ / (G₁ + G₂) of two
    Gamma(α) draws (torch's own sampler; ``torch.distributions.Beta`` takes no generator)."""
    gammas = torch._standard_gamma(torch.full((2,), float(alpha), device=device), generator=generator)
    return gammas[0] / gammas.sum()


class BatchMixer:
    """Turns a loader batch into a :class:`Batch`, mixing it when mixup and/or cutmix are on."""

    def __init__(self, modes: tuple[str, ...] = (), alpha: float = 1.0) -> None:
        self.modes = tuple(m for m in MIXERS if m in modes)
        self.alpha = alpha  # λ ~ Beta(α, α) (α = 1: uniform)

    def __call__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None,
        teacher_logits: torch.Tensor | None = None,
    ) -> Batch:
        if not self.modes:
            return Batch(inputs, labels, teacher_logits=teacher_logits)
        device = inputs.device
        order = torch.randperm(inputs.shape[0], generator=generator, device=device)
        paired_labels = labels[order]
        lam = beta_draw(self.alpha, generator, device)
        if "cutmix" not in self.modes:
            mixed = lam * inputs + (1.0 - lam) * inputs[order]
        else:
            box = cutmix_box(inputs.shape, lam, generator)
            pasted, box_lam = torch.where(box, inputs[order], inputs), 1.0 - box.float().mean()
            if "mixup" not in self.modes:
                mixed, lam = pasted, box_lam
            else:
                use_cutmix = torch.rand((), generator=generator, device=device) < 0.5
                mixed = torch.where(use_cutmix, pasted, lam * inputs + (1.0 - lam) * inputs[order])
                lam = torch.where(use_cutmix, box_lam, lam)
        if teacher_logits is not None:  # the teacher's view of the mixed inputs: its logits mixed alike
            teacher_logits = lam * teacher_logits + (1.0 - lam) * teacher_logits[order]
        return MixedBatch(mixed, labels, paired_labels, lam, teacher_logits=teacher_logits)
