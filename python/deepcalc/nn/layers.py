"""Basic layers: Linear (the fused GEMM + activation), activation modules, Dropout, Flatten."""
from __future__ import annotations

import numpy as np

from ..creation import check_generator
from ..ops._convert import as_tensor
from . import _checks, init
from . import functional as F
from .module import Module, Parameter


class Linear(Module):
    """y = act(x W^T + b), W is (out_features, in_features) (torch's layout and default init).

    ``activation`` (None, 'relu', 'tanh', 'sigmoid', 'gelu') is fused into the GEMM epilogue;
    ``weight_multiplier`` / ``bias_multiplier`` scale W and b in the forward pass (used by the
    NTK and muP parametrizations: the stored parameters keep unit scale)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation=None,
                 dtype=np.float32, weight_multiplier: float = 1.0, bias_multiplier: float = 1.0):
        super().__init__()
        F.activation_fn(activation, "Linear")  # validates the name
        in_features = _checks.integer("Linear", "in_features", in_features)
        out_features = _checks.integer("Linear", "out_features", out_features)
        dtype = _checks.float_dtype("Linear", dtype)
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight_multiplier = _checks.real("Linear", "weight_multiplier", weight_multiplier)
        self.bias_multiplier = _checks.real("Linear", "bias_multiplier", bias_multiplier)
        self.weight = Parameter(init.torch_default((out_features, in_features), in_features, dtype))
        self.bias = Parameter(init.torch_default((out_features,), in_features, dtype)) if bias else None
        if not bias:
            self.register_parameter("bias", None)

    def forward(self, x):
        return self.fuse_activation(x, self.activation)

    def fuse_activation(self, x, activation):
        """act(x W^T + b) in one fused kernel call; ``Sequential`` passes the activation of a
        ReLU/Tanh/Sigmoid/GELU module that follows a Linear without one (torch's idiom
        ``Sequential(Linear(...), ReLU(), ...)`` gets the fused epilogue, forward and backward)."""
        params = self._parameters  # one dict lookup instead of two __getattr__ fallbacks
        w, b = params["weight"], params["bias"]
        if self.weight_multiplier != 1.0:
            w = w * self.weight_multiplier
        if b is not None and self.bias_multiplier != 1.0:
            b = b * self.bias_multiplier
        return F.linear(x, w, b, activation)

    def extra_repr(self):
        act = f", activation={self.activation!r}" if self.activation else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}{act}")


class _Activation(Module):
    fn = None
    fused_name = None   # the name Linear's fused epilogue knows this activation by

    def forward(self, x):
        return type(self).fn(x)


class ReLU(_Activation):
    fn = staticmethod(F.relu)
    fused_name = "relu"


class Tanh(_Activation):
    fn = staticmethod(F.tanh)
    fused_name = "tanh"


class Sigmoid(_Activation):
    fn = staticmethod(F.sigmoid)
    fused_name = "sigmoid"


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    @property
    def fused_name(self):
        return "gelu" if self.approximate == "none" else None

    def forward(self, x):
        return F.gelu(x, self.approximate)


class Identity(Module):
    def forward(self, x):
        return x


class Softmax(Module):
    def __init__(self, axis: int = -1):
        super().__init__()
        self.axis = _checks.integer("Softmax", "axis", axis, minimum=-2**31)

    def forward(self, x):
        return F.softmax(x, self.axis)


class Dropout(Module):
    """Inverted dropout in training mode, identity in eval mode; draws from the seeded
    deepcalc generator (``dc.manual_seed``) unless a generator is given."""

    def __init__(self, p: float = 0.5, generator=None):
        super().__init__()
        self.generator = check_generator("Dropout", generator)
        self.p = _checks.probability("Dropout", "p", p)

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """(N, ...) -> (N, prod(...)): every axis but the first (batch) one merged."""

    def forward(self, x):
        x = as_tensor(x, op="Flatten")
        if x.ndim == 0:
            raise ValueError("Flatten: expected an input with a batch axis, got a 0-d tensor")
        return x.reshape(x.shape[0], -1)


class Standardize(Module):
    """(x - mean) / std with fixed per-feature statistics held as buffers (so checkpoints carry
    them); ``Standardize.fit(x)`` computes them from training data."""

    def __init__(self, mean, std):
        super().__init__()
        from ..autodiff.graph import Tensor
        mean, std = np.asarray(getattr(mean, "data", mean)), np.asarray(getattr(std, "data", std))
        if mean.shape != std.shape or mean.dtype != std.dtype or mean.dtype.kind != "f":
            raise ValueError(f"Standardize: mean and std must be float arrays of one shape and "
                             f"dtype, got {mean.dtype} {mean.shape} and {std.dtype} {std.shape}")
        if not (std > 0).all():  # NaN fails too
            raise ValueError("Standardize: every std must be > 0 (fit adds eps for constant "
                             "features)")
        self.register_buffer("mean", Tensor(mean))
        self.register_buffer("std", Tensor(std))

    @classmethod
    def fit(cls, x, eps: float = 1e-2, dtype=np.float32):
        """Statistics of ``x`` (N, features); ``eps`` keeps constant features finite."""
        x = np.asarray(getattr(x, "data", x), np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"Standardize.fit: expected data of shape (N, features) with N >= 1, "
                             f"got {x.shape}")
        return cls(x.mean(axis=0).astype(dtype), (x.std(axis=0) + eps).astype(dtype))

    def forward(self, x):
        return (x - self.mean) / self.std
