"""Weight initializations.  Each returns a new array; the docstring says what it scales.

fan_in / fan_out of a weight in (out_features, in_features) layout are shape[1] / shape[0]."""
from __future__ import annotations

import math

import numpy as np

from ..creation import default_generator

__all__ = ["standard_normal", "xavier_uniform", "kaiming_normal", "torch_default"]


def _gen(generator):
    return generator or default_generator()


def _shape(op: str, shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0
               for d in shape):
        raise ValueError(f"{op}: shape must hold non-negative integers, got {shape}")
    return shape


def _fans(op: str, shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out_features, in_features, ...)."""
    shape = _shape(op, shape)
    if len(shape) < 2 or min(shape) == 0:
        raise ValueError(f"{op}: fan_in and fan_out need a weight shape of at least 2 positive "
                         f"dimensions (out_features, in_features), got {shape}")
    return shape[1], shape[0]


def standard_normal(shape, dtype=np.float32, generator=None):
    """N(0, 1) for every weight and bias, as in the classic tutorial network (Nielsen, ch. 1).
    Nothing is scaled, so pre-activations grow like sqrt(fan_in): wide sigmoid/tanh layers start
    saturated."""
    return _gen(generator).standard_normal(_shape("standard_normal", shape)).astype(dtype)


def xavier_uniform(shape, dtype=np.float32, generator=None, gain: float = 1.0):
    """Glorot & Bengio (2010): U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)), so the
    variance 2 / (fan_in + fan_out) balances forward activations and backward gradients."""
    fan_in, fan_out = _fans("xavier_uniform", shape)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _gen(generator).uniform(-a, a, shape).astype(dtype)


def kaiming_normal(shape, dtype=np.float32, generator=None, gain: float = math.sqrt(2.0)):
    """He et al. (2015): N(0, gain^2 / fan_in) with gain sqrt(2) for ReLU, which keeps the
    second moment of pre-activations constant with depth."""
    fan_in, _ = _fans("kaiming_normal", shape)
    return (_gen(generator).standard_normal(shape) * (gain / math.sqrt(fan_in))).astype(dtype)


def torch_default(shape, fan_in, dtype=np.float32, generator=None):
    """torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases."""
    shape = _shape("torch_default", shape)
    a = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return _gen(generator).uniform(-a, a, shape).astype(dtype)
