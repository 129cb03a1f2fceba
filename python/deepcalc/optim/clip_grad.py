"""Gradient clipping (torch.nn.utils semantics). Gradients are replaced by new Tensors, never
scaled in place, because a gradient array may be shared between tensors."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor
from ..nn._checks import real


def _with_grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients by ``min(1, max_norm / (total_norm + 1e-6))``, where ``total_norm``
    is the ``norm_type``-norm of the per-gradient norms; returns ``total_norm`` (0-d Tensor)."""
    max_norm = real("clip_grad_norm_", "max_norm", max_norm, 0.0)
    norm_type = real("clip_grad_norm_", "norm_type", norm_type)
    params = _with_grads(parameters)
    if not params:
        return Tensor(np.array(0.0, np.float32))
    dtype = np.result_type(*[p.grad.data.dtype for p in params])
    norms = [np.linalg.norm(np.asarray(p.grad.data, np.float64).ravel(), ord=norm_type)
             for p in params]
    total = np.linalg.norm(np.array(norms), ord=norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {norm_type} of the "
                           f"gradients is non-finite ({total}), so it cannot be clipped; set "
                           "error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # NaN total: scale by NaN, as torch does
        for p in params:
            g = p.grad.data
            p.grad = Tensor(g * g.dtype.type(coef))
    return Tensor(np.array(total, dtype))


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]``."""
    c = real("clip_grad_value_", "clip_value", clip_value, 0.0)
    for p in _with_grads(parameters):
        g = p.grad.data
        p.grad = Tensor(np.clip(g, g.dtype.type(-c), g.dtype.type(c)))
