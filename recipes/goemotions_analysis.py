"""Why LLS loses macro-F1 on imbalanced data (GoEmotions-Ekman, recipes/longtail.sh): per-class F1 and the
learned Q against class frequency.

    python recipes/goemotions_analysis.py OUT GROUP...      # GROUP: a folder of seed<N> runs; markdown on stdout

For every group (1-hot, LLS at some α or Q weight decay, ...): validation macro-F1 at the selected
epoch (mean over seeds, read from metrics.csv: what an option would be chosen on), then test accuracy,
macro-F1 and per-class F1 (mean over seeds); for LLS groups also, per class c, the share of all
off-diagonal target mass that softmax(Q) gives to c (its column sum off the diagonal, / K) and the
class's share of the training set, with their Spearman correlation.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

from kdtool.q.matrix import QMatrix
from kdtool.runs.folder import RunDir, run_folders, selected_row
from kdtool.stats import spearman
from kdtool.training.metrics import per_class_f1
from kdtool.training.rundata import predict_run


def selected_val_f1(run: Path) -> float:
    with (run / "metrics.csv").open(newline="") as f:
        return float(selected_row(list(csv.DictReader(f)))["val_macro_f1"])


def off_diagonal_share(q: QMatrix) -> torch.Tensor:
    p = q.probabilities().double()
    p.fill_diagonal_(0.0)
    return p.sum(0) / p.sum()


def main(out: Path, groups: list[Path]) -> None:
    rows, names, frequency = [], None, None
    groups = [group for group in groups if group.is_dir() and run_folders(group)]
    if not groups:
        print(f"no finished runs to analyse under {out}")
        return
    for group in groups:
        runs = run_folders(group)
        f1s, accs, shares = [], [], []
        for run in runs:
            logits, labels, names = predict_run(RunDir.open(run), "test")
            f1s.append(per_class_f1(logits, labels))
            accs.append((logits.argmax(1) == labels).double().mean().item())
            if frequency is None:
                _, train_labels, _ = predict_run(RunDir.open(run), "train")
                frequency = torch.bincount(train_labels, minlength=len(names)).double()
                frequency /= frequency.sum()
            if (run / "q.safetensors").is_file():
                shares.append(off_diagonal_share(QMatrix.load(run)))
        f1 = torch.stack(f1s).double().mean(0)
        val_f1 = sum(selected_val_f1(run) for run in runs) / len(runs)
        rows.append((group.name, len(runs), val_f1, 100 * sum(accs) / len(accs), f1.nanmean().item(), f1,
                     torch.stack(shares).mean(0) if shares else None))  # fmt: skip
    assert names is not None and frequency is not None
    dataset = RunDir.open(run_folders(groups[0])[0]).config()["dataset_info"]["name"]
    print(f"# {dataset}: 1-hot vs LLS variants ({out})\n")
    print("| group | seeds | val macro-F1 (selected) | test acc (%) | test macro-F1 | " + " | ".join(names) + " |")
    print("|" + " --- |" * (5 + len(names)))
    print("| training share (%) | | | | | " + " | ".join(f"{100 * v:.1f}" for v in frequency) + " |")
    for name, seeds, val_f1, acc, macro, f1, _ in rows:
        cells = " | ".join(f"{v:.3f}" for v in f1)
        print(f"| {name} | {seeds} | {val_f1:.4f} | {acc:.2f} | {macro:.4f} | {cells} |")
    print("\nOff-diagonal target mass softmax(Q) gives each class (% of all off-diagonal mass), LLS groups:\n")
    print("| group | " + " | ".join(names) + " | Spearman vs training share |")
    print("|" + " --- |" * (len(names) + 2))
    for name, *_, share in rows:
        if share is not None:
            cells = " | ".join(f"{100 * v:.1f}" for v in share)
            print(f"| {name} | {cells} | {spearman(share, frequency)[0]:+.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
