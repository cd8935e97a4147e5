import math

import pytest
import torch

from kdtool.training.metrics import (
    accuracy,
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    macro_f1,
    nll,
    per_class_f1,
)


def test_metrics_by_hand():
    # confidences 0.9 (right), 0.6 (wrong), 0.55 (right): bins of width 1/15
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.55, 0.45]])
    logits = probs.log()
    labels = torch.tensor([0, 0, 0])
    assert accuracy(logits, labels) == pytest.approx(2 / 3)
    assert nll(logits, labels) == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.55)) / 3, rel=1e-6)
    # 0.9 alone in its bin: |1-0.9|; 0.6 and 0.55 share bin (8/15, 9/15]: |1 - (0.6+0.55)|
    expected = (abs(1 - 0.9) + abs(1 - 1.15)) / 3
    assert expected_calibration_error(logits, labels) == pytest.approx(expected, rel=1e-5)


def test_macro_f1_by_hand():
    # true 0 0 1 1 2 2, predicted 0 1 1 1 2 0; class 3 is neither present nor predicted
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 1, 2, 0]), 4).float()
    # F1 = 2TP / (2TP + FP + FN): class 0: 2/(2+1+1), class 1: 4/(4+1+0), class 2: 2/(2+0+1)
    f1 = per_class_f1(logits, labels)
    assert f1[:3].tolist() == pytest.approx([0.5, 0.8, 2 / 3]) and math.isnan(f1[3])
    assert macro_f1(logits, labels) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert classification_metrics(logits, labels)["test_macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_calibration_bins_and_ece_by_hand():
    # confidences (none on a bin edge) and hits: 0.9 right, 0.7 wrong, 0.72 right, 0.42 wrong
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.18, 0.72], [0.42, 0.33, 0.25]])
    labels = torch.tensor([0, 0, 2, 1])
    count, confidence, hits = calibration_bins(probs.log(), labels)  # 15 bins of width 1/15
    # bin b is (b/15, (b+1)/15]: 0.9 -> bin 13, 0.7 and 0.72 -> bin 10, 0.42 -> bin 6
    assert count.tolist() == [0] * 6 + [1, 0, 0, 0, 2, 0, 0, 1, 0]
    assert confidence[[6, 10, 13]].tolist() == pytest.approx([0.42, 1.42, 0.9])
    assert hits.tolist() == [0.0] * 10 + [1.0, 0.0, 0.0, 1.0, 0.0]
    # (|0 - 0.42| + |1 - 1.42| + |1 - 0.9|) / 4
    assert expected_calibration_error(probs.log(), labels) == pytest.approx(0.235, rel=1e-5)
    # two bins: 0.42 alone in (0, 1/2]; the other three together in (1/2, 1]: (0.42 + |2 - 2.32|) / 4
    assert expected_calibration_error(probs.log(), labels, bins=2) == pytest.approx(0.185, rel=1e-5)
