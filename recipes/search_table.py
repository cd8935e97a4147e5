"""The tables of recipes/fmnist_defaults_search.sh and fmnist_lls_alpha.sh, from their run folders.

python3 recipes/search_table.py OUT [--test-of-choice]     # markdown on stdout (standard library only)

Grid points are ranked on the validation split alone. ``--test-of-choice`` adds the test accuracy of
the one point the validation split chose (at each seed's selected epoch), and of no other. A non-finite
value never wins: rows holding one are skipped, and seeds that diverged (kdtool stopped them) are left out
and named.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path


def read_rows(path: Path) -> list[dict[str, float]]:
    """The rows of a metrics.csv, as numbers."""
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def finite(row: dict[str, float]) -> bool:
    return all(math.isfinite(value) for value in row.values())


def diverged(seed: Path) -> bool:
    """Whether the run folder ``seed`` stopped because its training loss became non-finite (its config.json)."""
    try:
        return json.loads((seed / "config.json").read_text()).get("status") == "diverged"
    except (OSError, ValueError):
        return False


def seeds_of(point: Path) -> list[list[dict[str, float]]]:
    """Each seed's finite metrics.csv rows under a grid point (``seed<N>/metrics.csv``); a seed that diverged
    has no result and is left out."""
    paths = [path for path in sorted(point.glob("seed*/metrics.csv")) if not diverged(path.parent)]
    runs = [[row for row in read_rows(path) if finite(row)] for path in paths]
    return [run for run in runs if run]


def unsound_seeds(point: Path) -> list[str]:
    """The seeds under ``point`` that diverged or wrote a non-finite value (``seed1 diverged``, ``seed2``)."""
    names = []
    for seed in sorted(p for p in point.glob("seed*") if p.is_dir()):
        if diverged(seed):
            names.append(f"{seed.name} diverged")
        elif (seed / "metrics.csv").is_file() and not all(map(finite, read_rows(seed / "metrics.csv"))):
            names.append(seed.name)
    return names


def finished_points(folder: Path) -> list[tuple[str, list[list[dict[str, float]]]]]:
    """(name, seeds' rows) of every point under ``folder`` with at least one finished seed, by name."""
    points = [(p.name, seeds_of(p)) for p in sorted(folder.iterdir()) if p.is_dir()]
    return [(name, runs) for name, runs in points if runs]


def selected_rows(runs: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Each seed's row at the epoch --select best-val-loss keeps: the lowest finite validation NLL, the earliest on
    ties (a non-finite one is never chosen; with none finite, the last epoch, as kdtool keeps)."""
    return [min((row for row in run if math.isfinite(row["val_nll"])), key=lambda row: row["val_nll"], default=run[-1])
            for run in runs]  # fmt: skip


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [header, ["---"] * len(header), *rows]
    return ["| " + " | ".join(cells) + " |" for cells in lines]


def grid_table(folder: Path) -> list[str]:
    rows = []
    for name, runs in finished_points(folder):
        last, best = [run[-1] for run in runs], selected_rows(runs)
        acc_last, nll_last = 100 * mean([r["val_acc"] for r in last]), mean([r["val_nll"] for r in last])
        acc_best, nll_best = 100 * mean([r["val_acc"] for r in best]), mean([r["val_nll"] for r in best])
        rows.append([name, len(runs), acc_last, nll_last, acc_best, nll_best])
    rows.sort(key=lambda r: -r[4])
    header = ["run", "seeds", "val acc last (%)", "val NLL last", "val acc selected (%)", "val NLL selected"]
    cells = [[r[0], str(r[1]), f"{r[2]:.2f}", f"{r[3]:.4f}", f"{r[4]:.2f}", f"{r[5]:.4f}"] for r in rows]
    title = "## Grid (validation split, mean over seeds; best first by accuracy at the selected epoch)"
    left_out = [f"{p.name}/{seed.name}" for p in sorted(folder.iterdir()) if p.is_dir()
                for seed in sorted(p.glob("seed*")) if diverged(seed)]  # fmt: skip
    note = [f"Left out, diverged: {', '.join(left_out)}", ""] if left_out else []
    return [title, "", *markdown(header, cells), "", *note] if rows else note


def test_of_choice(folder: Path) -> list[str]:
    """The test accuracy of the grid point with the best validation accuracy at the selected epoch."""
    scored = []
    for name, runs in finished_points(folder):
        best = selected_rows(runs)
        scored.append((mean([r["val_acc"] for r in best]), name, best))
    if not scored:
        return []
    _, name, best = max(scored)
    accs = [100 * r["test_acc"] for r in best]
    spread = (sum((a - mean(accs)) ** 2 for a in accs) / max(1, len(accs) - 1)) ** 0.5
    return [f"Chosen on the validation split: **{name}**; its test accuracy at the selected epoch: "
            f"{mean(accs):.2f} ± {spread:.2f}% ({len(accs)} seeds)", ""]  # fmt: skip


def probe_table(folder: Path) -> list[str]:
    """Per point the final training accuracy of each seed with a result, and the seeds that diverged or wrote
    a non-finite value."""
    cells = []
    for point in sorted(p for p in folder.iterdir() if p.is_dir()):
        runs, unsound = seeds_of(point), unsound_seeds(point)
        if not runs and not unsound:
            continue
        accs = [100 * run[-1]["train_acc"] for run in runs]
        shown, lowest = (" ".join(f"{a:.1f}" for a in accs), f"{min(accs):.1f}") if accs else ("-", "-")
        cells.append([point.name, shown, lowest, f"NO: {', '.join(unsound)}" if unsound else "yes"])
    header = ["run", "final train acc per seed (%)", "lowest (%)", "losses finite"]
    title = "## Short runs (final training accuracy of each seed)"
    return [title, "", *markdown(header, cells), ""] if cells else []


def main(out: Path, with_test: bool) -> None:
    lines = []
    for name, table in (("grid", grid_table), ("probe", probe_table)):
        if (out / name).is_dir():
            lines += table(out / name)
    if with_test and (out / "grid").is_dir():
        lines += test_of_choice(out / "grid")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--test-of-choice" in sys.argv[2:])
