"""Adam and AdamW (torch.optim semantics, amsgrad included), stepping each parameter with the
fused native kernel ``ops.optim_step.adam_step``; AdamW is Adam with decoupled weight decay."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import no_grad
from ..ops.optim_step import adam_step
from ..nn._checks import real
from .optimizer import Optimizer, check_float, grad_array, inplace_view, nonnegative


class Adam(Optimizer):
    """``m = lerp(m, g, 1-b1); v = b2*v + (1-b2)*g*g;
    p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``, with ``g = grad + wd*p`` (Adam) or
    ``p *= 1 - lr*wd`` first (AdamW); amsgrad uses the running max of ``v``."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check_hyperparameters(self, hp, owner):
        nonnegative(hp, owner, "lr", "eps", "weight_decay")
        betas = hp["betas"]
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        hp["betas"] = tuple(real(owner, f"betas[{i}]", b, 0.0, 1.0, high_open=True)
                            for i, b in enumerate(betas))
        return hp

    def step(self):
        name = type(self).__name__
        with no_grad():
            for group in self.param_groups:
                beta1, beta2 = (float(b) for b in group["betas"])
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    check_float(p, name)
                    g = grad_array(p, name)
                    state = self.state.get(p)
                    if not state:
                        state = self.state[p] = {"step": 0, "exp_avg": np.zeros_like(g),
                                                 "exp_avg_sq": np.zeros_like(g)}
                        if group["amsgrad"]:
                            state["max_exp_avg_sq"] = np.zeros_like(g)
                    state["step"] += 1
                    with inplace_view(p) as data:
                        adam_step(data, g, state["exp_avg"], state["exp_avg_sq"],
                                  float(group["lr"]), beta1, beta2, float(group["eps"]),
                                  float(group["weight_decay"]), int(state["step"]),
                                  self._decoupled,
                                  state["max_exp_avg_sq"] if group["amsgrad"] else None)
        return None


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr*wd`` before the Adam update."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
