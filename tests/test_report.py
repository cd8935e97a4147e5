"""kdtool report: one self-contained HTML page for a run or a group of runs (no network references, every
image decodes), and the same page opened in a real browser (skipped where no Chromium is installed)."""

import base64
import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parent.parent
Q_ARTIFACT = ROOT / "artifacts" / "fmnist-lenet5-lls.q.safetensors"
TWO_EPOCHS = (*TINY, "--epochs", "2", "--device", "cpu")


class Page(HTMLParser):
    """What a report page holds: headings, images, every attribute that could reference a resource, the text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[str] = []
        self.references: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self._heading = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        self.references += [v for k, v in attrs.items() if k in ("src", "href", "srcset", "action", "data") and v]
        if tag in ("h1", "h2"):
            self._heading = []

    def handle_endtag(self, tag):
        if tag in ("h1", "h2") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        self.text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def check_self_contained(path: Path) -> Page:
    from PIL import Image

    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text.replace("data:image/png;base64,", ""))
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert all(ref.startswith(("data:image/png;base64,", "#")) for ref in page.references), page.references
    for src in page.images:
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
            image.load()
            assert image.width > 100 and image.height > 100
    return page


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny LLS teacher (two epochs), an LLS-ST student, and two seeds each of LS and LLS, trained once."""
    from kdtool.cli import main

    root = tmp_path_factory.mktemp("report")
    commands = [
        ["train-teacher", *TWO_EPOCHS, "--smoothing", "lls", "--out", root / "lls"],
        ["distill", *TWO_EPOCHS, "--substitute-q", Q_ARTIFACT, "--out", root / "st"],
        ["train-teacher", *TINY, "--smoothing", "ls", "--seeds", "0,1", "--out", root / "group" / "ls"],
        ["train-teacher", *TINY, "--smoothing", "lls", "--seeds", "0,1", "--out", root / "group" / "lls"],
    ]
    for command in commands:
        with pytest.raises(SystemExit) as done:
            main([str(a) for a in command])
        assert done.value.code == 0
    return root


def test_a_run_report_is_one_self_contained_page(run_cli, runs):
    out = runs / "lls" / "report.html"
    code, stdout, stderr = run_cli("report", runs / "lls", "--out", out, "--device", "cpu")
    assert code == 0, stderr
    assert f"report written to {out}" in stdout
    page = check_self_contained(out)
    assert page.headings == [
        f"kdtool report: {runs / 'lls'}",
        "Command and options",
        "Result",
        "Curves",
        "Per-epoch metrics",
        "Reliability diagram",
        "Confusion matrix",
        "Q: class similarity",
    ]
    assert len(page.images) == 4  # curves, reliability, confusion, Q heatmap
    text = " ".join(page.text)
    assert "selected = last: 2 of 2" in text and "Pullover" in text and "similar #3" in text
    # --force replaces the page it wrote; the page inside the run folder does not stop --force of the run
    assert run_cli("report", runs / "lls", "--out", out, "--device", "cpu")[0] == 2
    assert run_cli("report", runs / "lls", "--out", out, "--device", "cpu", "--force")[0] == 0
    from kdtool.runs.folder import check_replaceable

    check_replaceable(runs / "lls")


def test_a_distilled_run_report_names_its_q_source(run_cli, runs, tmp_path):
    out = tmp_path / "st.html"
    code, _, stderr = run_cli("report", runs / "st", "--out", out, "--device", "cpu")
    assert code == 0, stderr
    page = check_self_contained(out)
    assert "Teacher and sources" in page.headings
    assert str(Q_ARTIFACT) in " ".join(page.text)


def test_a_group_report_shows_mean_and_std_at_the_selected_and_last_epoch(run_cli, runs, tmp_path):
    out = tmp_path / "group.html"
    code, _, stderr = run_cli("report", *sorted((runs / "group").glob("*/seed*")), "--out", out, "--device", "cpu")
    assert code == 0, stderr
    page = check_self_contained(out)
    assert page.headings == ["kdtool report: compared runs", "Groups", "Mean ± std per group", "Curves",
                             "Reliability of each group's best run"]  # fmt: skip
    text = " ".join(page.text)
    assert "test_acc % selected = last" in text and " ± " in text and "4 runs grouped by smoothing" in text
    assert len(page.images) == 2


def test_report_refuses_bad_outputs_before_any_work(run_cli, runs, tmp_path):
    code, _, stderr = run_cli("report", runs / "lls", "--out", tmp_path / "r.pdf")
    assert code == 2 and "--out must end in .html" in stderr
    mine = tmp_path / "mine.html"
    mine.write_text("<html>my notes</html>")
    code, _, stderr = run_cli("report", runs / "lls", "--out", mine, "--force")
    assert code == 2 and "is not a file kdtool wrote" in stderr and mine.read_text() == "<html>my notes</html>"
    code, _, stderr = run_cli("report", runs / "lls", "--group-by", "alpha", "--out", tmp_path / "x.html")
    assert code == 2 and "--group-by does not apply here: it is used with several runs only" in stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (CI installs Debian's chromium)")
def test_the_report_opens_in_a_real_browser_without_errors(run_cli, runs, tmp_path):
    from PIL import Image, ImageStat

    from tests.browser import open_page

    out = tmp_path / "report.html"
    assert run_cli("report", runs / "lls", "--out", out, "--device", "cpu")[0] == 0
    for width in (1200, 420):  # a desktop window and a phone-sized one
        seen = open_page(CHROMIUM, out, tmp_path / f"profile-{width}", width)
        assert seen.errors == [], seen.errors  # console errors, exceptions, failed requests
        assert seen.headings[:3] == [f"kdtool report: {runs / 'lls'}", "Command and options", "Result"]
        assert "Q: class similarity" in seen.headings
        assert seen.images and all(image["decoded"] and image["width"] > 0 for image in seen.images), seen.images
        assert seen.overflowing == [], seen.overflowing  # nothing wider than the window but the scrolled tables
        if width == 1200:  # on a desktop window no table needs scrolling, the per-epoch one included
            assert seen.scrolled == [], seen.scrolled
        shot = tmp_path / f"report-{width}.png"
        shot.write_bytes(seen.screenshot)
        with Image.open(shot) as image:
            assert image.width == width
            extrema = ImageStat.Stat(image.convert("L")).extrema[0]
            assert extrema[1] - extrema[0] > 100  # not blank: dark text on a light page
