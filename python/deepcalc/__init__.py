"""deepcalc: a deep-learning library whose every step can be read and checked.

Tensors wrap NumPy arrays; autodiff works to any order in reverse and forward mode; heavy
kernels (GEMM, softmax, normalization, optimizers) are native C++ with runtime CPU dispatch.
"""
from . import _core
from .autodiff.graph import Tensor, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .autodiff import engine as _engine
from .autodiff.engine import grad as autograd_grad
from .func.transforms import (grad, hessian, hvp, jacfwd, jacobian_logdet, jacrev, jvp,
                                  value_and_grad, vjp)
from .func.vmap import vmap
from .creation import (arange, eye, full, manual_seed, ones, ones_like, rand, randn, tensor,
                       zeros, zeros_like)
from .ops import (abs, add, astype, broadcast_to, clip, concatenate, div, erf, exp, expand_dims,
                  flatten, gelu, inv, log, log_softmax, logsumexp, matmul, max, maximum, mean,
                  min, minimum, mul, neg, permute, pow, relu, reshape, sigmoid, sign, slogdet,
                  softmax, sqrt, squeeze, stack, std, sub, sum, swapaxes, tanh, transpose, var,
                  where)
from . import data, func, memory, nn, optim, testing, train
from .serialization import load, save

__version__ = "0.1.0"

# Loaded on first use (``dc.impact``, ...): they are not needed by every program, and
# distributed imports mpi4py when there is one.
_LAZY_SUBPACKAGES = ("attacks", "curvature", "diagnose", "distributed", "experiments", "impact",
                     "regularize")


def __getattr__(name):
    if name in _LAZY_SUBPACKAGES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'deepcalc' has no attribute {name!r}")


def set_num_threads(n: int) -> None:
    """Number of OpenMP threads every native kernel uses (shared by concurrent callers)."""
    if int(n) < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return _core.get_num_threads()


def cpu_capability() -> str:
    """The instruction set the kernels run with: 'avx512', 'avx2' or 'scalar'."""
    err = _core.cpu_capability_error()
    if err:
        import warnings
        warnings.warn(err, RuntimeWarning, stacklevel=2)
    return _core.cpu_capability()


def _tensor_backward(self, grad=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see autodiff/engine.py);
    ``retain_graph`` defaults to ``create_graph``."""
    _engine.backward(self, grad, retain_graph, create_graph, inputs)


Tensor.backward = _tensor_backward

__all__ = [
    "Tensor", "tensor", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
    "manual_seed", "set_num_threads", "get_num_threads", "cpu_capability",
    "grad", "value_and_grad", "vjp", "jvp", "vmap", "jacrev", "jacfwd", "hessian", "hvp",
    "jacobian_logdet", "autograd_grad", "func", "memory", "nn", "testing", "optim", "data", "train",
    "save", "load",
    "zeros", "ones", "full", "zeros_like", "ones_like", "arange", "eye", "randn", "rand",
    "abs", "add", "astype", "broadcast_to", "clip", "concatenate", "div", "erf", "exp",
    "expand_dims", "flatten", "gelu", "inv", "log", "log_softmax", "logsumexp", "matmul", "max",
    "maximum", "mean", "min", "minimum", "mul", "neg", "permute", "pow", "relu", "reshape",
    "sigmoid", "sign", "slogdet", "softmax", "sqrt", "squeeze", "stack", "std", "sub", "sum",
    "swapaxes", "tanh", "transpose", "var", "where",
]
