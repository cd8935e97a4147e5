"""Every example in every ``--help`` and every docs block marked runnable runs as pasted (issue #32 item 11).

Each help example runs to the end, in this process, in a fresh folder that is also $HOME and holds the shipped
``artifacts/`` and ``recipes/`` as a clone does; what it reads of the user's own (``runs/fmnist-lls``,
``birds.pth``, ``imagefolder:~/data/tiny-imagenet``) is a stand-in made once a session (tests/stand_ins.py)
and put at the path the example names; training runs at tiny sizes (the example's own values replaced). An
example that needs data this machine has not (CIFAR in ``~/data``, downloaded) is listed in NOT_RUN with the
reason, and checked as far as it goes here: refused, without ``--download``, with the line that says how to
get the data; a training one is also planned with it.

A docs block marked runnable runs the same way, its commands in order in one folder (a command reads what
an earlier one wrote). Every shell block of the README and docs/ is marked runnable or listed in
NOT_RUNNABLE with the reason.

The marker: an HTML comment line ``<!-- runnable -->`` right above a fenced code block (invisible in the built
site). Its commands start with ``kdtool`` or ``.venv/bin/kdtool``, after ``NAME=VALUE`` settings of the
environment if any; a ``# comment`` ends a line. A runnable ``python`` block runs as a script.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import textwrap
from pathlib import Path

import pytest
import typer.main

from kdtool.cli import app
from tests.conftest import TINY
from tests.stand_ins import StandIns

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = "<!-- runnable -->"
# options whose value is written, not read: an example may name a file there that does not exist yet
WRITES = {"--out", "--heatmap", "--plot", "--plot-dynamics", "--confusion"}
PLANNED = ("train-teacher", "distill")  # training commands
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def pasted_lines(block: str) -> list[tuple[dict[str, str], list[str]]]:
    """The command lines of a shell block as (environment settings, words): continuations joined, comments,
    pipes, redirections and what follows ``&&`` cut."""
    lines = []
    for line in re.sub(r"\\\n\s*", " ", block).splitlines():
        words = shlex.split(line, comments=True)
        for cut in ("|", ">", "&&"):
            words = words[: words.index(cut)] if cut in words else words
        env = dict(w.split("=", 1) for w in words if ENV.match(w))
        if words:
            lines.append((env, words[len(env) :]))
    return lines


def kdtool_args(words: list[str]) -> list[str] | None:
    """The arguments of a kdtool command line (``kdtool ...``, ``.venv/bin/kdtool ...``, ``torchrun ... -m
    kdtool ...``), or None for another program."""
    if Path(words[0]).name == "kdtool":
        return words[1:]
    at = next((i for i in range(len(words) - 1) if words[i : i + 2] == ["-m", "kdtool"]), None)
    return words[at + 2 :] if at is not None and Path(words[0]).name == "torchrun" else None


def help_examples() -> list[tuple[str, list[str]]]:
    """(command, example arguments) of every example of every command's help, nested groups included."""
    found = []

    def visit(command, path: str) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            visit(sub, f"{path} {name}".strip())
        text = getattr(command, "help", None) or ""
        if "**Examples**" in text:
            for block in re.findall(r"```\n(.*?)```", text.split("**Examples**", 1)[1], flags=re.DOTALL):
                for _, words in pasted_lines(block):
                    args = kdtool_args(words)
                    assert args is not None, f"kdtool {path} --help: {shlex.join(words)} is not a kdtool command"
                    found.append((path, args))

    visit(typer.main.get_command(app), "")
    return found


EXAMPLES = help_examples()


def shell_blocks() -> list[tuple[str, str, str, bool]]:
    """(where, language, block, marked runnable) of every fenced block of the README and docs/ but the
    generated CLI reference, fences paired line by line."""
    blocks = []
    for page in PAGES:
        if page.name == "cli.md":
            continue
        lines, start = page.read_text(encoding="utf-8").splitlines(), None
        for number, line in enumerate(lines):
            fence = line.strip()
            if start is None and fence.startswith("```"):
                start, language = number, fence.removeprefix("```")
            elif start is not None and fence == "```":
                block = textwrap.dedent("\n".join(lines[start + 1 : number])) + "\n"
                blocks.append((f"{page.name}:{start + 1}", language, block, lines[start - 1].strip() == MARKER))
                start = None
    return blocks


# What an example reads of the user's own, as written in it: the stand-in (tests/stand_ins.py) put at that path
# in the example's folder, or {path: stand-in} where it names several runs, a file in a run, or data behind a
# prefix. An earlier command's output that a help example reads (a cache, a prior) is a stand-in too.
INPUTS: dict[str, str | dict[str, str]] = {
    "runs/fmnist-lls": "lls run",
    "runs/fmnist-lls/seed0": "lls run",
    "runs/fmnist-lls/q.safetensors": {"runs/fmnist-lls": "lls run"},
    "runs/quickstart-lls": "lls run",
    "runs/quickstart-lls/q.safetensors": {"runs/quickstart-lls": "lls run"},
    "runs/lls": "lls run",
    "runs/c100-lls": "lls run",
    "runs/fmnist-onehot": "onehot run",
    "runs/fmnist-ls": "onehot run",
    "runs/fmnist-resnet": "onehot run",
    "runs/c100-resnet": "onehot run",
    "runs/c100-ls": "onehot run",
    "runs/lt-teacher": "onehot run",
    "runs/lt-onehot": "onehot run",
    "runs/in-resnet": "image folder run",
    "runs/in-resnet50": {"runs/in-resnet50": "imagenet run", "data/imagenet": "image folder"},
    "imagefolder:data/imagenet": {"data/imagenet": "image folder"},
    "resnet18.safetensors": "timm-resnet18.safetensors",
    "my-birds.pth": "timm-resnet18-birds.pth",
    "runs/st-kd": "kd run",
    "runs/st-tops": "tops run",
    "runs/imported": "imported run",
    "runs/alpha": "seed runs",
    "runs/ablation": "seed runs",
    "runs/pls-dynamics": "seed runs",
    "runs/fmnist-*": {"runs/fmnist-onehot": "onehot run", "runs/fmnist-lls": "lls run"},
    "runs/fmnist-lls-vs-ls/*/seed*": {
        "runs/fmnist-lls-vs-ls/lls": "seed runs",
        "runs/fmnist-lls-vs-ls/ls": "seed runs",
    },
    "caches/fmnist-resnet.cache.safetensors": "teacher.cache.safetensors",
    "onehot,ls,prior:priors/fmnist-semantic.q.safetensors": {
        "priors/fmnist-semantic.q.safetensors": "fmnist-semantic.q.safetensors"
    },
    "qs/c100.q.safetensors": "q64.q.safetensors",
    "qs/in21k.q.safetensors": "q64.q.safetensors",
    "artifacts/in21k.q.safetensors": "q64.q.safetensors",
    "qs/in21k-top32.q.safetensors": "q64-top32.q.safetensors",
    "my-fmnist-resnet10t.safetensors": "resnet10t.safetensors",
    "birds.pth": "resnet18.pth",
    "imagefolder:./birds": {"birds": "image folder"},
    "imagefolder:./data": {"data": "image folder"},
    "imagefolder:~/data/tiny-imagenet": {"data/tiny-imagenet": "image folder"},
    "wds:$HOME/shards/tin/train-{000000..000019}.tar": {"shards/tin": "shards"},
    "my-groups.json": "groups.json",
    "text:./my_data": {"my_data": "text folder"},
    "glove.6B.100d.txt": "glove.100d.txt",
    "glove.6B.300d.txt": "glove.300d.txt",
    "runs.txt": "runs.txt",
}
# the flags that make a stand-in (a Fashion-MNIST run) stand for a run of another dataset: CIFAR-100's default
# augmentation (Fashion-MNIST's is none, and cache-teacher refuses views of unaugmented data)
AS_ITS_DATASET = {"runs/c100-resnet": ("--augment", "standard")}
# the tiny sizes an example of these commands runs at: each option's value replaced, or the option added
TINY_FLAGS = {
    "train-teacher": TINY,
    "distill": TINY,
    "sweep": TINY,
    "cache-teacher": ("--limit-train", "256"),
    "import": ("--limit-test", "128"),
    "rerun": ("--set", "epochs=1"),
}
# options replaced where an example gives them: one seed (a distill of a teacher cache made with --limit-train,
# as the tiny cache is, must have the cache's seed)
ONE_SEED = ("--seeds", "0")
# --imbalance-ratio 100 needs 100 samples in the largest class to leave one in the smallest
IMBALANCED = ("--limit-train", "1000")
# help examples that need data this machine has not, by the start of their command line
NOT_RUN = {
    "train-teacher --dataset cifar100": "trains on CIFAR-100 in ~/data (--download: network)",
    "shard cifar10": "shards CIFAR-10 in ~/data (--download: network)",
    "evaluate runs/c100-lls --dataset cifar100": "evaluates on CIFAR-100 in ~/data (not on this machine)",
}
# help examples that run for seconds each: deselected by default with the other slow tests
SLOW = {
    "shard fashion-mnist": "decodes and writes all 70,000 images",
    "train-teacher --smoothing lls --log mlflow": "starts MLflow's SQLite store",
}


def tiny(args: list[str]) -> list[str]:
    """``args`` at tiny sizes: each of the command's TINY_FLAGS options given its tiny value (an option given
    twice is refused by some commands, rerun's ``--set KEY=`` among them)."""
    args = list(args)
    flags = TINY_FLAGS.get(args[0], ())
    if args[0] == "evaluate" and "--dataset" in args:
        flags = ("--limit-test", "128")
    if "--imbalance-ratio" in args:
        flags = (*flags, *IMBALANCED)
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if not replace(args, flag, value):
            args += [flag, value]
    replace(args, *ONE_SEED)
    return args


def replace(args: list[str], flag: str, value: str) -> bool:
    """Give ``flag`` (``--set KEY=``: that key) ``value`` in place in ``args``; whether ``args`` gave it."""
    key = value.split("=", 1)[0] + "=" if flag == "--set" else ""
    at = [i + 1 for i, a in enumerate(args[:-1]) if a == flag and args[i + 1].startswith(key)]
    for i in at:
        args[i] = value
    return bool(at)


def listed(table: dict[str, str], args: list[str]) -> str | None:
    """The reason ``table`` gives for a command line, by its start, or None."""
    line = shlex.join(args)
    return next((why for start, why in table.items() if line.startswith(start)), None)


@pytest.fixture(scope="session")
def stand_ins(request, tmp_path_factory) -> StandIns:
    """The session's stand-ins; its two tiny runs are tests/conftest.py's, shared with other tests."""
    runs = {"onehot": "tiny_onehot_run", "lls": "tiny_lls_run"}
    return StandIns(tmp_path_factory.mktemp("stand-ins"), lambda kind: request.getfixturevalue(runs[kind]))


@pytest.fixture
def user_folder(tmp_path, monkeypatch) -> Path:
    """A fresh current folder and $HOME, holding the shipped files as a clone does (``artifacts/`` a folder of
    links, so an example that writes there writes here)."""
    (tmp_path / "artifacts").mkdir()
    for shipped in (ROOT / "artifacts").iterdir():
        (tmp_path / "artifacts" / shipped.name).symlink_to(shipped)
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def shell_words(args: list[str]) -> list[str]:
    """The words as the shell passes them: $VARIABLES and a leading ~ expanded, a pattern that matches files
    replaced by their sorted names."""
    words = [os.path.expanduser(os.path.expandvars(a)) for a in args]
    return [match for word in words for match in (sorted(glob.glob(word)) if set("*?[") & set(word) else []) or [word]]


def run_pasted(args: list[str], stand_ins: StandIns, run_cli, folder: Path) -> tuple[int, str, str]:
    """Run one command line in ``folder`` as pasted, at tiny sizes, with the stand-ins of what it reads of the
    user's own in place (where an earlier command has not written it)."""
    written = {a for before, a in zip(["", *args[:-1]], args, strict=True) if before in WRITES}
    if "--resume" in args:  # --resume reads the run in --out
        written.discard(args[args.index("--out") + 1])
    for word in [a for a in args if a not in written]:
        wanted = INPUTS.get(word, {})
        for where, name in wanted.items() if isinstance(wanted, dict) else [(word, wanted)]:
            if not (folder / where).exists():
                stand_ins.put(name, folder / where)
    extra = [flag for word in args for flag in AS_ITS_DATASET.get(word, ())]
    return run_cli(*shell_words(tiny(args)), *extra)


def test_every_command_has_examples_and_they_were_found():
    assert len(EXAMPLES) > 50
    assert {"train-teacher", "distill", "compare", "report", "inspect-q"} <= {c for c, _ in EXAMPLES}


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(a, marks=[pytest.mark.slow] if listed(SLOW, a) else [])
        for _, a in EXAMPLES
        if not listed(NOT_RUN, a)
    ],
    ids=lambda a: " ".join(a)[:70],
)
def test_a_help_example_runs_as_pasted(args, stand_ins, run_cli, user_folder):
    code, _, err = run_pasted(args, stand_ins, run_cli, user_folder)
    assert code == 0, f"kdtool {shlex.join(args)}: {err}"


@pytest.mark.parametrize("args", [a for _, a in EXAMPLES if listed(NOT_RUN, a)], ids=lambda a: " ".join(a)[:70])
def test_a_help_example_without_its_data_says_how_to_get_it(args, stand_ins, run_cli, user_folder):
    """Without --download (this machine has no network), the data root the example names is refused with the
    line that says what to do; a training example is also planned with --download, as a run would before any
    work."""
    code, _, err = run_pasted([a for a in args if a != "--download"], stand_ins, run_cli, user_folder)
    assert (code, err) == (
        2,
        f"error: data root {user_folder}/data does not exist: create it and add --download, or fix the path\n",
    )
    if args[0] in PLANNED:
        import kdtool.cli.runner as runner

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(runner, "execute", lambda planned, console, after_each=None: None)
            code, _, err = run_cli(*shell_words(tiny(args)))
        assert code == 0, err


BLOCKS = shell_blocks()
# shell and python blocks of the README and docs/ that cannot run here, by page and the start of the first line
NOT_RUNNABLE = {
    "README.md: bash recipes/quickstart.sh": "creates a virtual environment and installs kdtool (network)",
    "index.md: bash recipes/quickstart.sh": "creates a virtual environment and installs kdtool (network)",
    "getting-started.md: bash recipes/quickstart.sh": "creates a virtual environment and installs kdtool (network)",
    "install.md: python3 -m venv .venv": "creates a virtual environment and installs kdtool (network)",
    "contributing.md: python3 -m venv .venv && .venv/bin/pip install -e \".[test]\"": "installs kdtool (network)",
    "contributing.md: .venv/bin/python -m pytest -m \"not slow\"": "runs the test suite (this test is in it)",
    "contributing.md: .venv/bin/ruff check . && .venv/bin/ruff format --check kdtool tests": "lints, not kdtool",
    "contributing.md: .venv/bin/python bench/function_sizes.py --top 10": "a bench script, not kdtool",
    "contributing.md: .venv/bin/mkdocs build --strict": "builds the site (tests/test_docs.py does)",
    "contributing.md: .venv/bin/typer kdtool.cli utils docs": "writes docs/cli.md (tests/test_docs.py checks it)",
    "api.md: import torch, kdtool": "a sketch: model, loader, teacher_net, logits are the reader's own",
    "architecture.md: class FocalLoss(Target):": "an excerpt of kdtool/losses, not a script",
    "big-data.md: kdtool train-teacher --dataset imagefolder:~/data/imagenet": "trains ResNet-50 at 224 px",
    "multi-gpu.md: kdtool train-teacher ... --out runs/c100-lls --resume": "a pattern: '...' are the run's options",
    "multi-gpu.md: torchrun --nproc-per-node 4 -m kdtool train-teacher --dataset cifar100 --data-root ~/data \\":
        "four processes on CIFAR-100 in ~/data",
    "training.md: kdtool train-teacher --dataset fashion-mnist --model lenet5 --smoothing lls --alpha 0.1": (
        "its second command downloads CIFAR-100 (network)"
    ),
}  # fmt: skip


RUNNABLE = [(where, language, block) for where, language, block, marked in BLOCKS if marked]


def first_line(where: str, block: str) -> str:
    """``page: first line`` of a block, its comment cut."""
    return f"{where.split(':')[0]}: {block.strip().splitlines()[0].split('  #')[0].strip()}"


def test_every_shell_block_of_the_docs_runs_or_says_why_not():
    """A block a reader would paste is marked runnable, or listed in NOT_RUNNABLE with the reason; an unlabelled
    block counts when it holds a kdtool command (the others are output, formulas and trees)."""
    commands = [
        (w, b, m)
        for w, language, b, m in BLOCKS
        if language in ("bash", "python") or re.search(r"^\s*kdtool ", b, re.MULTILINE)
    ]
    listed = {
        w: next((k for k in NOT_RUNNABLE if first_line(w, b).startswith(k)), None) for w, b, m in commands if not m
    }
    unmarked = [w for w, key in listed.items() if key is None]
    stale = set(NOT_RUNNABLE) - set(listed.values())
    assert not unmarked, f"blocks neither marked {MARKER} nor listed in NOT_RUNNABLE: {unmarked}"
    assert not stale, f"NOT_RUNNABLE lists blocks that are gone or marked runnable: {stale}"


@pytest.mark.slow  # real (tiny) training runs
@pytest.mark.parametrize("where, language, block", RUNNABLE, ids=[where for where, _, _ in RUNNABLE])
def test_a_runnable_docs_block_runs_as_pasted(where, language, block, stand_ins, run_cli, user_folder):
    if language == "python":
        exec(compile(block, where, "exec"), {"__name__": "__main__"})
        return
    for env, words in pasted_lines(block):
        args = kdtool_args(words)
        assert args is not None, f"{where}: {shlex.join(words)}: a runnable block holds kdtool commands alone"
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            code, _, err = run_pasted(args, stand_ins, run_cli, user_folder)
        assert code == 0, f"{where}: kdtool {shlex.join(args)}: {err}"
