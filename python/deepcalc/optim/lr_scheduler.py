"""Learning-rate schedulers with torch.optim.lr_scheduler semantics (chainable form): each
``step()`` advances ``last_epoch`` and rewrites every group's ``lr``; ``state_dict`` holds
everything but the optimizer (and LambdaLR's functions)."""
from __future__ import annotations

import math

from ..nn._checks import integer, real
from .optimizer import Optimizer


class LRScheduler:
    """Base: sets ``initial_lr`` on each group, remembers ``base_lrs`` and takes the initial
    step (``last_epoch`` -1 -> 0). Subclasses implement ``get_lr``."""

    _is_initial = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: {type(optimizer).__name__} is not an "
                            "Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{type(self).__name__}: param_groups[{i}] has no "
                                   "'initial_lr'; resuming with last_epoch >= 0 needs the "
                                   "optimizer state loaded first")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch (or iteration) and set each group's ``lr``."""
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list:
        """The learning rates the last ``step()`` set, one per parameter group."""
        return self._last_lr

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state_dict: dict) -> None:
        state = {k: v for k, v in state_dict.items() if k not in ("optimizer", "lr_lambdas")}
        self.__dict__.update(state)
        self.base_lrs = list(self.base_lrs)
        self._last_lr = list(self._last_lr)

    def _current(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = integer("StepLR", "step_size", step_size)
        self.gamma = real("StepLR", "gamma", gamma, 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class CosineAnnealingLR(LRScheduler):
    """``lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi t / T_max)) / 2``, applied
    recursively from the current lr as torch does (so other changes to lr compose)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = integer("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = real("CosineAnnealingLR", "eta_min", eta_min, 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, T, lo = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current()
        if self._step_count == 1 and t > 0:
            return [lo + (base - lo) * (1 + math.cos(t * math.pi / T)) / 2
                    for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for base, lr in zip(self.base_lrs, self._current())]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (lr - lo) + lo for lr in self._current()]


class LinearLR(LRScheduler):
    """Linear warmup (or decay) of the lr factor from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps, then constant."""

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        if not real("LinearLR", "start_factor", start_factor, 0.0, 1.0) > 0:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
        self.start_factor = start_factor
        self.end_factor = real("LinearLR", "end_factor", end_factor, 0.0, 1.0)
        self.total_iters = integer("LinearLR", "total_iters", total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, a, b, n = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
        if t == 0:
            return [lr * a for lr in self._current()]
        if self._is_initial or t > n:
            return self._current()
        return [lr * (1.0 + (b - a) / (n * a + (t - 1) * (b - a))) for lr in self._current()]


class LambdaLR(LRScheduler):
    """``lr = base_lr * lr_lambda(epoch)``; one function, or one per parameter group. The
    functions are not part of ``state_dict`` (recreate the scheduler, then load)."""

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"LambdaLR: {type(optimizer).__name__} is not an Optimizer")
        n = len(optimizer.param_groups)
        if isinstance(lr_lambda, (list, tuple)):
            if len(lr_lambda) != n:
                raise ValueError(f"LambdaLR: expected {n} lr_lambdas (one per parameter group), "
                                 f"got {len(lr_lambda)}")
            self.lr_lambdas = list(lr_lambda)
        else:
            self.lr_lambdas = [lr_lambda] * n
        for i, f in enumerate(self.lr_lambdas):
            if not callable(f):
                raise TypeError(f"LambdaLR: lr_lambda {i} is a {type(f).__name__}, expected a "
                                "function of the epoch")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]
