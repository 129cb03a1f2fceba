"""deepcalc's primitives and the composite ops built from them, one family per module.
Importing this package also gives ``Tensor`` its operators and methods."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor
from ._convert import as_tensor, check_dtype
from .convert_dtype import cast
from .embedding import embedding
from .elementwise import (abs, add, clip, div, equal, erf, exp, gelu, greater, greater_equal,
                          less, less_equal, log, maximum, minimum, mul, neg, not_equal, pow, relu,
                          sigmoid, sign, sqrt, sub, tanh, where)
from .attention import scaled_dot_product_attention
from .linalg import inv, matmul, slogdet
from .reduce import logsumexp, max, mean, min, std, sum, var
from .shape import (broadcast_to, concatenate, expand_dims, flatten, getitem, permute, reshape,
                    squeeze, stack, sum_to, swapaxes, transpose)
from .softmax import log_softmax, softmax


def _rev(fn):
    return lambda self, other: fn(other, self)


def _iter_rows(self):
    if self.data.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return (getitem(self, i) for i in range(len(self)))


def _install_tensor_methods():
    T = Tensor
    T.__add__, T.__radd__ = add, _rev(add)
    T.__sub__, T.__rsub__ = sub, _rev(sub)
    T.__mul__, T.__rmul__ = mul, _rev(mul)
    T.__truediv__, T.__rtruediv__ = div, _rev(div)
    T.__pow__, T.__rpow__ = pow, _rev(pow)
    T.__matmul__, T.__rmatmul__ = matmul, _rev(matmul)
    T.__neg__ = neg
    T.__pos__ = lambda self: self
    T.__abs__ = abs
    T.__eq__, T.__ne__ = equal, not_equal
    T.__lt__, T.__le__, T.__gt__, T.__ge__ = less, less_equal, greater, greater_equal
    T.__getitem__ = getitem
    T.__iter__ = _iter_rows
    T.T = property(lambda self: transpose(self))
    for fn in (exp, log, sqrt, tanh, sigmoid, relu, gelu, erf, abs, sum, mean, max, min, var,
               std, logsumexp, softmax, log_softmax, transpose, permute, swapaxes, squeeze,
               expand_dims, flatten, matmul, clip):
        setattr(T, fn.__name__, fn)
    T.reshape = reshape
    T.view = reshape
    T.astype = lambda self, dtype: astype(self, dtype)


def astype(x: Tensor, dtype) -> Tensor:
    """Explicit float32 <-> float64 conversion; differentiable (the gradient converts back).
    Conversions to bool and integer dtypes are allowed (and carry no gradient)."""
    x = as_tensor(x, None, "astype")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"astype: {dtype!r} is not a dtype") from None
    check_dtype("astype", dtype)
    return cast(x, dtype)


_install_tensor_methods()
