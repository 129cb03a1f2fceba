"""Batching rules shared by many primitives (vmap; see autodiff/batching.py)."""
from __future__ import annotations

from ..autodiff.graph import BatchInfo, apply
from .shape import align, materialize


def elementwise_rule(info: BatchInfo, prim, args, params):
    """The rule of an element-wise primitive that broadcasts its operands: align them and run
    it once on the whole batch."""
    return apply(prim, tuple(align(info, args)), params)


def unary_rule(self, info, x, **params):
    """``batch`` for a one-input primitive that acts on each element (or each slice) alike: the
    primitive itself on the whole batch."""
    return apply(self, (x,), params)


def binary_rule(self, info, *args, **params):
    """``batch`` for an element-wise primitive with broadcasting operands."""
    return elementwise_rule(info, self, args, params)


def same_shape_rule(self, info, *args, **params):
    """``batch`` for an element-wise primitive whose operands share one shape (native kernels
    that do not broadcast): every operand with the mapped axis first."""
    return apply(self, tuple(materialize(x, b, info.size) for x, b in zip(args, info.batched)),
                 params)
