"""``--kd-preset`` (the papers' settings, checked against the docs table), the per-loss defaults shown in the
header line, WTTM and NKD from the command line, and the warning when the training loss rises from the start."""

import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from kdtool.config.runconfig import KD_PRESETS, LOSS_DEFAULTS, DistillConfig, TrainConfig
from kdtool.workflows.pipeline import rising_loss_warning, train_teacher
from tests.conftest import TINY

DOCS = Path(__file__).resolve().parents[1] / "docs" / "distill.md"


def documented_presets() -> dict[str, tuple[str, dict]]:
    """The presets table of docs/distill.md: name -> (--kd-loss, {option: value})."""
    rows = re.findall(r"^\| `([a-z0-9+-]+)` \| `(\w+)` \| `([^`]*)` \|", DOCS.read_text(), re.MULTILINE)
    table = {}
    for name, loss, options in rows:
        values = {"logit_standardize": "--logit-standardize" in options}
        for flag, value in re.findall(r"--([a-z-]+) ([0-9.]+)", options):
            values[flag.replace("-", "_")] = float(value)
        table[name] = (loss, values)
    return table


def test_every_preset_has_the_values_of_the_docs_table():
    table = documented_presets()
    assert set(table) == set(KD_PRESETS)
    for name, preset in KD_PRESETS.items():
        assert table[name] == (preset.kd_loss, dict(preset.values)), name
    # the named settings
    assert table["dkd-cifar100"][1] == {"beta": 1.0, "temperature": 4.0, "dkd_alpha": 1.0, "dkd_beta": 8.0,
                                             "dkd_warmup_epochs": 20, "logit_standardize": False}  # fmt: skip
    assert table["dkd+ls"][1]["dkd_alpha"] == 9 and table["dkd+ls"][1]["dkd_beta"] == 72
    assert table["kd+ls"][1] == {"beta": 0.1, "kd_weight": 9.0, "temperature": 2.0, "logit_standardize": True}


def resolved(**options) -> DistillConfig:
    cfg = DistillConfig(teacher="t", **options)
    cfg.resolve_loss_options()
    return cfg


def test_each_loss_resolves_its_defaults_and_a_preset_fills_only_what_is_not_given():
    for loss, defaults in LOSS_DEFAULTS.items():
        if loss == "lls-st":
            continue
        cfg = resolved(kd_loss=loss)
        assert {k: getattr(cfg, k) for k in defaults if defaults[k] is not None} == {
            k: v for k, v in defaults.items() if v is not None
        }
    cfg = resolved(kd_preset="dist-imagenet", dist_gamma=3.0)
    assert (cfg.kd_loss, cfg.temperature, cfg.dist_beta, cfg.dist_gamma) == ("dist", 1.0, 2.0, 3.0)
    assert cfg.preset_record() == {"kd_preset_set": {"beta": 1.0, "temperature": 1.0, "dist_beta": 2.0,
                                                     "logit_standardize": False},
                                   "kd_preset_overridden": {"dist_gamma": 3.0}}  # fmt: skip
    standardized = resolved(kd_loss="nkd", logit_standardize=True)
    assert standardized.temperature == 2.0  # the LSKD paper's base temperature


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny 1-hot teacher run (1 epoch on 256 images)."""
    out = tmp_path_factory.mktemp("teacher") / "onehot"
    cfg = TrainConfig(smoothing="onehot", limit_train=256, limit_test=128, epochs=1, batch_size=64, out=str(out))
    train_teacher(cfg, False, Console(quiet=True))
    return out


def test_a_preset_is_recorded_and_an_option_given_overrides_it_in_the_header(run_cli, teacher, tmp_path):
    out = tmp_path / "dkd"
    code, stdout, stderr = run_cli("distill", "--teacher", teacher, "--kd-preset", "dkd-cifar100", "--temperature",
                                   "2", *TINY, "--out", out)  # fmt: skip
    assert code == 0, stderr
    assert ("dkd · lenet5 · fashion-mnist (256 train / 128 test) · CE weight β 1, T 2, α 1, β_dkd 8, warm-up 20 "
            "(--kd-preset dkd-cifar100; --temperature 2 overrides its 4)") in stdout  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert (config["kd_preset"], config["kd_loss"], config["temperature"], config["dkd_beta"]) == (
        "dkd-cifar100", "dkd", 2.0, 8.0)  # fmt: skip
    assert config["kd_preset_set"] == {"beta": 1.0, "dkd_alpha": 1.0, "dkd_beta": 8.0, "dkd_warmup_epochs": 20,
                                       "logit_standardize": False}  # fmt: skip
    assert config["kd_preset_overridden"] == {"temperature": 2.0}


def test_the_header_shows_each_losss_resolved_options_and_wttm_nkd_train(run_cli, teacher, tmp_path):
    expected = {
        "dist": ("CE weight β 1, T 1, β_dist 1, γ 1", {"temperature": 1.0, "dist_beta": 1.0, "dist_gamma": 1.0}),
        "wttm": ("CE weight β 1, γ 0.5, weight 1", {"wttm_gamma": 0.5, "wttm_weight": 1.0}),
        "nkd": ("CE weight β 1, T 1, γ 0.5", {"temperature": 1.0, "nkd_gamma": 0.5}),
    }
    for loss, (line, recorded) in expected.items():
        out = tmp_path / loss
        code, stdout, stderr = run_cli("distill", "--teacher", teacher, "--kd-loss", loss, *TINY, "--out", out)
        assert code == 0, stderr
        assert f"{loss} · lenet5 · fashion-mnist (256 train / 128 test) · {line} · lr" in stdout
        config = json.loads((out / "config.json").read_text())
        assert {k: config[k] for k in recorded} == recorded
        assert "kd_preset_set" not in config and ("temperature" in config) == (loss != "wttm")
    code, stdout, stderr = run_cli("distill", "--teacher", teacher, "--kd-preset", "kd+ls", *TINY, "--out",
                                   tmp_path / "kdls")  # fmt: skip
    assert code == 0, stderr
    assert "CE weight β 0.1, KD weight 9, T 2, logits standardised (--kd-preset kd+ls)" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kd-preset", "dkd-cifar100", "--kd-loss", "dist"],
         "--kd-preset dkd-cifar100 sets --kd-loss dkd, not dist: remove --kd-loss or choose a dist preset "
         "(dist-cifar100, dist-imagenet)"),
        (["--kd-preset", "dkd-cifar10"], "unknown --kd-preset 'dkd-cifar10' (did you mean dkd-cifar100?): choose "),
        (["--kd-loss", "wttm", "--wttm-gamma", "0"], "--wttm-gamma must be positive"),
        (["--kd-loss", "nkd", "--nkd-gamma", "-1"], "--nkd-gamma must be ≥ 0"),
        (["--kd-loss", "nkd", "--wttm-weight", "1"], "--wttm-weight does not apply to this run (--kd-loss nkd)"),
        (["--kd-weight", "2", "--kd-loss", "dkd"], "--kd-weight does not apply to this run (--kd-loss dkd)"),
    ],
)  # fmt: skip
def test_bad_presets_and_wttm_nkd_options_are_refused_in_one_line(run_cli, teacher, tmp_path, args, message):
    code, _, stderr = run_cli("distill", "--teacher", teacher, *args, *TINY, "--out", tmp_path / "never")
    assert code == 2 and message in stderr and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


def test_a_rising_training_loss_is_warned_about_in_one_line(run_cli, teacher, tmp_path):
    small = ("--limit-train", "256", "--limit-test", "128", "--batch-size", "64", "--epochs", "3")
    # too high a learning rate: the loss rises (at lr 1 it explodes to 1e6 in epoch 3, a divergence: exit 3)
    hot = ("--beta", "1", "--lr", "0.5", "--schedule", "constant", "--warmup-epochs", "0")
    code, stdout, stderr = run_cli("distill", "--teacher", teacher, *small, *hot, "--out", tmp_path / "hot")
    assert code == 0, stderr
    warnings = [line for line in stdout.splitlines() if line.startswith("warning: the training loss rose")]
    assert len(warnings) == 1 and "over the first 3 epochs (" in warnings[0]
    assert "(--lr, the loss's weights and temperature in the header) may not suit the data" in warnings[0]
    code, stdout, stderr = run_cli("distill", "--teacher", teacher, *small, "--out", tmp_path / "fine")
    assert code == 0, stderr
    assert "training loss rose" not in stdout


def test_the_rising_loss_rule():
    rows = [{"train_loss": v} for v in (56.9, 64.3, 63.8)]  # dist at the CIFAR-100 setting on Fashion-MNIST
    assert rising_loss_warning(rows, 10).startswith("warning: the training loss rose over the first 3 epochs "
                                                    "(56.9 → 64.3 → 63.8)")  # fmt: skip
    assert rising_loss_warning(rows[:2], 10) is None  # not yet: three epochs are looked at
    assert rising_loss_warning(rows[:2], 2) is not None  # a 2-epoch run: its two
    assert rising_loss_warning([{"train_loss": v} for v in (3.5, 1.1, 0.7)], 10) is None  # DKD warming up
    assert rising_loss_warning([{"train_loss": v} for v in (3.0, 2.0, 2.5)], 10) is None
    assert rising_loss_warning(rows[:1], 1) is None
