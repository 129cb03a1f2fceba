"""Datasets and batching: Dataset, TensorDataset, DataLoader (seeded, resumable), built-in data
(digits, teacher regression) and MNIST IDX files read from a user directory."""
from .dataset import DataLoader, Dataset, TensorDataset
from .idx import load_mnist, read_idx, write_idx
from .synthetic import load_digits, teacher_regression
from . import seq2seq
from .seq2seq import Seq2SeqData, Vocab, make_task, task_splits
from .text import CharCorpus, load_pydoc_topics

__all__ = ["Dataset", "TensorDataset", "DataLoader", "load_digits", "teacher_regression",
           "read_idx", "write_idx", "load_mnist", "seq2seq", "Seq2SeqData", "Vocab", "make_task",
           "task_splits", "CharCorpus", "load_pydoc_topics"]
