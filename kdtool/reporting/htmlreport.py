"""One self-contained HTML page for a run, or for several runs grouped as ``compare`` groups them (``kdtool report``).

The page needs nothing but itself: its figures (drawn by plots.py and qreport.py) are PNG data URIs, its style
is inline, and it has no scripts, fonts or links to fetch, so it opens from a mail attachment. Numbers and
names are in tables and captions; colour only repeats them (figures also tell lines apart by marker and line
style). Figures shrink and wide tables scroll in a narrow window; printed, tables unfold.
"""

from __future__ import annotations

import base64
import datetime
import html
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kdtool import __version__
from kdtool.redact import redact_values
from kdtool.reporting import compare as cmp
from kdtool.reporting.plots import (
    CURVE_PANELS,
    LR_COLUMNS,
    GroupCurve,
    confusion_figure,
    curves_figure,
    figure_bytes,
    is_percent,
    per_class_figure,
    reliability_figure,
)
from kdtool.runs.folder import RECORD_FACTS, Q, RunDir, selected_row

# <meta name="generator"> of every report: how kdtool knows a file it may replace (fileio.written_by_kdtool).
GENERATOR = "kdtool"
TOP_SIMILAR = 3  # similar classes listed per class of a Q
MAX_Q_ROWS = 100  # classes listed in the table of a Q (the heatmap has its own limit)
_RESULT_METRICS = ("test_acc", "test_macro_f1", "test_nll", "test_ece", "val_acc", "val_nll")

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0 auto;
       max-width: 72rem; padding: 0.5rem 1rem 2rem; line-height: 1.45; color: #1a1a1a; background: #fff; }
h1 { font-size: 1.5rem; overflow-wrap: anywhere; }
h2 { font-size: 1.2rem; border-bottom: 1px solid #bbb; padding-bottom: 0.2rem; margin-top: 2rem; }
p, li, dd, td { overflow-wrap: anywhere; }
code, pre { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 0.85rem; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f3f3f3; padding: 0.5rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #bbb; padding: 0.2rem 0.45rem; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num { white-space: nowrap; }
tr.selected td { font-weight: bold; background: #eef5ee; }
caption { caption-side: bottom; text-align: left; font-size: 0.8rem; color: #444; padding-top: 0.3rem; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; display: block; }
figcaption, .note { font-size: 0.85rem; color: #333; }
nav ul { padding-left: 1.2rem; columns: 14rem; }
@media print {
  body { max-width: none; padding: 0; }
  .scroll { overflow: visible; }
  figure { break-inside: avoid; }
  nav { display: none; }
}
"""


def run_page(path: Path, device: str) -> str:
    """The report of one finished run: its command and options, result at the selected and the last epoch,
    its teacher or Q source, curves, the per-epoch table, reliability diagram and confusion matrix on its
    test set (its network run on ``device``; left out with a note where kdtool cannot rebuild it), and for a Q
    run the Q heatmap and each class's similar classes."""
    run = RunDir.open(path)
    record, rows = redact_values(run.config())[0], run.metrics()  # run folders from before kdtool redacted them
    found = cmp.load_runs([path])
    method = str(record.get("smoothing", "run"))
    sections = [
        ("Command and options", _command(record) + _options(record)),
        ("Result", _result(rows)),
        *([("Teacher and sources", _sources(record))] if _has_sources(record) else []),
        ("Curves", _figure(curves_figure(_curves(found, ["smoothing"])), "Learning curves per epoch: accuracy, "
                           "loss and NLL, ECE, macro-F1, learning rate and gradient norm")),
        ("Per-epoch metrics", _epoch_table(rows)),
        *_network_sections(run, cmp.curves(found, ["smoothing"], "test_acc")[method], method, device,
                           record.get("dataset_info", {}).get("train_class_counts")),
    ]  # fmt: skip
    if (path / Q).is_file():
        sections.append(("Q: class similarity", _q_section(path / Q)))
    return _page(f"kdtool report: {path}", f"{record.get('kind', 'run')} run · {method} · {record.get('model')} · "
                 f"{record.get('dataset_info', {}).get('name', record.get('dataset'))}", sections)  # fmt: skip


def _network_sections(
    run: RunDir, curve: Any, method: str, device: str, counts: list[int] | None
) -> list[tuple[str, str]]:
    """The sections that run the network on the test set: reliability diagram, confusion matrix and, on imbalanced
    training data (``counts`` per class), per-class recall and F1 by training count; or, for a network kdtool
    cannot rebuild, one section saying they are left out and why."""
    from kdtool.training.metrics import calibration_bins, confusion_matrix, is_imbalanced
    from kdtool.training.rundata import predict_run
    from kdtool.training.runmodel import NetworkUnavailable

    try:
        logits, labels, names = predict_run(run, "test", device, "the report's reliability diagram")
    except NetworkUnavailable as exc:
        return [("Reliability diagram and confusion matrix", f"<p class='note'>left out: they need the network, "
                 f"and {_e(exc.what)}.</p>")]  # fmt: skip
    calibration = GroupCurve(method, 1, curve, str(run.path), calibration_bins(logits, labels))
    figure = reliability_figure([calibration], title="reliability on the test set (15 bins)")
    sections = [("Reliability diagram", _figure(figure, "Reliability diagram on the test set")),
                ("Confusion matrix", _confusion(confusion_matrix(logits, labels), names, str(run.path)))]  # fmt: skip
    if counts is not None and is_imbalanced(counts):
        sections.append(("Per class, by training count", _per_class(logits, labels, names, counts)))
    return sections


def group_page(
    found: cmp.RunSet, group_by: Sequence[str], metrics: Sequence[str], device: str, note: Callable[[str], None]
) -> str:
    """The report of several runs, grouped by the config keys ``group_by`` as ``compare`` groups them: the
    groups and their runs, mean ± std of ``metrics`` at the selected and the last epoch, the overlaid curves,
    and the reliability diagram of each group's best run (by the first metric; networks run on ``device``)."""
    members = cmp.groups(found, group_by)
    table = cmp.group_summary(found, group_by, metrics)
    headers, rows = cmp.display_table(table, group_by)
    mixed = cmp.mixed_options(found, group_by)
    listing = "".join(f"<li><strong>{_e(name)}</strong> ({len(runs)} run{'s' if len(runs) != 1 else ''}): "
                      f"{', '.join(f'<code>{_e(r)}</code>' for r in runs)}"
                      + (f"<br><span class='note'>note: these runs also differ in {_e(', '.join(mixed[name]))}"
                         "</span>" if name in mixed else "") + "</li>" for name, runs in members.items())  # fmt: skip
    summary = _table(headers, rows, len(group_by), caption=f"mean ± std over each group's runs. {cmp.EPOCH_LEGEND}.")
    reliability = cmp.calibrated_groups(found, group_by, metrics[0], device, note)
    sections = [
        ("Groups", f"<p>{len(found.configs)} runs grouped by {_e(', '.join(group_by))}.</p><ul>{listing}</ul>"),
        ("Mean ± std per group", summary),
        ("Curves", _figure(curves_figure(_curves(found, group_by)), "Learning curves per group: mean over its runs, "
                           "band from the lowest to the highest run")),
        ("Reliability of each group's best run", _figure(reliability_figure(reliability), "Reliability diagram of "
                                                         f"each group's best run by {metrics[0]}, on its test set")),
    ]  # fmt: skip
    groups = ", ".join(members)
    return _page("kdtool report: compared runs", f"{len(members)} groups: {groups}", sections)


def _page(title: str, subtitle: str, sections: list[tuple[str, str]]) -> str:
    anchors = [f"s{index}" for index in range(1, len(sections) + 1)]
    contents = "".join(
        f'<li><a href="#{a}">{_e(name)}</a></li>' for a, (name, _) in zip(anchors, sections, strict=True)
    )
    body = "".join(f'<section id="{a}"><h2>{_e(name)}</h2>{content}</section>'
                   for a, (name, content) in zip(anchors, sections, strict=True))  # fmt: skip
    written = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{GENERATOR} {_e(__version__)}">\n<title>{_e(title)}</title>\n'
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<header><h1>{_e(title)}</h1>\n<p>{_e(subtitle)}</p>\n"
        f'<p class="note">written by kdtool {_e(__version__)} on {_e(written)}</p></header>\n'
        f'<nav aria-label="contents"><ul>{contents}</ul></nav>\n<main>\n{body}\n</main>\n</body>\n</html>\n'
    )


def _e(value: Any) -> str:
    return html.escape(str(value))


def _figure(fig: Any, caption: str) -> str:
    return _image(figure_bytes(fig, "png"), caption)


def _image(png: bytes, caption: str) -> str:
    """A PNG inline (a data URI), its caption also its text alternative."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")  # fmt: skip


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1, caption: str = "",
           selected: Sequence[bool] = (), wrap_headers: bool = False) -> str:  # fmt: skip
    """A table whose first ``text_columns`` columns are text and the rest numbers; rows flagged in
    ``selected`` are bold (their text says so too); ``wrap_headers``: headers may break after a ``_`` (a wide
    table of metrics.csv columns then fits a desktop window)."""

    def cell(tag: str, index: int, value: str) -> str:
        kind = ' class="num"' if index >= text_columns else ""
        shown = _e(value).replace("_", "_<wbr>") if tag == "th" and wrap_headers else _e(value)
        return f"<{tag}{kind}>{shown}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    marks = [' class="selected"' if i < len(selected) and selected[i] else "" for i in range(len(rows))]
    body = "".join(f"<tr{mark}>" + "".join(cell("td", j, v) for j, v in enumerate(row)) + "</tr>"
                   for mark, row in zip(marks, rows, strict=True))  # fmt: skip
    note = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f'<div class="scroll"><table>{note}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _shown(value: Any) -> str:
    """An option or fact value as written on the command line: lists as comma lists, None as ``unset``."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "unset" if value is None else str(value)


def _command(record: Mapping[str, Any]) -> str:
    return f"<p>Command that made the run:</p><pre>{_e(record.get('command', 'not recorded'))}</pre>"


def _options(record: Mapping[str, Any]) -> str:
    options = [(key, _shown(value)) for key, value in record.items() if key not in RECORD_FACTS]
    info = record.get("dataset_info", {})
    facts = [
        ("run kind", record.get("kind", "train-teacher")),
        ("data", f"{info.get('name')}: {len(info.get('class_names', []))} classes, {info.get('num_train')} train / "
                 f"{info.get('num_val', 0)} validation / {info.get('num_test')} test samples"),
        ("epochs trained", record.get("epochs_run")),
        ("selected epoch", record.get("selected_epoch")),
        ("device", f"{record.get('device_used')} × {record.get('world_size', 1)} process(es)"),
        ("versions", ", ".join(f"{k} {v}" for k, v in record.get("versions", {}).items())),
    ]  # fmt: skip
    return ("<p>Resolved options (config.json; <code>kdtool rerun</code> runs them again):</p>"
            + _table(["option", "value"], options, 2) + "<p>About the run:</p>"
            + _table(["fact", "value"], [(k, _shown(v)) for k, v in facts], 2))  # fmt: skip


def _result(rows: list[dict[str, str]]) -> str:
    """Test (and validation) metrics at the selected epoch and at the last one."""
    kept, last = selected_row(rows), rows[-1]
    metrics = [m for m in _RESULT_METRICS if m in last]
    headers = ["epoch", *(_header(m) for m in metrics)]
    if kept is last:
        which = [(f"selected = last: {last['epoch']} of {len(rows)}", last)]
    else:
        which = [(f"selected: {kept['epoch']}", kept), (f"last: {last['epoch']}", last)]
    table = [[label, *(_number(m, row[m]) for m in metrics)] for label, row in which]
    return _table(headers, table, caption="selected: the epoch whose weights the run kept (model.safetensors); "
                  "last: the last epoch it trained")  # fmt: skip


def _header(column: str) -> str:
    return f"{column} %" if is_percent(column) else column


def _number(column: str, text: str) -> str:
    """A metrics.csv value as the tables show it: accuracies in %, the learning rate in 3 digits; blank stays blank
    (a column that a resumed run's earlier epochs, written by an older kdtool, do not have)."""
    if column == "epoch" or not text:
        return text
    if column == "selected":
        return "selected" if float(text) else ""
    value = float(text)
    if is_percent(column):
        return f"{100 * value:.2f}"
    if column in LR_COLUMNS:
        return f"{value:.3g}"
    return f"{value:.1f}" if column.endswith("seconds") else f"{value:.4f}"


def _epoch_table(rows: list[dict[str, str]]) -> str:
    columns = list(rows[0])
    body = [[_number(c, row[c]) for c in columns] for row in rows]
    selected = [bool(float(row.get("selected", 0) or 0)) for row in rows]
    return _table([_header(c) for c in columns], body, text_columns=0, selected=selected, wrap_headers=True,
                  caption="metrics.csv, one row per epoch; the row in bold (selected) is the epoch whose "
                          "weights the run kept")  # fmt: skip


def _has_sources(record: Mapping[str, Any]) -> bool:
    return any(key in record for key in ("teacher_run", "q_artifact", "prior_artifact", "kept_classes"))


def _sources(record: Mapping[str, Any]) -> str:
    """Where a distilled run's knowledge came from (teacher run or Q artifact), with the hashes rerun checks."""
    rows = []
    for fact, what in (("teacher_run", "teacher run"), ("q_artifact", "Q artifact (LLS-ST)"),
                       ("prior_artifact", "prior artifact")):  # fmt: skip
        source = record.get(fact)
        if isinstance(source, dict):
            rows += [(what if key == "path" else f"{what}: {key}", _shown(value)) for key, value in source.items()]
    if "kept_classes" in record:
        names = record.get("dataset_info", {}).get("class_names", [])
        rows.append(("kept classes", ", ".join(names) or _shown(record["kept_classes"])))
    return _table(["source", "value"], rows, 2)


def _curves(found: cmp.RunSet, group_by: Sequence[str]) -> dict[str, dict[str, Any]]:
    metrics = [m for _, panel in CURVE_PANELS for m in panel if m in found.epochs.columns]
    return {metric: cmp.curves(found, group_by, metric) for metric in metrics}


def _confusion(confusion: Any, names: list[str], title: str) -> str:
    from kdtool.reporting.qreport import HEATMAP_MAX_CLASSES

    if len(names) > HEATMAP_MAX_CLASSES:
        return f"<p class='note'>{len(names)} classes: unreadable in one picture (limit {HEATMAP_MAX_CLASSES}).</p>"
    caption = "Confusion matrix on the test set: rows are the true classes, columns the predicted ones"
    return _figure(confusion_figure(confusion, names, f"{title} · test split"), caption)


def _per_class(logits: Any, labels: Any, names: list[str], counts: list[int]) -> str:
    from kdtool.training.metrics import per_class_accuracy, per_class_f1

    caption = ("Test recall and F1 of each class, ordered by its training samples (most frequent left): an "
               "imbalanced training split")  # fmt: skip
    recall, f1 = per_class_accuracy(logits, labels).nan_to_num(0.0), per_class_f1(logits, labels).nan_to_num(0.0)
    return _figure(per_class_figure(names, counts, recall, f1), caption)


def _q_section(path: Path) -> str:
    """The Q heatmap (within its class limit) and each class's most similar classes with their probabilities."""
    from kdtool.q.matrix import QMatrix
    from kdtool.reporting.qreport import HEATMAP_MAX_CLASSES, q_heatmap_png

    q = QMatrix.load(path)
    parts = []
    if q.num_classes <= HEATMAP_MAX_CLASSES:
        caption = f"softmax(Q) of {path.name}: row y is the smoothing distribution of class y (diagonal masked)"
        parts.append(_image(q_heatmap_png(q), caption))
    stats = q.row_stats(TOP_SIMILAR)
    shown = min(q.num_classes, MAX_Q_ROWS)
    headers = ["class", *(f"similar #{r + 1}" for r in range(stats.similar.shape[1])), "p(self)", "entropy (nats)"]
    rows = []
    for y in range(shown):
        pairs = zip(stats.similar[y].tolist(), stats.similar_probs[y].tolist(), strict=True)
        rows.append([q.class_names[y], *(f"{q.class_names[j]} {100 * p:.2f}%" for j, p in pairs),
                     f"{stats.diagonal[y]:.3f}", f"{stats.entropy[y]:.3f}"])  # fmt: skip
    more = f"; {q.num_classes - shown} more classes not listed" if shown < q.num_classes else ""
    caption = (f"the {TOP_SIMILAR} most similar other classes of each class by softmax(Q[y]), α = {q.alpha:g}, "
               f"source {q.source}{more}")  # fmt: skip
    parts.append(_table(headers, rows, 1 + stats.similar.shape[1], caption=caption))
    return "".join(parts)
