"""Fused optimizer steps (cpp/optim): each updates one parameter array in place in a single
pass over it.  They are array functions, not primitives: an optimizer step is never
differentiated.  ``dc.optim`` calls them; the equations are torch.optim's.

    SGD:   g' = g + wd p;  b = g' (first step) or mu b + (1 - dampening) g';
           p -= lr (g' + mu b if nesterov else b)                     (mu = 0: p -= lr g')
    Adam:  g' = g + wd p (decoupled: p *= 1 - lr wd instead);  m = b1 m + (1 - b1) g';
           v = b2 v + (1 - b2) g'^2;  p -= lr m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps)
           (amsgrad: v_max = max(v_max, v) replaces v in the denominator)
"""
from __future__ import annotations

from .. import _core


def sgd_step(param, grad, momentum_buffer, lr: float, momentum: float, dampening: float,
             weight_decay: float, nesterov: bool, first_step: bool) -> None:
    """One SGD step on ``param`` (in place); ``momentum_buffer`` is updated in place (filled
    from the gradient on the first step) when ``momentum`` > 0."""
    _core.sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay,
                   nesterov, first_step)


def adam_step(param, grad, exp_avg, exp_avg_sq, lr: float, beta1: float, beta2: float,
              eps: float, weight_decay: float, step: int, decoupled: bool,
              max_exp_avg_sq=None) -> None:
    """One Adam (``decoupled``: AdamW) step on ``param`` (in place) at step number ``step``
    (from 1); the moment arrays (and ``max_exp_avg_sq`` for amsgrad) are updated in place."""
    _core.adam_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step,
                    decoupled, max_exp_avg_sq)
