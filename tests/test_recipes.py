import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_tiny(recipe: str, out: Path, *args: str, **overrides: str) -> subprocess.CompletedProcess:
    """Run ``recipes/<recipe>`` in tiny mode: installed kdtool, 1 epoch, few samples, output under ``out``."""
    env = {
        **os.environ,
        "KDTOOL_SKIP_INSTALL": "1",
        "KDTOOL_BIN": str(Path(sys.executable).parent / "kdtool"),
        "KDTOOL_PYTHON": sys.executable,
        "KDTOOL_EPOCHS": "1",
        "KDTOOL_OUT": str(out),
        # 1 epoch: a paper recipe's --warmup-epochs 5 would be more than half the run (refused); EXTRA comes last
        "KDTOOL_EXTRA": "--limit-train 256 --limit-test 128 --warmup-epochs 0",
        **overrides,
    }
    done = subprocess.run(["bash", str(ROOT / "recipes" / recipe), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def markdown_rows(path: Path) -> list[list[str]]:
    """The body rows of the markdown table a recipe wrote, as lists of cells."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


@pytest.mark.slow
def test_quickstart_recipe_in_tiny_mode(tmp_path):
    done = run_tiny("quickstart.sh", tmp_path / "qs")
    assert "test accuracy" in done.stdout and "q.safetensors" in done.stdout
    assert (tmp_path / "qs" / "q.safetensors").is_file()


@pytest.mark.slow
def test_fmnist_lls_vs_ls_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "lvl"
    done = run_tiny("fmnist_lls_vs_ls.sh", out, KDTOOL_SEEDS="0,1")
    rows = markdown_rows(out / "compare.md")
    assert [(r[0], r[1]) for r in rows] == [("onehot", "2"), ("ls", "2"), ("lls", "2")]
    assert all("±" in r[2] for r in rows) and "| lls | 2 |" in done.stdout
    assert sorted(p.name for p in (out / "lls").iterdir()) == ["seed0", "seed1"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
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


def markdown_tables(path: Path) -> list[list[list[str]]]:
    """Every markdown table of a file, as its body rows (lists of cells)."""
    tables, current = [], None
    for line in [*path.read_text().splitlines(), ""]:
        if line.startswith("| "):
            current = [] if current is None else current
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current is not None:
            tables.append(current[2:])
            current = None
    return tables


@pytest.mark.slow  # about 12 minutes on two busy shared CPU cores: 2 AlexNet teachers, 2 caches, 26 students
def test_fmnist_kd_benchmark_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "kdb"
    run_tiny("fmnist_kd_benchmark.sh", out, KDTOOL_SEEDS="0,1")
    students, relative = markdown_tables(out / "benchmark.md")
    assert [row[0] for row in students] == ["onehot", "kd", "dkd", "dist", "wttm", "nkd", "kd", "dkd", "kd", "dkd",
                                            "dist", "lls-st", "lls-st"]  # fmt: skip
    # logit standardisation for KD and DKD only; the three cached students (one view each); the Q
    assert [row[1] for row in students][1:11] == ["False"] * 5 + ["True", "True"] + ["False"] * 3
    assert [row[2] for row in students][8:11] == ["1"] * 3 and students[11][3].endswith("lls.q.safetensors")
    assert all(row[4] == "2" and "±" in row[5] for row in students)  # two seeds each, mean ± std
    assert [row[0] for row in relative] == ["onehot", "kd", "dkd", "dist", "wttm", "nkd", "kd-ls", "dkd-ls",
                                            "kd-cache", "dkd-cache", "dist-cache", "llsst-lls",
                                            "llsst-onehot"]  # fmt: skip
    assert relative[1][2] == "1.00"
    assert sorted(p.name for p in (out / "caches").iterdir()) == ["seed0.cache.safetensors", "seed1.cache.safetensors"]
    assert sorted(p.name for p in (out / "kd-cache").iterdir()) == ["seed0", "seed1"]
    cache_run = json.loads((out / "kd-cache" / "seed1" / "config.json").read_text())
    assert cache_run["teacher_cache"].endswith("seed1.cache.safetensors") and cache_run["seed"] == 1


@pytest.mark.slow
def test_fmnist_lls_alpha_recipe_in_tiny_mode_reports_only_the_chosen_alphas_test_accuracy(tmp_path):
    out = tmp_path / "alpha"
    run_tiny("fmnist_lls_alpha.sh", out, KDTOOL_SEEDS="0", KDTOOL_JOBS="2")  # common.sh's run_all: 2 processes
    rows = markdown_rows(out / "alpha.md")
    assert sorted(r[0] for r in rows) == ["alpha0.05", "alpha0.1", "alpha0.2", "alpha0.3"]
    text = (out / "alpha.md").read_text()
    assert text.count("test accuracy") == 1 and "Chosen on the validation split: **alpha" in text
    config = json.loads((out / "grid" / "alpha0.2" / "seed0" / "config.json").read_text())
    assert config["alpha"] == 0.2 and config["val_fraction"] == 0.1


@pytest.mark.slow
def test_goemotions_analysis_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "gea"
    run_tiny("goemotions_lls_analysis.sh", out, KDTOOL_SEEDS="0")  # one kdtool batch (the alpha test runs 2 jobs)
    per_class, q_mass = markdown_tables(out / "analysis.md")
    assert [r[0] for r in per_class] == ["training share (%)", "onehot", "lls-a0.05", "lls-a0.1", "lls-a0.2",
                                         "lls-a0.1-qwd0"]  # fmt: skip
    assert [r[0] for r in q_mass] == ["lls-a0.05", "lls-a0.1", "lls-a0.2", "lls-a0.1-qwd0"]
    shares = [float(v) for v in q_mass[0][1:8]]
    assert sum(shares) == pytest.approx(100, abs=0.5)  # each emotion's part of all off-diagonal mass


@pytest.mark.slow
def test_fmnist_lls_ablation_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "ablation"
    run_tiny("fmnist_lls_ablation.sh", out)
    terms = {r[0] for r in markdown_rows(out / "compare.md")}
    all_terms = {"target_entropy", "forward_ce", "prediction_entropy", "reverse_ce"}
    assert {frozenset(t.split(",")) for t in terms} == {frozenset(all_terms)} | {
        frozenset(all_terms - {left_out}) for left_out in all_terms
    }


@pytest.mark.slow
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
             KDTOOL_EXTRA="--image-size 8 --batch-size 6 --warmup-epochs 0")  # fmt: skip
    assert [(r[0], r[1]) for r in markdown_rows(out / "compare.md")] == [("onehot", "1"), ("ls", "1"), ("lls", "1")]


@pytest.mark.slow
def test_imagefolder_finetune_recipe_on_a_tiny_imagefolder(tmp_path):
    import timm
    import torch
    from PIL import Image

    data = tmp_path / "photos"
    for split, per_class in (("train", 6), ("val", 2)):
        for c, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
            folder = data / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (12, 12), tuple(v - 10 * i for v in colour)).save(folder / f"{i}.jpg")
    weights = tmp_path / "resnet10t.pth"  # what a user downloads: the zoo's 1000-class state dict
    torch.save(timm.create_model("resnet10t").state_dict(), weights)
    out = tmp_path / "ft"
    done = run_tiny("imagefolder_finetune_lls.sh", out, str(data), str(weights), MODEL="timm:resnet10t",
                    IMAGE_SIZE="16", KDTOOL_EXTRA="--batch-size 6 --warmup-epochs 0")  # fmt: skip
    assert "84 tensors loaded, 2 skipped (fc.weight, fc.bias)" in done.stdout
    teacher = json.loads((out / "teacher-lls" / "config.json").read_text())
    assert teacher["input_size"] == 176 and teacher["pretrained_weights"]["path"] == str(weights)
    assert sorted((r[0], r[1]) for r in markdown_rows(out / "compare.md")) == [
        ("kd", "mobilenet_v2"), ("lls", "timm:resnet10t"), ("lls-st", "mobilenet_v2")]  # fmt: skip


PAPER_SIZED = ["cifar10_alexnet.sh", "cifar100_resnet18.sh", "fmnist_alexnet.sh", "svhn_lenet.sh"]
# the GPU-sized recipes: too long to run here even in a tiny mode, so their commands are checked without training
GPU_RECIPES = [*PAPER_SIZED, "tinyimagenet_resnet18.sh", "cifar100_pls_dynamics.sh"]
ALL_RECIPES = sorted(p.name for p in (ROOT / "recipes").glob("*.sh") if p.name != "common.sh")

# A stand-in for the kdtool executable that only records its command line (one JSON list a line); for
# `kdtool batch -` (recipes/common.sh's run_kdtool), each command line it reads, read as kdtool batch reads them.
RECORDER = """#!{python}
import json, os, sys
argv = [sys.argv[1:]]
if sys.argv[1:3] == ["batch", "-"]:
    from kdtool.cli.batch import read_commands
    argv = [args for _, args in read_commands(sys.stdin.read(), "standard input")]
with open(os.environ["KDTOOL_ARGV_LOG"], "a") as fh:
    fh.writelines(json.dumps(args) + "\\n" for args in argv)
"""


def recipe_args(recipe: str, tmp_path: Path) -> list[str]:
    """The positional arguments a recipe needs (its data folder), made under ``tmp_path``."""
    text = (ROOT / "recipes" / recipe).read_text()
    if "usage: bash recipes/tinyimagenet" in text or "usage: bash recipes/imagefolder_finetune" in text:
        from PIL import Image

        for split in ("train", "val"):
            for c, colour in enumerate(((200, 30, 30), (30, 30, 200))):
                (tmp_path / "tin" / split / f"n0{c}").mkdir(parents=True)
                Image.new("RGB", (12, 12), colour).save(tmp_path / "tin" / split / f"n0{c}" / "0.JPEG")
        return [str(tmp_path / "tin")]
    return [str(tmp_path / "data")] if "DATA_ROOT" in text else []


def recorded_commands(recipe: str, tmp_path: Path) -> list[list[str]]:
    """Every kdtool command line ``recipe`` runs at its full size (its own epochs, seeds and options; only
    the output folder moved to ``tmp_path / "out"``), recorded without running any."""
    log = tmp_path / "argv.log"
    log.touch()
    recorder = tmp_path / "kdtool"
    recorder.write_text(RECORDER.format(python=sys.executable))
    recorder.chmod(0o755)
    (tmp_path / "out").mkdir()  # what kdtool would have created: the recipe tees its tables there
    # the recipes' analysis scripts (KDTOOL_PYTHON) would read runs that were never trained: they are not run (the
    # recipes' tiny-mode tests run them), which also saves a torch import each
    run_tiny(recipe, tmp_path / "out", *recipe_args(recipe, tmp_path), KDTOOL_BIN=str(recorder),
             KDTOOL_PYTHON=shutil.which("true"), KDTOOL_EPOCHS="", KDTOOL_EXTRA="", KDTOOL_SEEDS="",
             KDTOOL_ARGV_LOG=str(log))  # fmt: skip
    return [json.loads(line) for line in log.read_text().splitlines()]


def command_flags(argv: list[str]) -> tuple[str, set[str]]:
    """The (sub)command ``argv`` names, and every flag it accepts."""
    import typer

    from kdtool.cli import app

    command, rest, path = typer.main.get_command(app), list(argv), []
    while hasattr(command, "commands"):  # a group: descend into the named subcommand
        path.append(rest.pop(0))
        command = command.get_command(None, path[-1])
        assert command is not None, f"no command kdtool {' '.join(path)}"
    flags = {flag for param in command.params for flag in [*param.opts, *getattr(param, "secondary_opts", [])]}
    if path == ["sweep"]:  # the sweep takes every train-teacher option too
        flags |= command_flags(["train-teacher"])[1]
    return " ".join(path), flags


@pytest.fixture(scope="module")
def recipe_commands(tmp_path_factory) -> dict[str, list[list[str]]]:
    return {recipe: recorded_commands(recipe, tmp_path_factory.mktemp(recipe)) for recipe in ALL_RECIPES}


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_a_kdtool_line_is_read_back_by_kdtool_batch_and_by_bash(locale):
    """recipes/common.sh's kdtool_line quotes for both readers of run_kdtool's lines, in any locale (printf %q
    writes bash-only $'...' for non-ASCII characters in the C locale)."""
    from kdtool.cli.batch import read_commands

    args = ["train-teacher", "--classes", "T-shirt/top,Pullover", "--out", "/tmp/é d/it's", "--tag", "", "--x", 'a"$b']
    # the line, then each word bash makes of it, one a line
    words = 'eval "words=($line)"; printf \'%s\\n\' "${words[@]}"'
    script = f'source recipes/common.sh; line=$(kdtool_line {shlex.join(args)}); echo "$line"; {words}'
    env = {**os.environ, "KDTOOL_SKIP_INSTALL": "1", "LC_ALL": locale}
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    line, *by_bash = done.stdout.split("\n")[:-1]
    assert read_commands(line, "line") == [(1, args)] and by_bash == ["kdtool", *args]


@pytest.mark.parametrize("recipe", ALL_RECIPES)
def test_every_flag_a_recipe_passes_exists(recipe, recipe_commands):
    assert recipe_commands[recipe], f"{recipe} ran no kdtool command"
    for argv in recipe_commands[recipe]:
        name, flags = command_flags(argv)
        passed = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
        assert passed <= flags, f"{recipe}: kdtool {name} has no {sorted(passed - flags)}"


@pytest.mark.parametrize("recipe", PAPER_SIZED)
def test_paper_sized_recipes_state_the_paper_numbers(recipe):
    text = (ROOT / "recipes" / recipe).read_text()
    assert "Paper's numbers" in text and "LLS" in text and "compare_methods" in text


class TrainingWouldStart(Exception):
    """Raised where the first epoch would begin: every option, the data, the network and the run folder
    have been checked and set up by then."""


def fake_torchvision_set(name: str, per_class: int):
    """A stand-in for torchvision's CIFAR-10/100 or SVHN class: a few random images of the real shape
    and classes, so that commands on them can be checked without the download."""
    from kdtool.data.classnames import dataset_class_names

    classes = dataset_class_names(name)

    class Fake:
        def __init__(self, root, download=False, train=True, split=None):
            training = train if split is None else split == "train"
            n = len(classes) * (per_class if training else 1)
            rng = np.random.default_rng(0 if training else 1)
            labels = np.arange(n) % len(classes)
            if name == "svhn":  # torchvision's SVHN: N×C×H×W, .labels, no .classes
                self.data, self.labels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), labels
            else:
                self.data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
                self.targets, self.classes = labels.tolist(), list(classes)

    return Fake


def option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def check_without_training(argv: list[str]) -> None:
    """Run a training command up to its first epoch; raise if kdtool refuses it."""
    from kdtool.cli import main_args

    with pytest.raises(TrainingWouldStart):
        main_args(list(argv))


@pytest.mark.parametrize("recipe", GPU_RECIPES)
def test_gpu_recipe_commands_are_accepted_by_kdtool(recipe, recipe_commands, monkeypatch, capsys):
    """Each command of a GPU-sized recipe, exactly as the recipe writes it (full epochs, seeds, schedule),
    goes through kdtool's own option checks, data loading (stand-in CIFAR/SVHN images), network and run
    folder set-up, and stops where training would start. Priors are made for real; every grid point of a
    sweep is checked (for its first seed); the reports (compare) have no runs to read: their flags are
    checked above."""
    import torchvision.datasets

    from kdtool.cli import main_args
    from kdtool.training.engine import Trainer

    def no_training(*args, **kwargs):
        raise TrainingWouldStart

    monkeypatch.setattr(Trainer, "epochs", no_training)
    for name, cls, per_class in (("cifar10", "CIFAR10", 4), ("cifar100", "CIFAR100", 1), ("svhn", "SVHN", 4)):
        monkeypatch.setattr(torchvision.datasets, cls, fake_torchvision_set(name, per_class))
    checked = 0
    for argv in recipe_commands[recipe]:
        if argv[0] == "make-prior":
            assert main_args(list(argv)) == 0
        elif argv[0] == "sweep":
            capsys.readouterr()
            assert main_args([*argv, "--print-commands"]) == 0
            runs = [
                shlex.split(line)[1:] for line in capsys.readouterr().out.splitlines() if line.startswith("kdtool ")
            ]
            assert runs, f"{recipe}: the sweep plans no run"
            first_seed = option(runs[0], "--seed")
            for run in runs:  # every grid point, for one seed
                if option(run, "--seed") == first_seed:
                    check_without_training(run)
                    checked += 1
        elif argv[0] in ("train-teacher", "distill"):
            check_without_training(argv)
            checked += 1
    assert checked >= 3, f"{recipe}: only {checked} training commands"


@pytest.mark.slow
def test_goemotions_recipe_in_tiny_mode(tmp_path):
    out = tmp_path / "ge"
    done = run_tiny("goemotions_lls.sh", out, KDTOOL_SEEDS="0")
    rows = markdown_rows(out / "compare.md")
    assert [r[:2] for r in rows] == [["onehot", "1"], ["ls", "1"], ["prior", "1"], ["lls", "1"]]
    assert "test_macro_f1" in (out / "compare.md").read_text()
    assert (out / "semls" / "seed0" / "config.json").is_file() and "top-2" in done.stdout
    assert (out / "q-heatmap.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_fmnist_pls_dynamics_recipe_in_tiny_mode(tmp_path):
    # the recipe passes --warmup-epochs 0 itself (a second one would be a sweep grid of two equal values)
    run_tiny("fmnist_pls_dynamics.sh", tmp_path, KDTOOL_SEEDS="0", KDTOOL_EXTRA="--limit-train 256 --limit-test 128")
    runs = sorted(p.name for p in tmp_path.iterdir() if (p / "model.safetensors").is_file())
    assert len(runs) == 12 and "lr-0.0001_smoothing-prior-fmnist-semantic" in runs  # one seed: not in the name
    assert (tmp_path / "dynamics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(markdown_rows(tmp_path / "compare.md")) == 12


@pytest.mark.slow
def test_quickstart_in_tiny_mode_leaves_the_real_quickstart_run_alone(tmp_path):
    """Issue #32 item 12: the documented tiny command (no KDTOOL_OUT) wrote, with --force, runs/quickstart-lls."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "quickstart.sh").write_bytes((ROOT / "recipes" / "quickstart.sh").read_bytes())
    env = {**os.environ, "KDTOOL_SKIP_INSTALL": "1", "KDTOOL_BIN": str(Path(sys.executable).parent / "kdtool"),
           "KDTOOL_EPOCHS": "1", "KDTOOL_EXTRA": "--limit-train 256 --limit-test 128"}  # fmt: skip
    done = subprocess.run(["bash", str(tmp_path / "recipes" / "quickstart.sh")], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "runs" / "quickstart-lls").exists()
    assert (tmp_path / "runs" / "quickstart-tiny" / "q.safetensors").is_file()
