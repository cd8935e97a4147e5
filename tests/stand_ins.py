"""Stand-ins for the user's own inputs that help examples and docs blocks name (``runs/fmnist-lls``,
``birds.pth``, ``imagefolder:~/data/tiny-imagenet``): each made once a session at tiny size, on demand, and
put where an example reads it (tests/test_help_examples.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from kdtool.cli import main_args
from tests.conftest import TINY

TOPS = "T-shirt/top,Pullover,Coat,Shirt"
SHIPPED_Q = Path(__file__).resolve().parents[1] / "artifacts" / "fmnist-lenet5-lls.q.safetensors"


def kdtool(*args: str | os.PathLike) -> None:
    """``kdtool ARGS`` in this process; a stand-in that cannot be made is a broken test."""
    assert main_args([str(a) for a in args]) == 0, args


def _image_folder(root: Path) -> None:
    """Two classes of random 64 px PNGs: 20 training images each (40 in all: 20 shards of 2), 4 test images."""
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 20), ("val", 4)):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = torch.randint(0, 256, (64, 64, 3), generator=generator, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(root / split / name / f"{i}.png")


def _text_folder(root: Path) -> None:
    """A ``text:`` folder: label<TAB>text lines, two classes."""
    root.mkdir()
    lines = "".join(f"{label}\t{text}\n" for label, text in [("good", "a fine day"), ("bad", "a sad day")] * 8)
    for split in ("train", "test"):
        (root / f"{split}.tsv").write_text(lines, encoding="utf-8")


def _word_vectors(path: Path, dim: int) -> None:
    """A GloVe text file of ``dim``-d vectors for the words of the shipped class-name vectors and the text folder."""
    from kdtool.data.embedded import EMBEDDED_ROOT

    shipped = EMBEDDED_ROOT / "class-name-vectors" / "glove.6B.50d.class-words.txt"
    words = [line.split(" ", 1)[0] for line in shipped.read_text(encoding="utf-8").splitlines() if line.strip()]
    generator = torch.Generator().manual_seed(0)
    rows = [f"{w} {' '.join(f'{v:.3f}' for v in torch.randn(dim, generator=generator).tolist())}"
            for w in [*words, "fine", "day", "sad"]]  # fmt: skip
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _q(path: Path, classes: int, top: int | None = None) -> None:
    """A Q artifact over ``classes`` made-up classes (a stand-in for CIFAR-100's or ImageNet-21k's), sparse with
    ``top``."""
    from kdtool.q.matrix import QMatrix

    q = QMatrix(
        torch.randn(classes, classes),
        tuple(f"class{i}" for i in range(classes)),
        alpha=0.1,
        dataset="made-up",
        source="test",
    )
    (q.to_sparse(top) if top else q).save(path)


# stand-ins that kdtool makes: the command line, "{out}" the stand-in's path, "{NAME}" another stand-in's
COMMANDS: dict[str, tuple[str, ...]] = {
    "augmented run": ("train-teacher", "--augment", "standard", *TINY, "--out", "{out}"),
    "kd run": ("distill", "--teacher", "{lls run}", *TINY, "--out", "{out}"),
    "tops run": ("distill", "--substitute-q", str(SHIPPED_Q), "--classes", TOPS, *TINY, "--out", "{out}"),
    "teacher.cache.safetensors": ("cache-teacher", "{onehot run}", "--augment", "standard", "--views", "2",
                                  "--limit-train", "256", "--out", "{out}"),
    "fmnist-semantic.q.safetensors": ("make-prior", "semantic", "--dataset", "fashion-mnist", "--out", "{out}"),
    "image folder run": ("train-teacher", "--dataset", "imagefolder:{image folder}", "--image-size", "32", *TINY,
                         "--out", "{out}"),
    "shards": ("shard", "imagefolder:{image folder}", "--out", "{out}", "--shard-size", "2"),
    "imported run": ("import", "--model", "timm:resnet10t", "--weights", "{resnet10t.safetensors}", "--dataset",
                     "fashion-mnist", "--input-size", "28", "--input-norm", "dataset", "--limit-test", "128",
                     "--out", "{out}"),
}  # fmt: skip


# a batch file of `kdtool batch`'s examples: short commands that read only what ships with kdtool
BATCH_LINES = """# two commands, one process
kdtool models
kdtool inspect-q artifacts/fmnist-lenet5-lls.q.safetensors --top 2
"""


class StandIns:
    """Builds each stand-in once, into ``root``, the first time an example asks for it by name."""

    def __init__(self, root: Path, runs: Callable[[str], Path]) -> None:
        self.root, self.made = root, {}
        self.builders: dict[str, Callable[[Path], object]] = {
            "onehot run": lambda p: shutil.copytree(runs("onehot"), p),
            "lls run": lambda p: shutil.copytree(runs("lls"), p),
            "seed runs": lambda p: [shutil.copytree(runs("lls"), p / f"seed{s}") for s in (0, 1)],
            "image folder": _image_folder,
            "text folder": _text_folder,
            "glove.100d.txt": lambda p: _word_vectors(p, 100),
            "glove.300d.txt": lambda p: _word_vectors(p, 300),
            "groups.json": lambda p: p.write_text(json.dumps({"pets": ["cat", "dog"]}), encoding="utf-8"),
            "q64.q.safetensors": lambda p: _q(p, 64),
            "q64-top32.q.safetensors": lambda p: _q(p, 64, top=32),
            "resnet10t.safetensors": lambda p: _timm_weights(p, "resnet10t", num_classes=10, in_chans=1),
            "resnet18.pth": _resnet18_weights,
            "timm-resnet18.safetensors": lambda p: _timm_weights(p, "resnet18"),
            "timm-resnet18-birds.pth": lambda p: _timm_weights(p, "resnet18", num_classes=2),
            "imagenet run": self._imagenet_run,
            "runs.txt": lambda p: p.write_text(BATCH_LINES, encoding="utf-8"),
        }

    def __getitem__(self, name: str) -> Path:
        if name not in self.made:
            path = self.root / name.replace(" ", "-")
            if name in COMMANDS:

                def named(match: re.Match) -> str:
                    return str(path if match[1] == "out" else self[match[1]])

                kdtool(*(re.sub(r"\{([^}]+)\}", named, arg) for arg in COMMANDS[name]))
            else:
                self.builders[name](path)
            self.made[name] = path
        return self.made[name]

    def _imagenet_run(self, path: Path) -> None:
        """A run trained on ``imagefolder:data/imagenet``, as the docs' ImageNet teacher: a cache of it names
        that dataset, which a student reads from the same relative path."""
        (self.root / "data").mkdir(exist_ok=True)
        (self.root / "data" / "imagenet").symlink_to(self["image folder"])
        here = os.getcwd()
        os.chdir(self.root)
        try:
            kdtool("train-teacher", "--dataset", "imagefolder:data/imagenet", *TINY, "--out", path)
        finally:
            os.chdir(here)

    def put(self, name: str, where: Path) -> None:
        """Put stand-in ``name`` at ``where``: a copy of a folder (an example may write into its run), a link to
        a file."""
        where.parent.mkdir(parents=True, exist_ok=True)
        made = self[name]
        if made.is_dir():
            shutil.copytree(made, where, symlinks=True)
        else:
            where.symlink_to(made)


def _timm_weights(path: Path, name: str, **options) -> None:
    """A timm model's weights: a pretrained file (safetensors) or a trained one (a torch.save'd state dict)."""
    import timm
    from safetensors.torch import save_file

    weights = timm.create_model(name, **options).state_dict()
    save_file(weights, path) if path.suffix == ".safetensors" else torch.save(weights, path)


def _resnet18_weights(path: Path) -> None:
    """A torchvision resnet18 checkpoint for the two-class image folder."""
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=2).state_dict(), path)
