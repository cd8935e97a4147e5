"""Long-tailed and imbalanced data (issue 30): the long-tailed split, the metrics that show the rare classes, the
long-tail baselines, LLS's corrections and a balanced teacher."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdtool.config.runconfig import DistillConfig, TrainConfig
from kdtool.data import Dataset, DatasetInfo, Split
from kdtool.data.dataset import class_counts, long_tail_counts
from kdtool.errors import KdtoolError
from kdtool.losses import (
    DISTKD,
    ClassWeighted,
    DecoupledKD,
    KnowledgeDistillation,
    LabelAwareSmoothing,
    LearnableLabelSmoothing,
    LogitAdjusted,
    OneHot,
    effective_number_weights,
    label_aware_epsilons,
)
from kdtool.q.matrix import QMatrix
from kdtool.runs.folder import RunDir
from kdtool.training.metrics import (
    BANDS_RULE,
    THIRDS_RULE,
    balanced_accuracy,
    is_imbalanced,
    long_tail_metrics,
    shot_groups,
)
from kdtool.training.rundata import training_split
from kdtool.workflows.methods import METHODS, build_method
from tests.conftest import TINY


def _dataset(per_class: list[int], test_per_class: int = 3) -> Dataset:
    k = len(per_class)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    test = torch.arange(k).repeat(test_per_class)
    info = DatasetInfo("toy", tuple(f"c{i}" for i in range(k)), 1, 2, (0.5,), (0.25,))
    return Dataset(info, Split(torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8), labels),
                   Split(torch.zeros(len(test), 1, 2, 2, dtype=torch.uint8), test))  # fmt: skip


@pytest.mark.parametrize(("k", "ratio", "seed"), [(10, 100.0, 0), (10, 10.0, 3), (4, 50.0, 1), (7, 2.5, 2)])
def test_imbalance_ratio_keeps_the_exponential_profile(k, ratio, seed):
    dataset = _dataset([500] * k).long_tailed(ratio, seed)
    expected = [math.floor(500 * ratio ** (-i / (k - 1))) for i in range(k)]
    assert class_counts(dataset.train.labels, k) == expected == long_tail_counts(500, k, ratio)
    assert len(dataset.test) == 3 * k  # the test split is unchanged
    again = _dataset([500] * k).long_tailed(ratio, seed)
    assert torch.equal(again.train.sample_ids(), dataset.train.sample_ids())  # a seeded choice
    other = _dataset([500] * k).long_tailed(ratio, seed + 1)
    assert not torch.equal(other.train.sample_ids(), dataset.train.sample_ids())


def test_the_validation_hold_out_is_drawn_before_the_subsampling_and_stays_balanced():
    cfg = TrainConfig(val_fraction=0.2, imbalance_ratio=10.0, seed=5)
    dataset = training_split(_dataset([100] * 5), cfg)
    assert class_counts(dataset.validation.labels, 5) == [20] * 5
    assert class_counts(dataset.train.labels, 5) == [80, 44, 25, 14, 8]  # ⌊80·10^(−i/4)⌋: 44.98 -> 44
    assert not set(dataset.train.sample_ids().tolist()) & set(dataset.validation.sample_ids().tolist())


def test_a_ratio_that_empties_a_class_is_refused():
    with pytest.raises(KdtoolError, match=r"leaves class 'c2' without training samples \(50 in the largest class\)"):
        _dataset([50, 50, 50]).long_tailed(100.0, 0)


def _hand_logits(predicted: list[int], k: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(predicted), k).float() * 5


def test_balanced_and_shot_accuracy_against_a_hand_computed_confusion_matrix():
    # classes 0..3; class 3 is never predicted. Recall: 0 -> 2/3, 1 -> 1/2, 2 -> 1/1, 3 -> 0/2
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3])
    logits = _hand_logits([0, 0, 1, 1, 0, 2, 0, 2], 4)
    assert balanced_accuracy(logits, labels) == pytest.approx((2 / 3 + 1 / 2 + 1 + 0) / 4)
    groups = torch.tensor([0, 0, 1, 2])  # many: 0, 1; medium: 2; few: 3
    metrics = long_tail_metrics(logits, labels, groups, prefix="val_")
    assert metrics == pytest.approx({"val_balanced_acc": (2 / 3 + 1 / 2 + 1) / 4, "val_many_acc": (2 / 3 + 1 / 2) / 2,
                                     "val_medium_acc": 1.0, "val_few_acc": 0.0})  # fmt: skip


def test_a_class_without_test_samples_is_left_out_of_the_means():
    labels = torch.tensor([0, 0, 1])
    logits = _hand_logits([0, 1, 1], 3)  # class 2 has no sample: its recall is undefined
    metrics = long_tail_metrics(logits, labels, torch.tensor([0, 1, 2]), prefix="")
    assert metrics["balanced_acc"] == pytest.approx(0.75)
    assert math.isnan(metrics["few_acc"])


def test_shot_groups_use_the_bands_where_each_holds_a_class_else_thirds_by_count():
    groups, rule = shot_groups([500, 101, 100, 20, 19, 5])
    assert groups.tolist() == [0, 0, 1, 1, 2, 2] and rule == BANDS_RULE
    groups, rule = shot_groups([6000, 60, 3587, 163, 765, 97, 2143, 273, 1281, 457])  # FMNIST-LT ρ = 100: no few
    assert rule == THIRDS_RULE
    assert groups.tolist() == [0, 2, 0, 2, 1, 2, 0, 1, 0, 1]  # 4 / 3 / 3 classes by count
    assert is_imbalanced([30, 10]) and not is_imbalanced([29, 10])


def test_logit_adjusted_loss_against_its_formula_and_gradient():
    torch.manual_seed(0)
    counts = [60, 30, 10]
    logits = torch.randn(5, 3, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 2, 0])
    loss = LogitAdjusted(counts, tau=1.5)(logits, labels)
    log_pi = torch.log(torch.tensor(counts) / 100.0)
    adjusted = logits.detach() + 1.5 * log_pi
    expected = -(adjusted.log_softmax(1)[torch.arange(5), labels]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    hand_grad = (adjusted.softmax(1) - F.one_hot(labels, 3)) / 5  # ∂/∂z of the mean CE at z + τ·log π
    torch.testing.assert_close(logits.grad, hand_grad)


def test_label_aware_smoothing_uses_mislas_concave_epsilons():
    counts = [100, 55, 10]
    eps = label_aware_epsilons(counts, head=0.3, tail=0.0)
    expected = [0.3 * math.sin((n - 10) * math.pi / (2 * 90)) for n in counts]
    assert eps.tolist() == pytest.approx(expected)
    assert label_aware_epsilons([7, 7], 0.3, 0.0).tolist() == pytest.approx([0.3, 0.3])
    logits = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1])
    loss = LabelAwareSmoothing(counts)(logits, labels)
    log_p = logits.detach().log_softmax(1)
    e = torch.tensor(expected)[labels]
    target = (1 - e)[:, None] * F.one_hot(labels, 3) + e[:, None] / 3
    assert loss.item() == pytest.approx(-(target * log_p).sum(1).mean().item(), rel=1e-6)
    loss.backward()
    torch.testing.assert_close(logits.grad, (log_p.exp() - target) / 4)


def test_effective_number_weights_against_cui_et_al():
    counts = [1000, 100, 10]
    w = effective_number_weights(counts, beta=0.999)
    raw = torch.tensor([(1 - 0.999) / (1 - 0.999**n) for n in counts])
    torch.testing.assert_close(w, raw / raw.sum() * 3)
    assert w.sum().item() == pytest.approx(3.0)


def test_class_weighted_is_the_weighted_mean_of_the_per_sample_losses_for_lls_too():
    torch.manual_seed(1)
    weights = torch.tensor([0.5, 1.0, 1.5])
    labels = torch.tensor([0, 2, 1, 2, 0, 2])
    logits = torch.randn(6, 3, requires_grad=True)
    loss = ClassWeighted(OneHot(), weights)(logits, labels)
    per_sample = F.cross_entropy(logits, labels, reduction="none")
    expected = (weights[labels] * per_sample).mean()
    torch.testing.assert_close(loss, expected)
    lls = LearnableLabelSmoothing(3, alpha=0.2)
    with torch.no_grad():
        lls.q.normal_()
    weighted = ClassWeighted(lls, weights)
    loss = weighted(logits, labels)
    values = lls.term_values(logits, labels)  # autograd of the same sum, sample by sample
    expected = (weights[labels] * 0.5 * sum(values.values())).mean()
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(expected, [logits, lls.q])
    torch.testing.assert_close(torch.autograd.grad(loss, [logits, lls.q]), grads)
    assert weighted.learned_q() is not None and weighted.name == "lls"


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("tfkd-self", "prior")])
def test_class_weights_combine_with_each_method(method):
    cfg = TrainConfig(smoothing=method, class_weights="effective", cb_beta=0.99).resolve()
    target = build_method(cfg, 3, [50, 20, 5])
    assert isinstance(target, ClassWeighted)
    logits = torch.randn(8, 3, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    target.on_epoch_start(0)
    loss = target(logits, labels, torch.zeros(8, 1, 2, 2))
    loss.backward()
    assert torch.isfinite(loss) and logits.grad.abs().sum() > 0


def test_the_long_tail_methods_need_the_class_counts():
    cfg = TrainConfig(smoothing="logit-adjust").resolve()
    with pytest.raises(KdtoolError, match="--smoothing logit-adjust needs the training count of each class"):
        build_method(cfg, 3, None)


def _lls_pair(correction: str, counts, q_update: str = "dense"):
    lls = LearnableLabelSmoothing(4, 0.3, "all", q_update, correction, counts, tau=0.7)
    with torch.no_grad():
        lls.q.normal_()
    return lls


@pytest.mark.parametrize("correction", ["prior", "adjusted", "alpha"])
def test_each_lls_correction_keeps_the_closed_form_gradient_exact(correction):
    torch.manual_seed(2)
    counts = [80, 40, 10, 5]
    lls = _lls_pair(correction, counts)
    logits = (torch.randn(7, 4) * 3).requires_grad_()
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 0])
    closed = lls(logits, labels)
    values = lls.term_values(logits, labels)  # autograd through the written-out terms
    expected = 0.5 * sum(values.values()).mean()
    torch.testing.assert_close(closed, expected)
    grads = torch.autograd.grad(expected, [logits, lls.q])
    torch.testing.assert_close(torch.autograd.grad(closed, [logits, lls.q]), grads)
    sparse = _lls_pair(correction, counts, "sparse")
    with torch.no_grad():
        sparse.q.copy_(lls.q)
    z = logits.detach().clone().requires_grad_()
    sparse(z, labels).backward()
    torch.testing.assert_close(sparse.q.grad.to_dense(), grads[1])
    torch.testing.assert_close(z.grad, grads[0])


def test_lls_corrections_against_their_formulas():
    counts = torch.tensor([80.0, 40.0, 10.0, 5.0])
    log_pi = (counts / counts.sum()).log()
    labels = torch.tensor([0, 3])
    prior = _lls_pair("prior", counts)
    smooth = (prior.q.detach()[labels] - 0.7 * log_pi).softmax(1)
    expected = 0.3 * smooth + 0.7 * F.one_hot(labels, 4)
    torch.testing.assert_close(prior.targets(labels), expected)
    torch.testing.assert_close(prior.learned_q(), prior.q.detach() - 0.7 * log_pi)
    alpha = _lls_pair("alpha", counts)
    alphas = 0.3 * counts[labels] / 80
    smooth = alpha.q.detach()[labels].softmax(1)
    expected = alphas[:, None] * smooth + (1 - alphas)[:, None] * F.one_hot(labels, 4)
    torch.testing.assert_close(alpha.targets(labels), expected)
    adjusted = _lls_pair("adjusted", counts)
    logits = torch.randn(2, 4)
    plain = LearnableLabelSmoothing(4, 0.3)
    with torch.no_grad():
        plain.q.copy_(adjusted.q)
    torch.testing.assert_close(adjusted(logits, labels), plain(logits + 0.7 * log_pi, labels))


@pytest.mark.parametrize(
    "make",
    [lambda: KnowledgeDistillation(None, beta=0.0, temperature=2.0),
     lambda: DecoupledKD(None, 1.0, 1.0, 8.0, 4.0, 0),
     lambda: DISTKD(None, 1.0, 2.0, 2.0, 4.0)],
    ids=["kd", "dkd", "dist"],
)  # fmt: skip
def test_a_balanced_teacher_subtracts_tau_log_prior_before_softening_for_every_kd_loss(make):
    torch.manual_seed(3)
    teacher_logits = torch.randn(4, 3)
    student = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0])
    shift = 2.0 * torch.log(torch.tensor([0.7, 0.2, 0.1]))
    plain, balanced = make(), make()
    balanced.balance(shift)
    torch.testing.assert_close(balanced(student, labels, teacher_logits=teacher_logits),
                               plain(student, labels, teacher_logits=teacher_logits - shift))  # fmt: skip


def test_class_weights_are_refused_with_dist_whose_relation_term_spans_the_batch():
    cfg = DistillConfig(teacher="runs/t", kd_loss="dist", class_weights="effective")
    with pytest.raises(KdtoolError, match=r"--class-weights does not apply to this run \(--kd-loss dist\): it is used "
                                          r"by every method but --kd-loss dist"):  # fmt: skip
        cfg.check_given({"class_weights": "--class-weights"})
    DistillConfig(teacher="runs/t", kd_loss="dkd", class_weights="effective").check_given({"class_weights": "x"})


def test_a_long_tailed_run_says_its_counts_records_them_and_adds_the_rare_class_metrics(run_cli, tmp_path):
    out = tmp_path / "lt"
    code, stdout, stderr = run_cli("train-teacher", *TINY, "--limit-train", "2000", "--imbalance-ratio", "100",
                                   "--val-fraction", "0.2", "--select", "best-val-balanced-acc", "--smoothing",
                                   "logit-adjust", "--device", "cpu", "--out", out)  # fmt: skip
    assert code == 0, stderr
    config = RunDir(out).config()
    counts = config["dataset_info"]["train_class_counts"]
    assert config["imbalance_ratio"] == 100 and config["tau"] == 1.0
    assert f"train {sum(counts):,}: {max(counts):,} … {min(counts):,} per class, ρ = 100; many/medium/few: " in stdout
    assert config["dataset_info"]["shot_groups"]["rule"] in stdout
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"val_balanced_acc", "test_balanced_acc", "test_many_acc", "test_medium_acc", "test_few_acc"} <= set(header)
    code, stdout, _ = run_cli("evaluate", out, "--device", "cpu")
    assert code == 0 and "balanced accuracy" in stdout and "per class, by training samples" in stdout
    rows = [line for line in stdout.splitlines() if line.startswith("│")]
    shown = [int(row.split("│")[2].strip().replace(",", "")) for row in rows]
    assert shown == sorted(counts, reverse=True)  # the rare classes last
    code, stdout, _ = run_cli("compare", out, "--format", "markdown")
    assert code == 0 and "| test_balanced_acc % selected" in stdout and "| test_few_acc % selected" in stdout
    code, stdout, _ = run_cli("compare", out, "--metric", "test_acc", "--format", "markdown")
    assert code == 0 and "balanced" not in stdout  # a --metric given is kept as given
    assert run_cli("report", out, "--out", tmp_path / "report.html", "--device", "cpu")[0] == 0
    assert "Per class, by training count" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--smoothing", "ls", "--tau", "2"), "--tau does not apply to this run (--smoothing ls): it is used by "
                                              "--smoothing logit-adjust"),
        (("--dataset", "wds:/nowhere/train-{0..1}.tar", "--val-shards", "/nowhere/val-{0..1}.tar",
          "--imbalance-ratio", "10"),
         "--imbalance-ratio does not apply to this run (--dataset wds:"),
        (("--imbalance-ratio", "0.5"), "--imbalance-ratio is the largest over the smallest class count: give a "
                                       "number > 1, got 0.5"),
        (("--cb-beta", "0.9"), "--cb-beta does not apply to this run (--class-weights none)"),
        (("--class-weights", "inverse"), "unknown --class-weights 'inverse': choose one of none, effective"),
        (("--lls-correction", "prior", "--smoothing", "ls"), "--lls-correction does not apply to this run"),
        (("--lls-correction", "tail"), "unknown --lls-correction 'tail': choose one of none, prior, adjusted, alpha"),
        (("--select", "best-val-balanced-acc", "--val-fraction", "0.2"),
         "--select best-val-balanced-acc needs training data known to be imbalanced"),
    ],
)  # fmt: skip
def test_refused_combinations_say_what_is_wrong_in_one_line(run_cli, tmp_path, args, message):
    code, _, stderr = run_cli("train-teacher", *TINY, "--device", "cpu", *args, "--out", tmp_path / "run")
    assert code == 2 and message in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_distill_refuses_a_teacher_balance_without_a_teacher(run_cli, tmp_path):
    QMatrix(torch.zeros(3, 3), ["a", "b", "c"], 0.1, "toy", "lls").save(tmp_path / "toy.q.safetensors")
    code, _, stderr = run_cli("distill", "--substitute-q", tmp_path / "toy.q.safetensors", "--kd-balance",
                              "logit-adjust", *TINY, "--out", tmp_path / "st")  # fmt: skip
    assert code == 2 and "--kd-balance does not apply to this run (distill --substitute-q)" in stderr


@pytest.mark.slow
def test_longtail_recipe_in_tiny_mode(tmp_path):
    from tests.test_recipes import markdown_rows, run_tiny

    out = tmp_path / "lt"
    # ρ = 5: 10% of 256 samples held out leaves ~23 a class, too few for ρ = 100's rarest class; text: no LLS
    # correction, 256 samples leave a rare emotion out (no class prior)
    text = {"KDTOOL_TEXT": "goemotions-ekman", "KDTOOL_TEXT_METHODS": "onehot lls"}
    done = run_tiny("longtail.sh", out, KDTOOL_SEEDS="0", KDTOOL_RATIOS="5", **text)
    teachers = markdown_rows(out / "rho5" / "compare.md")
    assert [row[:3] for row in teachers] == [
        ["onehot", "-", "none"], ["ls", "-", "none"], ["logit-adjust", "-", "none"], ["onehot", "-", "effective"],
        ["label-aware", "-", "none"], ["lls", "none", "none"], ["lls", "prior", "none"], ["lls", "adjusted", "none"],
        ["lls", "alpha", "none"], ["lls", "none", "effective"],
    ]  # fmt: skip
    header = (out / "rho5" / "compare.md").read_text().splitlines()[0]
    assert "test_balanced_acc % selected" in header and "test_few_acc % selected" in header
    assert "Spearman vs training share" in (out / "rho5" / "analysis.md").read_text()
    students = markdown_rows(out / "students" / "compare.md")
    assert [row[:2] for row in students] == [["kd", "none"], ["kd", "logit-adjust"], ["lls-st", "-"], ["lls-st", "-"]]
    assert students[3][2].endswith("lls-prior/seed0/q.safetensors")
    assert "ρ = 5; many/medium/few: thirds of the classes" in done.stdout
    text = markdown_rows(out / "goemotions-ekman" / "compare.md")
    assert [row[:2] for row in text] == [["onehot", "-"], ["lls", "none"]]
    assert "Spearman vs training share" in (out / "goemotions-ekman" / "analysis.md").read_text()


def test_sweep_takes_the_imbalance_ratio_as_a_grid(run_cli, tmp_path):
    code, stdout, stderr = run_cli("sweep", "--imbalance-ratio", "10,100", "--out", tmp_path, "--print-commands")
    assert code == 0, stderr
    assert "--imbalance-ratio 10 --out" in stdout and "--imbalance-ratio 100 --out" in stdout
