import math

import pytest
import torch

from kdtool.metrics import accuracy, expected_calibration_error, nll


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
