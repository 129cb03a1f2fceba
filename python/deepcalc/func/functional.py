"""Functional calls: evaluate a module (or a plain function) with given parameters, so that
transforms can differentiate with respect to parameters: ``dc.grad(lambda p: loss(
functional_call(model, p, x)))(params)``."""
from __future__ import annotations


def functional_call(module_or_fn, params, *args, **kwargs):
    """Call ``module_or_fn`` with ``params`` (a dict name -> Tensor) in place of its own.

    * a Module (``dc.nn``): each named parameter/buffer in ``params`` temporarily replaces the
      module's own for the duration of the call (restored afterwards, even on error);
      names not in ``params`` keep the module's values; unknown names are an error;
    * a plain function: called as ``fn(params, *args, **kwargs)``.
    """
    swap = getattr(module_or_fn, "_swap_tensors", None)
    if swap is None:
        if not callable(module_or_fn):
            raise TypeError(f"functional_call: expected a Module or a callable, got "
                            f"{type(module_or_fn).__name__}")
        return module_or_fn(params, *args, **kwargs)
    restore = swap(dict(params))
    try:
        return module_or_fn(*args, **kwargs)
    finally:
        swap(restore)
