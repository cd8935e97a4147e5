"""kdtool: learnable label smoothing and knowledge distillation for PyTorch classifiers."""

__version__ = "0.1.0"

from kdtool.qmatrix import QMatrix, SparseLogits
from kdtool.targets import LearnableLabelSmoothing, label_smoothing_loss
from kdtool.targets.kd import kd_loss

__all__ = ["LearnableLabelSmoothing", "QMatrix", "SparseLogits", "__version__", "kd_loss", "label_smoothing_loss"]
