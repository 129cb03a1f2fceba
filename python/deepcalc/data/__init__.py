"""Datasets and batching: Dataset, TensorDataset, DataLoader (seeded, resumable), built-in data
(digits, teacher regression) and MNIST IDX files read from a user directory."""
from .dataset import DataLoader, Dataset, TensorDataset
from .idx import load_mnist, read_idx, write_idx
from .synthetic import load_digits, teacher_regression

__all__ = ["Dataset", "TensorDataset", "DataLoader", "load_digits", "teacher_regression",
           "read_idx", "write_idx", "load_mnist"]
