"""Where a Q comes from: the one an LLS run learned, or one estimated from any run's trained network."""

from __future__ import annotations

from kdtool.errors import KdtoolError
from kdtool.fileio import sha256_file
from kdtool.losses.simple import check_unit_interval
from kdtool.q.matrix import QMatrix
from kdtool.runs.folder import CONFIG, METRICS, MODEL, Q, RunDir, selected_row
from kdtool.training.rundata import predict_run

# Temperature of a Q estimated from a network (export-q --from-teacher): a trained network's predictions on its
# own training samples are nearly 1-hot, so at T = 1 softmax(Q[y]) keeps ~all its mass on y and LLS-ST from it
# is nearly 1-hot training; T spreads that mass over the classes the network finds similar (docs/q-artifacts.md).
TEACHER_Q_TEMPERATURE = 4.0


def run_provenance(run: RunDir) -> dict[str, str]:
    """What a Q artifact records about the run it came from: path, method, model, data, hashes, accuracy."""
    config = run.config()
    facts = {
        "run": str(run.path),
        "run_smoothing": config.get("smoothing"),
        "run_model": config.get("model"),
        "run_dataset": config.get("dataset"),
        "run_epochs": config.get("epochs"),
        "run_seed": config.get("seed"),
        "run_config_sha256": sha256_file(run.path / CONFIG),
        "run_model_sha256": sha256_file(run.path / MODEL),
    }
    if (run.path / METRICS).is_file():
        rows = run.metrics()
        if rows and "test_acc" in rows[-1]:
            facts["run_test_acc"] = selected_row(rows)["test_acc"]
    return {key: str(value) for key, value in facts.items() if value is not None}


def learned_q(run: RunDir) -> QMatrix:
    """The Q an LLS run learned (its ``q.safetensors``, validated), with the run's provenance added."""
    path = run.path / Q
    if not path.is_file():
        method = run.training_config()["smoothing"]
        raise KdtoolError(f"{run.path} learned no Q (smoothing={method}): use --from-teacher to estimate one")
    return QMatrix.load(path).with_extra(run_provenance(run))


def teacher_q(
    run: RunDir, alpha: float | None = None, device: str = "auto", temperature: float = TEACHER_Q_TEMPERATURE
) -> QMatrix:
    """Q estimated from any run's network: row y is the mean of ``log_softmax(z/T)`` over the run's
    training samples of class y, without augmentation (see docs/q-artifacts.md).

    ``alpha`` (default: the run's ``alpha`` option) is stored as the Q's mixing weight for LLS-ST.
    """
    config = run.config()
    alpha = check_unit_interval("--alpha", config.get("alpha", 0.1) if alpha is None else alpha)
    logits, labels, names = predict_run(run, "train", device, "--from-teacher")
    dataset = config.get("dataset_info", {}).get("name", config.get("dataset", "unknown"))
    extra = {**run_provenance(run), "split": "train", "augment": "false"}
    return QMatrix.from_class_means(logits, labels, names, alpha, dataset, extra, temperature)
