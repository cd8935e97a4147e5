"""#28.9: weight decay off for biases and normalisation parameters, and mixup/cutmix's λ ~ Beta(α, α)."""

import json

import pytest
import torch
from torch import nn

from kdtool.config.runconfig import TrainConfig
from kdtool.data.augment import BatchMixer
from kdtool.losses import LearnableLabelSmoothing
from kdtool.training.engine import build_optimizer
from tests.conftest import TINY


def net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LayerNorm(4 * 26 * 26),
                         nn.Linear(4 * 26 * 26, 10))  # fmt: skip


@pytest.mark.parametrize("decay_bias_norm", [False, True])
def test_biases_and_norm_parameters_get_no_weight_decay_by_default(decay_bias_norm):
    cfg = TrainConfig(weight_decay=5e-4, q_weight_decay=1e-3, decay_bias_norm=decay_bias_norm, lr=0.1).resolve()
    model, target = net(), LearnableLabelSmoothing(10)
    optimizer = build_optimizer(model, target, cfg)
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    weights = [model[0].weight, model[4].weight]
    others = [model[0].bias, model[1].weight, model[1].bias, model[3].weight, model[3].bias, model[4].bias]
    assert all(decay_of[id(p)] == 5e-4 for p in weights)
    assert all(decay_of[id(p)] == (5e-4 if decay_bias_norm else 0.0) for p in others)
    assert decay_of[id(target.q)] == 1e-3  # Q keeps its own --q-weight-decay
    assert len(decay_of) == len(list(model.parameters())) + 1  # every parameter once


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_the_mixing_weight_follows_beta_alpha_alpha(alpha):
    generator = torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 1, 2, 2), torch.arange(4)
    mixer = BatchMixer(("mixup",), alpha)
    lams = torch.stack([mixer(x, y, generator).lam for _ in range(4000)])
    variance = 1 / (4 * (2 * alpha + 1))  # Beta(α, α): mean 1/2, variance 1/(4(2α+1))
    assert lams.mean().item() == pytest.approx(0.5, abs=0.02)
    assert lams.var().item() == pytest.approx(variance, rel=0.08)


def test_mixup_alpha_needs_mixup_or_cutmix_and_both_options_are_recorded(run_cli, tmp_path):
    code, _, err = run_cli("train-teacher", *TINY, "--mixup-alpha", "0.2", "--out", tmp_path / "no")
    assert code == 2 and "--mixup-alpha does not apply" in err and "--augment with mixup or cutmix" in err
    code, _, err = run_cli("train-teacher", *TINY, "--augment", "cutmix", "--mixup-alpha", "0.2",
                           "--decay-bias-norm", "--out", tmp_path / "yes")  # fmt: skip
    assert code == 0, err
    record = json.loads((tmp_path / "yes" / "config.json").read_text())
    assert record["mixup_alpha"] == 0.2 and record["decay_bias_norm"] is True
    assert json.loads((tmp_path / "yes" / "config.json").read_text())["mixup_alpha"] == TrainConfig().mixup_alpha == 0.2
    code, _, err = run_cli("train-teacher", *TINY, "--augment", "mixup", "--mixup-alpha", "0", "--out", tmp_path / "z")
    assert code == 2 and "--mixup-alpha must be > 0" in err
