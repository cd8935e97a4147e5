"""``kdtool --help`` / ``python -c "import torch"``: how long a user waits before kdtool prints anything.

Both are fresh processes of this virtualenv's Python, run alternately (A, B, A, B, ...) after one
warm-up run of each (so both read from a warm file cache); wall time, median of ``--repeats``.

    .venv/bin/python bench/startup.py [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import parse, print_ratio

TARGET = 0.3
HELP = [sys.executable, "-m", "kdtool", "--help"]
TORCH = [sys.executable, "-c", "import torch"]


def wall_seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each side (median reported)")
    args = parse(parser, {"repeats": 1})
    wall_seconds(HELP), wall_seconds(TORCH)  # warm-up
    times: dict[str, list[float]] = {"help": [], "torch": []}
    for _ in range(args.repeats):
        times["help"].append(wall_seconds(HELP))
        times["torch"].append(wall_seconds(TORCH))
    print("bench: startup")
    print(f"python: {sys.version.split()[0]}, repeats: {args.repeats}")
    for name, command in (("help", HELP), ("torch", TORCH)):
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"{' '.join(command[1:])}: median {statistics.median(times[name]):.3f} s wall (runs {runs})")
    ratio = statistics.median(times["help"]) / statistics.median(times["torch"])
    print_ratio("wall time kdtool --help / import torch", ratio, TARGET)


if __name__ == "__main__":
    main()
