import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_tiny(recipe: str, out: Path, *args: str, **overrides: str) -> subprocess.CompletedProcess:
    """Run ``recipes/<recipe>`` in tiny mode: installed kdtool, 1 epoch, few samples, output under ``out``."""
    env = {
        **os.environ,
        "KDTOOL_SKIP_INSTALL": "1",
        "KDTOOL_BIN": str(Path(sys.executable).parent / "kdtool"),
        "KDTOOL_EPOCHS": "1",
        "KDTOOL_OUT": str(out),
        "KDTOOL_EXTRA": "--limit-train 256 --limit-test 128",
        **overrides,
    }
    done = subprocess.run(["bash", str(ROOT / "recipes" / recipe), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def markdown_rows(path: Path) -> list[list[str]]:
    """The body rows of the markdown table a recipe wrote, as lists of cells."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_quickstart_recipe_in_tiny_mode(tmp_path):
    done = run_tiny("quickstart.sh", tmp_path / "qs")
    assert "test accuracy" in done.stdout and "q.safetensors" in done.stdout
    assert (tmp_path / "qs" / "q.safetensors").is_file()


def test_fmnist_lls_vs_ls_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "lvl"
    done = run_tiny("fmnist_lls_vs_ls.sh", out, KDTOOL_SEEDS="0,1")
    rows = markdown_rows(out / "compare.md")
    assert [(r[0], r[1]) for r in rows] == [("onehot", "2"), ("ls", "2"), ("lls", "2")]
    assert all("±" in r[2] for r in rows) and "| lls | 2 |" in done.stdout
    assert sorted(p.name for p in (out / "lls").iterdir()) == ["seed0", "seed1"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_fmnist_llsst_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "llsst"
    done = run_tiny("fmnist_llsst.sh", out)
    names = {"fmnist-lenet5-lls", "fmnist-lenet5-onehot-from-teacher", "fmnist-lenet5-lls-tops",
             "fmnist-lenet5-lls-top3", "fmnist-superclass"}  # fmt: skip
    assert {p.name.removesuffix(".q.safetensors") for p in (out / "q").iterdir()} == names
    runs = [r[0].rsplit("/", 1)[-1] for r in markdown_rows(out / "compare.md")]
    assert sorted(runs) == ["st-half-kd", "st-half-lls-q", "st-lls-q", "st-onehot-q", "st-tops", "teacher-lls",
                            "teacher-onehot"]  # fmt: skip
    assert "Spearman" in done.stdout and "4 classes" in done.stdout
    assert (out / "st-tops" / "confusion-test.png").is_file()


def test_fmnist_lls_ablation_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "ablation"
    run_tiny("fmnist_lls_ablation.sh", out)
    terms = {r[0] for r in markdown_rows(out / "compare.md")}
    all_terms = {"target_entropy", "forward_ce", "prediction_entropy", "reverse_ce"}
    assert {frozenset(t.split(",")) for t in terms} == {frozenset(all_terms)} | {
        frozenset(all_terms - {left_out}) for left_out in all_terms
    }


def test_tinyimagenet_recipe_on_a_tiny_imagefolder(tmp_path):
    from PIL import Image

    data = tmp_path / "tiny-imagenet"
    for split, per_class in (("train", 6), ("val", 2)):
        for c, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            folder = data / split / f"n0{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (12, 12), tuple(v - 10 * i for v in colour)).save(folder / f"{i}.JPEG")
    out = tmp_path / "tin"
    run_tiny("tinyimagenet_resnet18.sh", out, str(data), KDTOOL_SEEDS="0",
             KDTOOL_EXTRA="--image-size 8 --batch-size 6")  # fmt: skip
    assert [(r[0], r[1]) for r in markdown_rows(out / "compare.md")] == [("onehot", "1"), ("ls", "1"), ("lls", "1")]


@pytest.mark.parametrize("recipe", ["cifar10_alexnet.sh", "cifar100_resnet18.sh", "fmnist_alexnet.sh", "svhn_lenet.sh"])
def test_paper_sized_recipes_parse_and_state_the_paper_numbers(recipe):
    text = (ROOT / "recipes" / recipe).read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "recipes" / recipe)]).returncode == 0
    assert "Paper's numbers" in text and "LLS" in text and "compare_methods" in text


def test_goemotions_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "ge"
    done = run_tiny("goemotions_lls.sh", out, KDTOOL_SEEDS="0")
    rows = markdown_rows(out / "compare.md")
    assert [r[:2] for r in rows] == [["onehot", "1"], ["ls", "1"], ["prior", "1"], ["lls", "1"]]
    assert "test_macro_f1" in (out / "compare.md").read_text()
    assert (out / "semls" / "seed0" / "config.json").is_file() and "top-2" in done.stdout
    assert (out / "q-heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_fmnist_pls_dynamics_recipe_in_tiny_mode(tmp_path):
    run_tiny("fmnist_pls_dynamics.sh", tmp_path, KDTOOL_SEEDS="0")
    runs = sorted(p.name for p in tmp_path.iterdir() if (p / "model.safetensors").is_file())
    assert len(runs) == 12 and "lr-0.0001_smoothing-prior-fmnist-semantic" in runs  # one seed: not in the name
    assert (tmp_path / "dynamics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(markdown_rows(tmp_path / "compare.md")) == 12


def test_cifar100_pls_dynamics_recipe_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "recipes" / "cifar100_pls_dynamics.sh")]).returncode == 0
