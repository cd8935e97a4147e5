"""Every shipped Q artifact loads, validates, and is described correctly in artifacts/README.md."""

import re
from pathlib import Path

import pytest

from kdtool.fileio import sha256_file
from kdtool.q.matrix import QMatrix

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
# | `file` | Q | teacher (test accuracy) | α | `sha256` |
ROW = re.compile(r"^\| `(?P<file>[^`]+\.safetensors)` \|[^|]+\| (?P<teacher>[^|]+) \| (?P<alpha>[0-9.]+) \| "
                 r"`(?P<sha>[0-9a-f]{64})` \|$")  # fmt: skip


def documented() -> dict[str, dict[str, str]]:
    rows = (ROW.match(line) for line in (ARTIFACTS / "README.md").read_text(encoding="utf-8").splitlines())
    return {m["file"]: m.groupdict() for m in rows if m}


DATASET_OF_PREFIX = {"fmnist": "fashion-mnist", "goemotions": "goemotions", "goemotions-ekman": "goemotions-ekman"}
SHIPPED = sorted(p.name for p in ARTIFACTS.glob("*.safetensors"))


def test_every_documented_artifact_is_shipped():
    assert SHIPPED, "no artifacts found"
    assert sorted(documented()) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_artifact_loads_and_matches_its_readme_row(name):
    path = ARTIFACTS / name
    q = QMatrix.load(path)  # validates format, shape, finite values, class names, α
    row = documented()[name]
    assert sha256_file(path) == row["sha"]
    assert q.alpha == pytest.approx(float(row["alpha"]))
    # the file name says the dataset: fmnist-…, goemotions-ekman-…, goemotions-… (longest prefix wins)
    prefix = max((p for p in DATASET_OF_PREFIX if name.startswith(p + "-")), key=len)
    assert q.dataset == DATASET_OF_PREFIX[prefix] and len(q.class_names) == q.num_classes
    if "run_test_acc" in q.extra:  # the teacher's accuracy as recorded in the artifact's provenance
        assert f"({float(q.extra['run_test_acc']):.2%})" in row["teacher"]
    else:
        assert row["teacher"] == "none"
