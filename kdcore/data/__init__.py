"""Datasets: generated and bundled samples, and the user's own data. See base.py for the surface."""
from kdcore.data.base import IGNORE_INDEX, SPLITS, Dataset, SplitData
from kdcore.data.registry import DATASETS, get_dataset

__all__ = ["Dataset", "SplitData", "SPLITS", "IGNORE_INDEX", "DATASETS", "get_dataset"]
