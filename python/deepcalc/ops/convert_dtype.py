"""Explicit dtype conversion, the only way float32 and float64 meet (see ``_convert.py``)."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Primitive, Tensor, apply
from ..autodiff.batching import constant
from ._batching import unary_rule


class Cast(Primitive):
    name = "cast"
    batch = unary_rule

    def forward(self, x, dtype):
        return x.astype(dtype)

    def vjp(self, ctx, g):
        return (cast(g, ctx.inputs[0].dtype),)

    def jvp(self, ctx, t):
        return cast(t, ctx.params["dtype"])


_cast = Cast()


def cast(x: Tensor, dtype: np.dtype) -> Tensor:
    if x.dtype == dtype:
        return x
    if dtype.kind != "f" or x.dtype.kind != "f":  # no gradient: a constant (batched under vmap)
        return constant(lambda a: a.astype(dtype), x)
    return apply(_cast, (x,), {"dtype": dtype})
