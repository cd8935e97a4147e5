import json

import pytest

from kdtool.errors import KdtoolError
from kdtool.reporting.compare import dynamics_curves, load_runs


def fake_run(folder, lr, smoothing, seed, grad_norms, gaps, prior=None):
    folder.mkdir(parents=True)
    config = {"lr": lr, "smoothing": smoothing, "seed": seed, "epochs": len(grad_norms), "prior": prior}
    (folder / "config.json").write_text(json.dumps(config))
    lines = ["epoch,lr,test_acc,grad_norm,generalization_error"]  # lr: the scheduled lr of the epoch
    lines += [f"{e + 1},0.001,0.5,{g},{d}" for e, (g, d) in enumerate(zip(grad_norms, gaps, strict=True))]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_dynamics_curves_group_by_lr_and_method(tmp_path):
    fake_run(tmp_path / "a", 0.1, "onehot", 0, [1.0, 2.0], [0.1, 0.2])
    fake_run(tmp_path / "b", 0.1, "onehot", 1, [3.0, 4.0], [0.3, 0.2])
    fake_run(tmp_path / "c", 0.1, "prior", 0, [0.5, 0.5], [0.0, 0.1], prior="artifacts/fm-sem.q.safetensors")
    fake_run(tmp_path / "d", 0.01, "ls", 0, [9.0, 9.0], [0.4, 0.4])
    runs = load_runs(sorted(p for p in tmp_path.iterdir()))
    curves = dynamics_curves(runs)
    assert list(curves) == [0.1, 0.01]
    assert set(curves[0.1]) == {"onehot", "prior:fm-sem"}
    grad = curves[0.1]["onehot"]["grad_norm"]
    assert (
        grad["mean"].tolist() == [2.0, 3.0]
        and grad["min"].tolist() == [1.0, 2.0]
        and grad["max"].tolist() == [3.0, 4.0]
    )
    assert curves[0.01]["ls"]["generalization_error"]["mean"].tolist() == [0.4, 0.4]


def test_plot_dynamics_cli_writes_a_png(run_cli, tmp_path):
    from matplotlib.image import imread

    fake_run(tmp_path / "runs" / "a", 0.1, "onehot", 0, [1.0, 2.0], [0.1, 0.2])
    fake_run(tmp_path / "runs" / "b", 0.01, "ls", 0, [3.0, 4.0], [0.3, 0.2])
    png = tmp_path / "dyn.png"
    code, _, stderr = run_cli("compare", tmp_path / "runs", "--metric", "test_acc", "--plot-dynamics", png)
    assert code == 0, stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and imread(png).shape[0] > 100


def test_runs_without_dynamics_metrics(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text(json.dumps({"lr": 0.1, "smoothing": "ls", "epochs": 1}))
    (tmp_path / "a" / "metrics.csv").write_text("epoch,test_acc\n1,0.5\n")
    with pytest.raises(KdtoolError, match="record no grad_norm"):
        dynamics_curves(load_runs([tmp_path / "a"]))
