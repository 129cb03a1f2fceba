"""SGD with momentum, dampening, weight decay and Nesterov momentum (torch.optim.SGD semantics),
stepping each parameter with the fused native kernel ``ops.optim_step.sgd_step``."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import no_grad
from ..ops.optim_step import sgd_step
from ..nn._checks import real
from .optimizer import Optimizer, check_float, grad_array, inplace_view, nonnegative


class SGD(Optimizer):
    """``g = grad + wd*p; buf = momentum*buf + (1-dampening)*g`` (``buf = g`` on the first step);
    ``g = g + momentum*buf`` (Nesterov) or ``g = buf``; ``p -= lr*g``."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _check_hyperparameters(self, hp, owner):
        nonnegative(hp, owner, "lr", "momentum", "weight_decay")
        hp["dampening"] = real(owner, "dampening", hp["dampening"], 0.0, 1.0)
        if hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
            raise ValueError(f"{owner}: Nesterov momentum requires momentum > 0 and dampening 0, "
                             f"got momentum {hp['momentum']}, dampening {hp['dampening']}")
        return hp

    def step(self):
        with no_grad():
            for group in self.param_groups:
                momentum = float(group["momentum"])
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    check_float(p, "SGD")
                    g = grad_array(p, "SGD")
                    buf, first = None, True
                    if momentum != 0.0:  # torch keeps no state without momentum
                        state = self.state.setdefault(p, {})
                        buf = state.get("momentum_buffer")
                        first = buf is None
                        if first:  # the kernel copies g into it on the first step
                            buf = state["momentum_buffer"] = np.empty_like(g)
                    with inplace_view(p) as data:
                        sgd_step(data, g, buf, float(group["lr"]), momentum,
                                 float(group["dampening"]), float(group["weight_decay"]),
                                 bool(group["nesterov"]), first)
        return None
