"""The documentation site: it builds with `mkdocs build --strict`, its CLI reference is the Typer app's own
help, and its API page documents every public name of `kdtool`."""

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import kdtool

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_REFERENCE = ROOT / "docs" / "cli.md"
API_PAGE = ROOT / "docs" / "api.md"
# the command that writes docs/cli.md (docs/contributing.md); run from the repository root
REGENERATE = ["typer", "kdtool.cli", "utils", "docs", "--name", "kdtool", "--title", "CLI reference", "--output"]


def run(args: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_reference_is_generated_from_the_app(tmp_path):
    fresh = tmp_path / "cli.md"
    done = run([*REGENERATE, str(fresh)])
    assert done.returncode == 0, done.stderr
    command = shlex.join([*REGENERATE, "docs/cli.md"])
    assert fresh.read_text(encoding="utf-8") == CLI_REFERENCE.read_text(encoding="utf-8"), (
        f"docs/cli.md is not what the CLI's help says now; regenerate it from the repository root with:\n    {command}"
    )


def test_cli_reference_covers_every_command():
    import typer.main

    from kdtool.cli import app

    commands = typer.main.get_command(app).commands
    text = CLI_REFERENCE.read_text(encoding="utf-8")
    assert len(commands) >= 15
    for name in commands:
        assert f"## `kdtool {name}`" in text, name


def test_api_page_documents_every_public_name_where_it_is_defined():
    documented = re.findall(r"^::: ([\w.]+)$", API_PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    names = {path.rsplit(".", 1)[1]: path for path in documented}
    assert len(names) == len(documented), "a name is documented twice"
    assert sorted(names) == sorted(kdtool._LAZY)
    for name, path in names.items():
        module, _ = path.rsplit(".", 1)
        public = getattr(kdtool, name)
        assert getattr(importlib.import_module(module), name) is public, path
        assert public.__module__ == module, f"{name} is defined in {public.__module__}, not {module}"


def test_docs_build_strict(tmp_path):
    # --strict: a broken link, anchor, nav entry or API reference is an error (mkdocs.yml's validation)
    done = run(["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")])
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ("index.html", "getting-started/index.html", "cli/index.html", "api/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert "LearnableLabelSmoothing" in api and "Mean loss over the batch" in api  # docstrings were rendered
    assert ":class:" not in api and ":meth:" not in api  # Sphinx roles shown as plain names (docs/hooks.py)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_reach_files_and_headings():
    # the README is not part of the site (mkdocs does not check it): its relative links must work on GitHub
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", README.read_text(encoding="utf-8"))
    assert any(path.startswith("docs/") for path, _ in links)
    for path, anchor in links:
        assert not path.startswith(("http:", "https:", "/")), path
        target = ROOT / path
        assert target.is_file(), path
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), flags=re.MULTILINE)
            assert anchor in {github_anchor(h) for h in headings}, f"{path}#{anchor}"
