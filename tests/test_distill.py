import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from safetensors.torch import load_file
from torch import nn

import kdtool
from kdtool import QMatrix, kd_loss
from kdtool.config.runconfig import TrainConfig
from kdtool.data import Dataset, DatasetInfo, Split, load_dataset
from kdtool.errors import KdtoolError
from kdtool.fileio import sha256_file
from kdtool.losses.kd import KnowledgeDistillation, SubstituteTeacher
from kdtool.models.registry import LeNet5
from kdtool.workflows.pipeline import train_teacher
from tests.conftest import TINY

FMNIST = load_dataset("fashion-mnist")
TOPS = ["Shirt", "T-shirt/top", "Coat"]  # a deliberately reordered subset: indices 6, 0, 4
TOPS_INDEX = [6, 0, 4]


# -- the loss -------------------------------------------------------------------------------------


def test_kd_loss_matches_a_hand_computation():
    # One sample, two classes: z_s = (1, 0), z_t = (0, 2), y = 0, β = 0.25, T = 2.
    ps = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]  # softmax(z_s / 2)
    pt = [1 / (1 + math.e), math.e / (1 + math.e)]  # softmax(z_t / 2)
    kl = sum(t * math.log(t / s) for t, s in zip(pt, ps, strict=True))
    ce = -math.log(math.e / (math.e + 1))  # -log softmax(z_s)[0] at T = 1
    expected = 0.25 * ce + 0.75 * 4 * kl
    loss = kd_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([0]), beta=0.25, temperature=2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_is_per_sample_kl_times_t_squared_averaged_over_the_batch():
    torch.manual_seed(0)
    zs, zt, y = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    for temperature in (1.0, 4.0):
        batchmean = F.kl_div(F.log_softmax(zs / temperature, 1), F.softmax(zt / temperature, 1), reduction="batchmean")
        assert kd_loss(zs, zt, y, temperature=temperature).item() == pytest.approx(
            temperature**2 * batchmean.item(), rel=1e-5
        )
    assert kd_loss(zt, zt, y).item() == pytest.approx(0.0, abs=1e-6)  # KL, not CE: 0 when the student matches


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_beta_one_is_plain_cross_entropy(temperature):
    torch.manual_seed(1)
    zs, zt, y = torch.randn(8, 10), torch.randn(8, 10), torch.randint(0, 10, (8,))
    torch.testing.assert_close(kd_loss(zs, zt, y, beta=1.0, temperature=temperature), F.cross_entropy(zs, y))


def test_kd_loss_does_not_train_the_teacher():
    zs, zt = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    kd_loss(zs, zt, torch.zeros(4, dtype=torch.long)).backward()
    assert zs.grad is not None and zt.grad is None


@pytest.mark.parametrize(("kwargs", "message"), [({"beta": -0.1}, "--beta"), ({"temperature": 0.0}, "--temperature")])
def test_kd_loss_rejects_bad_options(kwargs, message):
    with pytest.raises(KdtoolError, match=message):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), **kwargs)


def test_lls_st_with_a_sharp_q_is_one_hot_cross_entropy():
    k = 5
    q = QMatrix(torch.full((k, k), -1e4).fill_diagonal_(0.0), [f"c{i}" for i in range(k)], 0.3, "toy", "lls")
    torch.manual_seed(2)
    logits, labels = torch.randn(7, k), torch.randint(0, k, (7,))
    torch.testing.assert_close(SubstituteTeacher(q)(logits, labels), F.cross_entropy(logits, labels))


def test_lls_st_gradient_pulls_the_student_towards_the_class_wise_target():
    torch.manual_seed(3)
    q = QMatrix(torch.randn(4, 4), list("abcd"), 0.2, "toy", "lls")
    logits, labels = torch.randn(6, 4, requires_grad=True), torch.tensor([0, 1, 2, 3, 3, 1])
    SubstituteTeacher(q, alpha=0.4)(logits, labels).backward()
    t = 0.6 * F.one_hot(labels, 4) + 0.4 * F.softmax(q.logits[labels], 1)
    torch.testing.assert_close(logits.grad, (F.softmax(logits.detach(), 1) - t) / 6)  # d KL(t‖p) / dz = p - t


def test_teacher_is_frozen_kept_in_eval_and_its_logits_sliced_before_the_softmax():
    torch.manual_seed(4)
    teacher = nn.Sequential(nn.Linear(3, 6), nn.Dropout(0.5))
    target = KnowledgeDistillation(teacher, beta=0.0, temperature=2.0, class_index=[4, 1, 2])
    target.train()
    assert not teacher.training
    assert list(target.parameters()) == [] and list(target.state_dict()) == []  # not trained, not checkpointed
    x, zs, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    expected = kd_loss(zs, teacher(x)[:, [4, 1, 2]], y, temperature=2.0)
    torch.testing.assert_close(target(zs, y, x), expected)


# -- data -----------------------------------------------------------------------------------------


def toy_dataset(counts):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    split = Split(torch.arange(len(labels)).view(-1, 1, 1, 1).to(torch.uint8), labels)
    info = DatasetInfo("toy", tuple(f"c{i}" for i in range(len(counts))), 1, 1, (0.0,), (1.0,))
    return Dataset(info, split, split)


def test_sample_fraction_is_stratified_seeded_and_keeps_every_class():
    ds = toy_dataset([10, 5, 1, 0])
    half = ds.sample_fraction(0.5, seed=0)
    assert torch.bincount(half.train.labels, minlength=4).tolist() == [5, 3, 1, 0]  # round(2.5) up; ≥ 1 per class
    assert half.test is ds.test
    assert torch.equal(half.train.inputs, ds.sample_fraction(0.5, seed=0).train.inputs)
    assert not torch.equal(half.train.inputs, ds.sample_fraction(0.5, seed=1).train.inputs)
    assert ds.sample_fraction(1.0, seed=0) is ds
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(KdtoolError, match="--sample-fraction must be in"):
            ds.sample_fraction(bad, seed=0)


def test_sample_fraction_of_fashion_mnist_per_class():
    half = FMNIST.sample_fraction(0.5, seed=1)
    assert torch.bincount(half.train.labels).tolist() == [3000] * 10
    assert len(half.test) == 10000


# -- end to end -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny LLS teacher run (1 epoch on 256 images)."""
    out = tmp_path_factory.mktemp("teacher") / "lls"
    cfg = TrainConfig(
        smoothing="lls", alpha=0.2, limit_train=256, limit_test=128, epochs=1, batch_size=64, out=str(out)
    )
    train_teacher(cfg, False, Console(quiet=True))
    return out


@pytest.fixture
def lenet_calls():
    """Every forward call of a LeNet5 during the test: (module, was it training, its input batch)."""
    calls = []

    def hook(module, args, output):
        if isinstance(module, LeNet5):
            calls.append((module, module.training, args[0]))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield calls
    handle.remove()


def test_kd_teacher_sees_exactly_the_students_augmented_batch(run_cli, teacher, tmp_path, lenet_calls):
    out = tmp_path / "kd"
    code, stdout, stderr = run_cli("distill", "--teacher", teacher, "--student", "lenet5", *TINY, "--out", out)
    assert code == 0, stderr
    assert "test accuracy" in stdout
    models = {id(module): module for module, _, _ in lenet_calls}.values()
    frozen = [m for m in models if not any(p.requires_grad for p in m.parameters())]
    assert len(frozen) == 1
    steps = 256 // 64
    pairs = [(lenet_calls[i - 1], call) for i, call in enumerate(lenet_calls) if call[0] is frozen[0]]
    assert len(pairs) == steps
    for (student, student_training, x_student), (_, teacher_training, x_teacher) in pairs:
        assert student is not frozen[0] and student_training and not teacher_training
        assert torch.equal(x_student, x_teacher)
    config = json.loads((out / "config.json").read_text())
    assert config["smoothing"] == "kd" and config["teacher"] == str(teacher) and "alpha" not in config
    assert config["teacher_run"]["model_sha256"] == sha256_file(teacher / "model.safetensors")
    assert not (out / "q.safetensors").exists()


def test_lls_st_runs_no_teacher_network(run_cli, teacher, tmp_path, lenet_calls, monkeypatch):
    def no_teacher(*args, **kwargs):
        raise AssertionError("LLS-ST must not rebuild a teacher")

    monkeypatch.setattr("kdtool.distill.teachers.load_run_model", no_teacher)
    q_file = teacher / "q.safetensors"
    out = tmp_path / "st"
    code, _, stderr = run_cli("distill", "--substitute-q", q_file, *TINY, "--out", out)
    assert code == 0, stderr
    assert len({id(module) for module, _, _ in lenet_calls}) == 1  # the student, and nothing else
    assert sum(training for _, training, _ in lenet_calls) == 256 // 64
    config = json.loads((out / "config.json").read_text())
    assert config["smoothing"] == "lls-st" and config["alpha"] == 0.2  # the artifact's α
    assert config["q_artifact"] == {"path": str(q_file), "sha256": sha256_file(q_file)}
    used = QMatrix.load(out / "q.safetensors")
    assert torch.equal(used.logits, QMatrix.load(q_file).logits)


def capture_fit(monkeypatch):
    """Patch the pipeline's ``fit`` to record the dataset and target it trains with."""
    import kdtool.workflows.pipeline

    seen = {}
    real_fit = kdtool.workflows.pipeline.fit

    def fit(cfg, dataset, model, target, *args, **kwargs):
        seen.update(dataset=dataset, target=target, model=model)
        return real_fit(cfg, dataset, model, target, *args, **kwargs)

    monkeypatch.setattr(kdtool.workflows.pipeline, "fit", fit)
    return seen


def test_lls_st_on_a_class_subset_relabels_and_slices_q(run_cli, teacher, tmp_path, monkeypatch):
    seen = capture_fit(monkeypatch)
    out = tmp_path / "tops"
    args = ("--limit-train", "256", "--epochs", "1", "--batch-size", "64", "--alpha", "0.3")
    code, _, stderr = run_cli("distill", "--substitute-q", teacher / "q.safetensors", "--classes", ",".join(TOPS),
                              *args, "--out", out)  # fmt: skip
    assert code == 0, stderr
    data = seen["dataset"]
    assert list(data.info.class_names) == TOPS
    for new, old in enumerate(TOPS_INDEX):  # every test image of class `old`, in order, now labelled `new`
        assert torch.equal(data.test.inputs[data.test.labels == new], FMNIST.test.inputs[FMNIST.test.labels == old])
    assert set(data.train.labels.tolist()) <= {0, 1, 2}
    full_q = QMatrix.load(teacher / "q.safetensors")
    used = QMatrix.load(out / "q.safetensors")
    assert used.class_names == TOPS and seen["target"].alpha == 0.3
    torch.testing.assert_close(used.logits, full_q.logits[TOPS_INDEX][:, TOPS_INDEX])
    assert load_file(str(out / "model.safetensors"))["classifier.4.weight"].shape[0] == 3
    config = json.loads((out / "config.json").read_text())
    assert config["kept_classes"] == TOPS_INDEX and config["dataset_info"]["num_test"] == 3000


def test_kd_on_a_class_subset_by_index_slices_the_teacher(run_cli, teacher, tmp_path, monkeypatch):
    seen = capture_fit(monkeypatch)
    out = tmp_path / "tops-kd"
    code, _, stderr = run_cli("distill", "--teacher", teacher, "--class-indices", "6,0,4", *TINY, "--out", out)
    assert code == 0, stderr
    assert seen["target"].class_index.tolist() == TOPS_INDEX
    assert list(seen["dataset"].info.class_names) == TOPS
    assert json.loads((out / "config.json").read_text())["dataset_info"]["class_names"] == TOPS


def test_kd_on_a_sample_fraction(run_cli, teacher, tmp_path, monkeypatch):
    seen = capture_fit(monkeypatch)
    out = tmp_path / "few"
    args = ("--limit-test", "128", "--epochs", "1", "--batch-size", "256")
    code, _, stderr = run_cli("distill", "--teacher", teacher, "--sample-fraction", "0.01", "--seed", "1", *args,
                              "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert torch.bincount(seen["dataset"].train.labels).tolist() == [60] * 10
    assert json.loads((out / "config.json").read_text())["sample_fraction"] == 0.01


def edited_teacher(teacher, tmp_path, edit):
    """A copy of the teacher run whose config.json ``dataset_info`` was changed by ``edit``."""
    copy = tmp_path / edit.__name__
    shutil.copytree(teacher, copy)
    config = json.loads((copy / "config.json").read_text())
    edit(config["dataset_info"])
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def rename_class(info):
    info["class_names"][3] = "Frock"


def other_dataset(info):
    info["name"] = "mnist"


@pytest.mark.parametrize(
    ("source", "extra", "message"),
    [
        ("none", [], "exactly one of --teacher"),
        ("both", [], "exactly one of --teacher"),
        ("teacher", ["--alpha", "0.2"], "applies to --substitute-q only"),
        ("foreign-q", [], "its class 0 is 'c0', expected 'T-shirt/top'"),
        ("foreign-q", ["--classes", "Coat,Shirt"], "its class 0 is 'c0', expected 'T-shirt/top'"),
        ("renamed-teacher", [], "its class 3 is 'Frock', expected 'Dress'"),
        ("mnist-teacher", [], "must agree"),
        ("q", ["--classes", "Coat,Frock"], "unknown class 'Frock'"),
        ("q", ["--classes", "Coat,Shirt", "--class-indices", "1,2"], "not both"),
        ("q", ["--sample-fraction", "1.5"], "--sample-fraction must be in (0, 1]"),
        ("q", ["--alpha", "1"], "alpha must be in (0, 1)"),
        ("q", ["--temperature", "-1"], "--temperature must be positive"),
        ("q", ["--student", "vgg99"], "unknown model"),
        ("missing-q", [], "does not exist"),
    ],
)
def test_bad_distill_inputs_exit_2_with_one_line_and_write_nothing(run_cli, teacher, tmp_path, source, extra, message):
    foreign = tmp_path / "foreign.q.safetensors"
    QMatrix(torch.zeros(10, 10), [f"c{i}" for i in range(10)], 0.1, "other", "lls").save(foreign)
    sources = {
        "none": [],
        "both": ["--teacher", teacher, "--substitute-q", teacher / "q.safetensors"],
        "teacher": ["--teacher", teacher],
        "q": ["--substitute-q", teacher / "q.safetensors"],
        "foreign-q": ["--substitute-q", foreign],
        "missing-q": ["--substitute-q", tmp_path / "missing.safetensors"],
        "renamed-teacher": ["--teacher", edited_teacher(teacher, tmp_path, rename_class)],
        "mnist-teacher": ["--teacher", edited_teacher(teacher, tmp_path, other_dataset)],
    }
    out = tmp_path / "never"
    code, _, stderr = run_cli("distill", *sources[source], *extra, *TINY, "--out", out)
    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not out.exists()


def test_kd_loss_is_exported_and_help_has_examples(run_cli):
    # (the hand computations above call kd_loss through its public name, ``from kdtool import kd_loss``)
    assert "kd_loss" in kdtool.__all__ and all(hasattr(kdtool, name) for name in kdtool.__all__)
    code, stdout, _ = run_cli("distill", "--help")
    assert code == 0 and "Examples" in stdout and "--substitute-q" in stdout


def test_substitute_teacher_dense_table_equals_per_step_targets():
    from kdtool import QMatrix
    from kdtool.losses.kd import SubstituteTeacher

    torch.manual_seed(0)
    dense = QMatrix(torch.randn(6, 6), [f"c{i}" for i in range(6)], 0.2, "toy", "lls")
    labels = torch.tensor([5, 0, 3, 3])
    logits = torch.randn(4, 6)
    fast = SubstituteTeacher(dense)
    assert fast.log_target_table is not None and "log_target_table" not in fast.state_dict()
    torch.testing.assert_close(fast.log_target_table[labels], dense.log_targets(labels))
    sparse = SubstituteTeacher(dense.to_sparse(5))  # N = K-1: the same targets, built per step
    assert sparse.log_target_table is None
    torch.testing.assert_close(fast(logits, labels), sparse(logits, labels), rtol=1e-5, atol=1e-6)
