"""Bring your own model: timm and torchvision zoos, pretrained weights, inputs of another size, imported
teachers and kdtool.fit on any nn.Module."""

import json
import sys
from pathlib import Path

import pytest
import torch

from kdtool.data.inputs import ModelInput, convert_batch
from kdtool.models.zoo import load_pretrained, read_state_dict, zoo_names
from kdtool.runs.folder import RunDir
from kdtool.training.runmodel import load_run_model
from tests.conftest import TINY

timm = pytest.importorskip("timm")

TIMM = "timm:resnet10t"
TORCHVISION = "torchvision:mobilenet_v3_small"
Q_ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "fmnist-lenet5-lls.q.safetensors"


def one_line_error(run_cli, *args) -> str:
    code, _, stderr = run_cli(*args)
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    return stderr


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """State dicts of freshly created 1000-class zoo models, as a user would download them."""
    import torchvision
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    timm_state = timm.create_model("resnet10t").state_dict()
    torch.save(timm_state, folder / "resnet10t.pth")
    save_file({k: v.contiguous() for k, v in timm_state.items()}, str(folder / "resnet10t.safetensors"))
    torch.save(torchvision.models.get_model("mobilenet_v3_small").state_dict(), folder / "mobilenet_v3_small.pth")
    return folder


@pytest.mark.parametrize("model", [TIMM, TORCHVISION])
def test_zoo_models_train_a_tiny_epoch_into_a_complete_run_folder(run_cli, tmp_path, model):
    code, stdout, stderr = run_cli("train-teacher", "--model", model, *TINY, "--out", tmp_path / "run")
    assert code == 0, stderr
    assert "test accuracy" in stdout
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "metrics.csv", "model.safetensors", "q.safetensors"} <= files
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    # trained from scratch: the data's own size and statistics, one channel
    assert config["model"] == model and config["input_size"] == 28 and config["input_norm"] == "dataset"
    assert config["model_input"] == {"channels": 1, "size": 28, "mean": [0.286], "std": [0.353]}
    code, stdout, _ = run_cli("evaluate", tmp_path / "run")
    assert code == 0 and "accuracy" in stdout


def test_pretrained_timm_weights_load_every_tensor_but_the_head(run_cli, tmp_path, weights):
    file = weights / "resnet10t.pth"
    model, report = load_pretrained(TIMM, 10, 1, 32, str(file))
    assert report.loaded == 84 and report.skipped == ("fc.weight", "fc.bias")
    state, own = read_state_dict(file), model.state_dict()
    assert torch.equal(own["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    # timm's rule for a grey model: the RGB first convolution summed over its input channels
    assert torch.allclose(own["conv1.0.weight"], state["conv1.0.weight"].sum(1, keepdim=True))
    assert own["fc.weight"].shape == (10, 512)

    out = tmp_path / "run"
    code, stdout, stderr = run_cli("train-teacher", "--model", TIMM, "--pretrained", weights / "resnet10t.safetensors",
                                   "--input-size", "32", *TINY, "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert "84 tensors loaded, 2 skipped (fc.weight, fc.bias)" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["input_norm"] == "model" and config["input_size"] == 32  # the weights' statistics by default
    assert config["model_input"]["mean"] == [pytest.approx(sum((0.485, 0.456, 0.406)) / 3)]
    assert config["pretrained_weights"]["sha256"] == RunDir(out).config()["pretrained_weights"]["sha256"]
    assert len(config["pretrained_weights"]["sha256"]) == 64


def test_pretrained_torchvision_weights_skip_the_head_and_a_first_convolution_of_other_channels(weights):
    file = weights / "mobilenet_v3_small.pth"
    model, report = load_pretrained(TORCHVISION, 10, 1, 32, str(file))
    state = read_state_dict(file)
    assert report.skipped == ("features.0.0.weight", "classifier.3.weight", "classifier.3.bias")
    assert report.loaded == len(state) - 3
    assert torch.equal(model.state_dict()["features.1.block.0.0.weight"], state["features.1.block.0.0.weight"])
    _, rgb = load_pretrained(TORCHVISION, 10, 3, 32, str(file))
    assert rgb.skipped == ("classifier.3.weight", "classifier.3.bias")


def test_default_input_of_pretrained_weights_is_their_own(weights):
    from kdtool.config.runconfig import TrainConfig

    cfg = TrainConfig(model=TIMM, pretrained=str(weights / "resnet10t.pth")).resolve()
    assert (cfg.input_size, cfg.input_norm) == (176, "model")  # timm's pretrained config of resnet10t
    cfg = TrainConfig(model=TIMM).resolve()
    assert (cfg.input_size, cfg.input_norm) == (28, "dataset")


def test_a_larger_input_is_resized_on_the_device(run_cli, tmp_path):
    seen = []
    code, _, stderr = run_cli("train-teacher", "--model", TIMM, "--input-size", "40", *TINY, "--out", tmp_path / "r")
    assert code == 0, stderr
    model, _, _ = load_run_model(RunDir(tmp_path / "r"))
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    model(torch.zeros(2, 1, 28, 28))
    assert seen == [(2, 1, 40, 40)]


def test_convert_batch_repeats_grey_to_rgb_resizes_and_renormalises():
    grey = ModelInput(1, 4, (0.5,), (0.25,))
    rgb = ModelInput(3, 8, (0.1, 0.2, 0.3), (1.0, 2.0, 4.0))
    batch = torch.rand(2, 1, 4, 4)
    out = convert_batch(batch, grey, rgb)
    assert out.shape == (2, 3, 8, 8)
    raw = out * torch.tensor(rgb.std).view(1, 3, 1, 1) + torch.tensor(rgb.mean).view(1, 3, 1, 1)
    assert torch.allclose(raw[:, 0], raw[:, 2], atol=1e-6)  # the grey image in every channel
    assert torch.allclose(raw.mean((2, 3))[:, 0], (batch * 0.25 + 0.5).mean((1, 2, 3)), atol=1e-5)
    assert convert_batch(batch, grey, grey) is batch


def test_kdtool_models_lists_its_own_then_the_zoos(run_cli):
    code, stdout, _ = run_cli("models", "resnet")
    lines = stdout.splitlines()
    assert code == 0 and lines[0].startswith("kdtool's own (3 of")
    assert lines[1].split()[0] == "resnet18" and "CIFAR stem" in lines[1]
    assert "  timm:resnet10t" in lines and "  torchvision:resnet18" in lines and "  lenet5" not in stdout
    code, stdout, _ = run_cli("models", "torchvision:mobilenet*")  # one zoo, a glob
    assert stdout.splitlines()[1:] == ["  torchvision:mobilenet_v2", "  torchvision:mobilenet_v3_large",
                                       "  torchvision:mobilenet_v3_small"]  # fmt: skip
    assert stdout.startswith("torchvision ") and "(3 of " in stdout


def test_every_model_of_kdtool_has_a_description():
    from kdtool.models.registry import DESCRIPTIONS, MODELS

    assert list(DESCRIPTIONS) == list(MODELS)


def test_unknown_zoo_names_suggest_close_ones(run_cli, tmp_path):
    stderr = one_line_error(run_cli, "train-teacher", "--model", "timm:resnet10", "--out", tmp_path / "r")
    assert "unknown timm model 'resnet10': did you mean timm:resnet10t" in stderr
    stderr = one_line_error(run_cli, "distill", "--student", "torchvision:resnet19", "--substitute-q", Q_ARTIFACT,
                            "--out", tmp_path / "r")  # fmt: skip
    assert "unknown torchvision model 'resnet19': did you mean torchvision:resnet18" in stderr
    assert not (tmp_path / "r").exists()


def test_timm_names_without_timm_say_how_to_install_it(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    zoo_names.cache_clear()
    try:
        stderr = one_line_error(run_cli, "train-teacher", "--model", TIMM, "--out", tmp_path / "r")
        assert 'pip install "kdtool[timm]"' in stderr
        code, stdout, _ = run_cli("models", "resnet18")
        assert code == 0 and "torchvision:resnet18" in stdout
        assert 'timm: not installed; timm: models need the timm package: pip install "kdtool[timm]"' in stdout
    finally:
        zoo_names.cache_clear()


def test_bad_weights_and_sizes_are_one_line_errors(run_cli, tmp_path, weights):
    out = tmp_path / "r"
    stderr = one_line_error(run_cli, "train-teacher", "--model", TORCHVISION, "--pretrained",
                            weights / "resnet10t.pth", *TINY, "--out", out)  # fmt: skip
    assert f"does not fit {TORCHVISION}" in stderr and "missing" in stderr
    stderr = one_line_error(run_cli, "train-teacher", "--model", "timm:resnet18", "--pretrained",
                            weights / "resnet10t.pth", *TINY, "--out", out)  # fmt: skip
    assert "does not fit timm:resnet18" in stderr
    pickled = tmp_path / "code.pth"
    torch.save({"weights": torch.nn.Linear(2, 2)}, pickled)  # a whole module: never unpickled
    stderr = one_line_error(run_cli, "train-teacher", "--model", TIMM, "--pretrained", pickled, *TINY, "--out", out)
    assert "cannot read weights file" in stderr
    stderr = one_line_error(run_cli, "train-teacher", "--model", "timm:test_vit", *TINY, "--out", out)
    assert "timm:test_vit cannot take 28×28 px inputs" in stderr and "its own is 160" in stderr
    stderr = one_line_error(run_cli, "train-teacher", "--pretrained", weights / "resnet10t.pth", "--out", out)
    assert "--pretrained does not apply to this run (--model lenet5)" in stderr
    stderr = one_line_error(run_cli, "train-teacher", "--model", TIMM, "--pretrained", tmp_path / "none.pth",
                            "--out", out)  # fmt: skip
    assert "no such file" in stderr
    assert not out.exists()


def test_hub_weights_offline_fail_in_one_line_naming_the_source(run_cli, tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    stderr = one_line_error(run_cli, "train-teacher", "--model", "torchvision:resnet18", "--pretrained", "hub",
                            *TINY, "--out", tmp_path / "r")  # fmt: skip
    assert "could not download the pretrained weights of torchvision:resnet18 from https://" in stderr


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """An RGB timm network for Fashion-MNIST's 10 classes, saved as a user's state dict, and its imported run."""
    from kdtool.cli import main

    folder = tmp_path_factory.mktemp("import")
    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), folder / "mine.pth")
    with pytest.raises(SystemExit) as done:
        main(["import", "--model", TIMM, "--weights", str(folder / "mine.pth"), "--input-size", "32",
              "--limit-test", "200", "--out", str(folder / "run")])  # fmt: skip
    assert done.value.code == 0
    return folder


def test_an_imported_network_is_a_run_that_evaluate_and_distill_take(run_cli, imported, tmp_path):
    run = imported / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["kind"] == "import" and config["smoothing"] == "import" and "epochs" not in config
    # RGB weights on grey images: the network reads 3 channels at its input size, the images are repeated
    assert config["model_input"]["channels"] == 3 and config["model_input"]["size"] == 32
    assert config["imported_weights"]["sha256"] and config["input_norm"] == "model"
    rows = RunDir(run).metrics()
    assert len(rows) == 1 and rows[0]["selected"] == "1"
    code, stdout, _ = run_cli("evaluate", run, "--out", tmp_path / "confusion.png")
    assert code == 0 and f"{float(rows[0]['test_acc']):.2%}" in stdout  # the same accuracy from the run folder
    code, stdout, stderr = run_cli("distill", "--teacher", run, "--student", "lenet5", *TINY, "--out", tmp_path / "s")
    assert code == 0, stderr
    assert json.loads((tmp_path / "s" / "config.json").read_text())["teacher_run"]["model"] == TIMM
    assert "imported network" in one_line_error(run_cli, "rerun", run, "--out", tmp_path / "again")


def test_import_refuses_a_head_of_another_size_and_weights_of_another_network(run_cli, tmp_path, weights):
    out = tmp_path / "r"
    stderr = one_line_error(run_cli, "import", "--model", TIMM, "--weights", weights / "resnet10t.pth", "--out", out)
    assert "has 1000 outputs but fashion-mnist has 10 classes" in stderr
    stderr = one_line_error(run_cli, "import", "--model", TORCHVISION, "--weights", weights / "resnet10t.pth",
                            "--out", out)  # fmt: skip
    assert f"does not fit {TORCHVISION}" in stderr
    stderr = one_line_error(run_cli, "import", "--model", TIMM, "--weights", tmp_path / "none.pth", "--out", out)
    assert "no such file" in stderr
    assert not out.exists()


def test_a_64px_teacher_teaches_a_28px_student_on_the_same_batches(run_cli, tmp_path):
    from kdtool.config.runconfig import DistillConfig
    from kdtool.distill.teachers import frozen_teacher

    teacher = tmp_path / "teacher"
    code, _, stderr = run_cli("train-teacher", "--model", TIMM, "--input-size", "64", "--input-norm", "model",
                              *TINY, "--out", teacher)  # fmt: skip
    assert code == 0, stderr
    frozen, _, _, _ = frozen_teacher(str(teacher), DistillConfig(teacher=str(teacher), device="cpu"))
    network, _, _ = load_run_model(RunDir(teacher))
    data = ModelInput(1, 28, (0.286,), (0.353,))
    reads = ModelInput.from_record(RunDir(teacher).config()["model_input"])
    assert reads.size == 64 and reads.mean != data.mean  # resized and normalised for the teacher
    batch = torch.randn(4, 1, 28, 28)
    network._forward_pre_hooks.clear()  # the bare network, fed the converted batch by hand
    with torch.no_grad():
        expected = network(convert_batch(batch, data, reads))
    assert torch.allclose(frozen(batch), expected, atol=1e-4)
    code, stdout, stderr = run_cli("distill", "--teacher", teacher, "--student", "lenet5", *TINY,
                                   "--out", tmp_path / "student")  # fmt: skip
    assert code == 0 and "test accuracy" in stdout, stderr


class TinyNet(torch.nn.Module):
    """A user's own module: kdtool knows nothing of it."""

    def __init__(self, inputs: int = 12, classes: int = 3) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(inputs, 16), torch.nn.ReLU(),
                                          torch.nn.Linear(16, classes))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.float())


def random_points(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    return torch.randn(n, 12, generator=g) + 2 * torch.nn.functional.one_hot(labels, 12), labels


def test_kdtool_fit_trains_any_module_with_lls_kd_and_llsst_into_run_folders(tmp_path):
    import kdtool

    train, test = random_points(300, 0), random_points(100, 1)
    run, rows = kdtool.fit(TinyNet(), train=train, test=test, method="lls", epochs=2, out=tmp_path / "lls",
                           batch_size=32, lr=0.05, alpha=0.2, device="cpu", quiet=True)  # fmt: skip
    assert len(rows) == 2 and {"config.json", "metrics.csv", "model.safetensors", "q.safetensors"} <= {
        p.name for p in run.path.iterdir()
    }
    config = run.config()
    assert config["model"] == "python:TinyNet" and config["alpha"] == 0.2 and config["augment"] == "none"
    assert config["dataset_info"]["class_names"] == ["0", "1", "2"]
    student, _ = kdtool.fit(TinyNet(), train=train, test=test, teacher=TinyNet(), method="dkd", epochs=1,
                            out=tmp_path / "kd", device="cpu", quiet=True)  # fmt: skip
    assert student.config()["kd_loss"] == "dkd" and student.config()["teacher"] == "python:TinyNet"
    st, _ = kdtool.fit(TinyNet(), train=train, test=test, substitute_q=run.path, epochs=1, out=tmp_path / "st",
                       device="cpu", quiet=True)  # fmt: skip
    assert st.config()["smoothing"] == "lls-st" and (st.path / "q.safetensors").is_file()


def test_kdtool_fit_reads_images_from_a_dataloader_and_refuses_what_it_cannot_use(tmp_path):
    import kdtool
    from kdtool.errors import KdtoolError

    g = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8, generator=g), torch.arange(64) % 2
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=16)
    run, _ = kdtool.fit(TinyNet(64, 2), train=loader, test=(images, labels), method="ls", epochs=1,
                        out=tmp_path / "img", device="cpu", quiet=True, class_names=["a", "b"])  # fmt: skip
    info = run.config()["dataset_info"]
    assert info["kind"] == "image" and info["image_size"] == 8 and run.config()["augment"] == "standard"
    with pytest.raises(KdtoolError, match=r"no train-teacher option 'alhpa'; did you mean alpha\?"):
        kdtool.fit(TinyNet(), train=random_points(30, 0), test=random_points(10, 1), out=tmp_path / "x", alhpa=0.1)
    with pytest.raises(KdtoolError, match="that kdtool cannot rebuild"):
        load_run_model(run)
