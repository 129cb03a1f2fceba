"""RMSprop (torch.optim.RMSprop semantics: centered variant, momentum, weight decay) in NumPy;
each line mirrors one torch op in torch's order and precision."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import no_grad
from ..nn._checks import real
from .optimizer import Optimizer, check_float, grad_array, inplace_view, nonnegative


def _lerp(start, end, weight):
    """torch.lerp's formula, chosen by weight for accuracy."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


class RMSprop(Optimizer):
    """``v = alpha*v + (1-alpha)*g*g``; centered: ``ga = lerp(ga, g, 1-alpha)``,
    ``avg = sqrt(v - ga*ga) + eps`` (else ``sqrt(v) + eps``); ``p -= lr * g/avg``, or with
    momentum ``buf = momentum*buf + g/avg; p -= lr*buf``."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _check_hyperparameters(self, hp, owner):
        nonnegative(hp, owner, "lr", "eps", "weight_decay", "momentum")
        # alpha > 1 would make the running average of g*g negative (sqrt of it NaN)
        hp["alpha"] = real(owner, "alpha", hp["alpha"], 0.0, 1.0)
        return hp

    def step(self):
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._step_one(p, group)
        return None

    def _step_one(self, p, group):
        check_float(p, "RMSprop")
        g = grad_array(p, "RMSprop")
        dt = g.dtype.type  # torch casts scalars to the parameter's precision
        lr, alpha, eps = dt(group["lr"]), dt(group["alpha"]), dt(group["eps"])
        wd, momentum = dt(group["weight_decay"]), dt(group["momentum"])
        state = self.state.get(p)
        if not state:
            state = self.state[p] = {"step": 0, "square_avg": np.zeros_like(g)}
            if group["momentum"] > 0:
                state["momentum_buffer"] = np.zeros_like(g)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(g)
        state["step"] += 1
        with inplace_view(p) as data:
            if wd != 0:
                g = g + wd * data
            sq = state["square_avg"]
            sq *= alpha
            sq += (dt(1) - alpha) * g * g
            if group["centered"]:
                ga = state["grad_avg"]
                ga[...] = _lerp(ga, g, dt(1) - alpha)
                avg = np.sqrt(sq + dt(-1) * ga * ga)
            else:
                avg = np.sqrt(sq)
            avg += eps
            if group["momentum"] > 0:
                buf = state["momentum_buffer"]
                buf *= momentum
                buf += g / avg
                data += -lr * buf
            else:
                data += (-lr * g) / avg
