import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_recipe_in_tiny_mode(tmp_path):
    env = {
        **os.environ,
        "KDTOOL_SKIP_INSTALL": "1",
        "KDTOOL_BIN": str(Path(sys.executable).parent / "kdtool"),
        "KDTOOL_EPOCHS": "1",
        "KDTOOL_OUT": str(tmp_path / "qs"),
        "KDTOOL_EXTRA": "--limit-train 256 --limit-test 128",
    }
    done = subprocess.run(["bash", str(ROOT / "recipes" / "quickstart.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout and "q.safetensors" in done.stdout
    assert (tmp_path / "qs" / "q.safetensors").is_file()
