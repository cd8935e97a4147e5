"""``kdtool make-prior``: superclass and semantic priors as Q artifacts."""

import json
from pathlib import Path

import pytest
import torch

from kdtool import QMatrix
from kdtool.data.classnames import CIFAR100_CLASSES, CIFAR100_SUPERCLASSES, dataset_class_names
from kdtool.data.wordvectors import DEFAULT_LABEL_VECTORS, class_name_words, class_vectors
from kdtool.errors import KdtoolError
from kdtool.q.priors import semantic_prior, superclass_prior

ROOT = Path(__file__).resolve().parents[1]


def test_cifar100_names_and_groups_are_consistent():
    assert len(CIFAR100_SUPERCLASSES) == 20 and all(len(g) == 5 for g in CIFAR100_SUPERCLASSES.values())
    assert len(set(CIFAR100_CLASSES)) == 100
    assert CIFAR100_CLASSES[:3] == ("apple", "aquarium_fish", "baby") and CIFAR100_CLASSES[-1] == "worm"


def test_superclass_prior_of_cifar100_clock(run_cli, tmp_path):
    out = tmp_path / "c100.q.safetensors"
    code, _, stderr = run_cli("make-prior", "superclass", "--dataset", "cifar100", "--out", out)
    assert code == 0, stderr
    q = QMatrix.load(out)
    assert q.source == "prior" and q.num_classes == 100 and q.dataset == "cifar100"
    theta = q.probabilities()
    clock = q.class_names.index("clock")
    mates = {q.class_names[i]: p for i, p in enumerate(theta[clock].tolist()) if p > 0}
    assert mates == pytest.approx({"keyboard": 0.25, "lamp": 0.25, "telephone": 0.25, "television": 0.25})
    assert torch.isneginf(q.logits[clock, clock]) and torch.allclose(theta.sum(1), torch.ones(100))
    # the same Q gives LLS-ST targets (1-α)e_y + α θ_y without NaN
    assert torch.isfinite(q.targets(torch.tensor([clock]), alpha=0.1)).all()


def test_groups_with_a_single_member_fall_back_to_uniform():
    theta, alone = superclass_prior(["cat", "dog", "lion"], {"cats": ["cat", "lion"], "alone": ["dog"]})
    assert alone == ["dog"]
    assert theta.tolist() == [[0, 0, 1], [0.5, 0, 0.5], [1, 0, 0]]


def _imagefolder(tmp_path, names):
    for name in names:
        (tmp_path / "data" / "train" / name).mkdir(parents=True)
    return f"imagefolder:{tmp_path / 'data'}"


@pytest.mark.parametrize(
    ("groups", "message"),
    [({"g": ["cat", "dog", "unicorn"]}, "'unicorn', which is not a class"),
     ({"g": ["cat", "dog"], "h": ["cat"]}, "'cat' is in two groups"),
     ({"g": ["cat"]}, "'dog' is in no group"),
     (["cat", "dog"], "must be a JSON object")],
)  # fmt: skip
def test_bad_groups_files_exit_2_and_write_nothing(run_cli, tmp_path, groups, message):
    dataset = _imagefolder(tmp_path, ["cat", "dog"])
    path, out = tmp_path / "groups.json", tmp_path / "never.q.safetensors"
    path.write_text(json.dumps(groups))
    code, _, stderr = run_cli("make-prior", "superclass", "--dataset", dataset, "--groups", path, "--out", out)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_make_prior_refuses_to_overwrite_and_needs_groups_beyond_cifar100(run_cli, tmp_path):
    out = tmp_path / "p.q.safetensors"
    out.write_text("keep me")
    code, _, stderr = run_cli("make-prior", "superclass", "--dataset", "cifar100", "--out", out)
    assert code == 2 and "--force" in stderr and out.read_text() == "keep me"
    code, _, stderr = run_cli("make-prior", "superclass", "--dataset", "cifar100", "--out", out, "--force")
    assert code == 2 and "not a file kdtool wrote" in stderr and out.read_text() == "keep me"
    out.unlink()
    assert run_cli("make-prior", "superclass", "--dataset", "cifar100", "--out", out)[0] == 0
    assert run_cli("make-prior", "superclass", "--dataset", "cifar100", "--out", out, "--force")[0] == 0
    code, _, stderr = run_cli("make-prior", "superclass", "--dataset", "cifar10", "--out", tmp_path / "x")
    assert code == 2 and "--groups" in stderr


def test_class_name_words():
    assert class_name_words("T-shirt/top") == ["t-shirt", "top"]
    assert class_name_words("maple_tree") == ["maple", "tree"]
    assert class_name_words("3 - three") == ["3", "three"]


def test_semantic_prior_from_a_tiny_vector_file(run_cli, tmp_path):
    vectors = tmp_path / "vectors.txt"  # word2vec text format: a header, then cased words
    vectors.write_text("5 2\nCat 0 0\ncat 9 9\ndog 3 0\nsea 0 3\nlion 0 5\n")
    dataset = _imagefolder(tmp_path, ["cat", "dog", "sea_lion"])  # sea_lion = mean of sea, lion = (0, 4)
    out = tmp_path / "sem.q.safetensors"
    code, _, stderr = run_cli("make-prior", "semantic", "--dataset", dataset, "--label-vectors", vectors, "--out", out)
    assert code == 0, stderr
    theta = QMatrix.load(out).probabilities()
    # distances: cat-dog 3, cat-sea_lion 4, dog-sea_lion 5; θ_yk ∝ 1/distance
    expected = [[0, 4 / 7, 3 / 7], [5 / 8, 0, 3 / 8], [5 / 9, 4 / 9, 0]]
    assert theta.tolist() == [pytest.approx(row, rel=1e-5) for row in expected]


def test_semantic_prior_names_a_class_without_vector(run_cli, tmp_path):
    vectors = tmp_path / "v.txt"
    vectors.write_text("cat 0 1\ndog 1 0\n")
    dataset = _imagefolder(tmp_path, ["cat", "dog", "axolotl"])
    code, _, stderr = run_cli("make-prior", "semantic", "--dataset", dataset, "--label-vectors", vectors,
                              "--out", tmp_path / "x.q.safetensors")  # fmt: skip
    assert code == 2 and "'axolotl'" in stderr and len(stderr.strip().splitlines()) == 1


def test_identical_class_vectors_are_an_error():
    with pytest.raises(KdtoolError, match="same vector"):
        semantic_prior(torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), ["a", "b", "c"])


@pytest.mark.parametrize("dataset", ["fashion-mnist", "mnist", "cifar10", "cifar100"])
def test_shipped_vectors_cover_the_builtin_datasets(dataset):
    vectors, skipped = class_vectors(dataset_class_names(dataset), DEFAULT_LABEL_VECTORS)
    assert vectors.shape == (len(dataset_class_names(dataset)), 50)
    assert all(words == [name.split(" ")[0]] for name, words in skipped.items())  # only MNIST's digits
    theta = semantic_prior(vectors, dataset_class_names(dataset))
    assert torch.allclose(theta.sum(1), torch.ones(len(theta))) and (theta.diagonal() == 0).all()


def test_fmnist_groups_recipe_and_committed_prior_agree():
    groups = json.loads((ROOT / "recipes" / "fmnist-groups.json").read_text())
    theta, alone = superclass_prior(dataset_class_names("fashion-mnist"), groups)
    assert alone == ["Trouser", "Bag"]
    q = QMatrix.load(ROOT / "artifacts" / "fmnist-superclass.q.safetensors")
    assert torch.allclose(q.probabilities(), theta)
