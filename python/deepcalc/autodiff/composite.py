"""Rules of a primitive taken from a composite of deepcalc ops that computes the same function.

A fused kernel (say BatchNorm's backward) is a primitive whose forward is native; its own
derivatives, needed only at the next order, can come from the differentiable composite that
computes the same values: ``composite_vjp`` runs the composite on the node's inputs and
differentiates it in reverse, ``composite_jvp`` pushes the tangents through it in forward mode
on a level of its own.  Both are differentiable again (to any order), so the composite costs
time only where the next order is wanted; the first order always runs the kernel.
"""
from __future__ import annotations

from . import engine
from .graph import STATE, dual, enable_grad, new_level, watch


def _as_tuple(out):
    return out if type(out) is tuple else (out,)


def composite_vjp(fn, ctx, cotangents):
    """Input gradients of ``fn(*ctx.inputs)`` (a Tensor or a tuple of them, the values of the
    primitive's outputs) against ``cotangents`` (one per output, None where none flowed).
    Gradients are taken at aliases of the inputs (``watch``), so only paths through the
    composite count and the graph the inputs came from is left as it is."""
    inputs = ctx.inputs
    recording = STATE.grad_enabled   # an outer pass differentiates these gradients again
    with enable_grad():
        watched = [watch(x) if x.requires_grad else x for x in inputs]
        outs = _as_tuple(fn(*watched))
    pairs = [(o, c) for o, c in zip(outs, cotangents) if c is not None and o.requires_grad]
    wanted = [w for w, x in zip(watched, inputs) if x.requires_grad]
    if not pairs or not wanted:
        return (None,) * len(inputs)
    grads = iter(engine.run_backward([o for o, _ in pairs], [c for _, c in pairs], wanted,
                                     retain_graph=recording, create_graph=recording))
    return tuple(next(grads) if x.requires_grad else None for x in inputs)


def composite_jvp(fn, ctx, tangents):
    """Output tangents of ``fn(*ctx.inputs)`` along ``tangents`` (one per input, None where an
    input has none), computed on a forward level of its own (above every active one, so the
    tangents of enclosing transforms ride along as usual)."""
    level = new_level()
    duals = [x if t is None else dual(x, t, level) for x, t in zip(ctx.inputs, tangents)]
    STATE.fw_levels.append(level)
    try:
        outs = _as_tuple(fn(*duals))
    finally:
        STATE.fw_levels.remove(level)
    return tuple(o._fw.get(level) if o._fw else None for o in outs)
