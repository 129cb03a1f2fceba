"""Neural-network layers and the Module API (``dc.nn``)."""
from . import functional, init
from .layers import (GELU, Dropout, Flatten, Identity, Linear, ReLU, Sigmoid, Softmax,
                     Standardize, Tanh)
from .mlp import MLP
from .normalization import BatchNorm1d, LayerNorm
from .rnn import RNN
from .module import Module, ModuleList, Parameter, RemovableHandle, Sequential

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "RemovableHandle", "Linear", "RNN", "ReLU",
           "Tanh", "Sigmoid", "GELU", "Softmax", "Identity", "Dropout", "Flatten", "Standardize", "MLP", "BatchNorm1d", "LayerNorm",
           "functional", "init"]
