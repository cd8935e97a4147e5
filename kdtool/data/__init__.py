"""Datasets kept in memory as tensors, and the batched loader that feeds the engine."""

from kdtool.data.dataset import Dataset, DatasetInfo, Split
from kdtool.data.loader import BatchLoader, ImageBatchTransform
from kdtool.data.registry import DATASET_NAMES, load_dataset

__all__ = [
    "DATASET_NAMES",
    "BatchLoader",
    "Dataset",
    "DatasetInfo",
    "ImageBatchTransform",
    "Split",
    "load_dataset",
]
