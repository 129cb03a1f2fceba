"""GradientMonitor: per step and per layer, the gradient norm, weight norm and update-to-weight
ratio of every parameter, and the mean, standard deviation and dead-ReLU fraction of every
monitored module's output; a ``fit`` callback and a context manager for hand-written loops."""
from __future__ import annotations

import math

import numpy as np

from ..autodiff.graph import is_grad_enabled
from ..nn.layers import ReLU
from ..nn.module import Module
from ..train import Callback

METRICS = ("grad_norm", "weight_norm", "update_ratio", "act_mean", "act_std", "dead_fraction")


def _norm(a: np.ndarray) -> float:
    """The 2-norm of all of ``a`` (einsum: no temporary, no BLAS thread pool); NaN stays NaN."""
    flat = np.ascontiguousarray(a).reshape(-1)
    return math.sqrt(float(np.einsum("i,i", flat, flat)))


def _is_relu_output(m) -> bool:
    return isinstance(m, ReLU) or getattr(m, "activation", None) == "relu"


class GradientMonitor(Callback):
    """Records, every ``every``-th training step, for each parameter ``name``:

    * ``grad_norm/name``: ||dL/dw|| (before gradient clipping and the optimizer step);
    * ``weight_norm/name``: ||w|| before the step;
    * ``update_ratio/name``: ||w_after - w_before|| / ||w_before||;

    and for each monitored module ``m`` (default: every module without children; ``modules``
    may name others), from its output a in the step's forward pass:

    * ``act_mean/m``, ``act_std/m``: mean and standard deviation of a;
    * ``dead_fraction/m`` (modules whose output is a ReLU's, a ``ReLU`` or a ``Linear`` with
      ``activation='relu'``): the fraction of units that are 0 for every example of the batch.

    ``monitor[key]`` is the per-step series as an array, ``monitor.steps`` the global step
    numbers; ``monitor.to_dict()`` is JSON-ready.

    As a callback of ``dc.train.fit`` it uses fit's per-step hooks; after each epoch the
    epoch's mean of every series is added to that epoch's entry of the History (``log_to_history``;
    ``history['grad_norm/layer0.weight']``; the epoch's checkpoint, written before callbacks
    run, does not hold them), the per-step series stay on the monitor.  As a
    context manager around a hand-written loop (``with GradientMonitor(model) as mon:``) it
    hooks the model itself: gradients are read after each backward pass (as each parameter's
    ``.grad`` is accumulated), and a step is closed at the next forward pass of the model (or at
    the end of the block), when the update is known: one forward and one backward per step.
    Activations are taken only from forward passes with gradients enabled (not ``no_grad``
    evaluation)."""

    def __init__(self, model, every: int = 1, modules=None, log_to_history: bool = True):
        if not isinstance(model, Module):
            raise TypeError(f"GradientMonitor: model must be a dc.nn.Module, got "
                            f"{type(model).__name__}")
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"GradientMonitor: every must be an integer >= 1, got {every!r}")
        named = dict(model.named_modules())
        if modules is None:
            modules = [n for n, m in named.items() if not any(True for _ in m.children())]
        else:
            unknown = [n for n in modules if n not in named]
            if unknown:
                raise ValueError(f"GradientMonitor: no modules named {unknown}; the model has "
                                 f"{[n for n in named if n]}")
        self.model, self.every, self.log_to_history = model, int(every), bool(log_to_history)
        self.module_names = [n if n else "<root>" for n in modules]
        self._modules = {(n if n else "<root>"): named[n] for n in modules}
        self.param_names = [n for n, _ in model.named_parameters()]
        self.records: dict[str, list] = {}
        self.steps: list[int] = []
        self.epochs: list[int] = []
        self._handles = []
        self._acts: dict[str, tuple] = {}
        self._pending = None
        self._count = 0
        self._mode = None
        self._epoch_start = 0
        self._history = None

    # --- series ------------------------------------------------------------------------
    def __getitem__(self, key) -> np.ndarray:
        if key not in self.records:
            raise KeyError(f"GradientMonitor: no series {key!r}; have {sorted(self.records)}")
        vs = self.records[key]
        return np.asarray(vs + [float("nan")] * (len(self.steps) - len(vs)), dtype=np.float64)

    def keys(self):
        return sorted(self.records)

    def layers(self, metric: str) -> list[str]:
        """The parameter or module names that have a series of ``metric``."""
        if metric not in METRICS:
            raise ValueError(f"GradientMonitor.layers: metric must be one of {METRICS}, got "
                             f"{metric!r}")
        prefix = metric + "/"
        return [k[len(prefix):] for k in self.records if k.startswith(prefix)]

    def to_dict(self) -> dict:
        return {"steps": list(self.steps), "epochs": list(self.epochs),
                "series": {k: [float(v) for v in vs] for k, vs in self.records.items()}}

    # --- recording -----------------------------------------------------------------------
    def _hook_activations(self):
        for name, m in self._modules.items():
            def hook(module, inputs, out, name=name):
                if is_grad_enabled() and hasattr(out, "data"):
                    self._acts[name] = self._activation_stats(module, out.data)
            self._handles.append(m.register_forward_hook(hook))

    @staticmethod
    def _activation_stats(module, a: np.ndarray):
        """(mean, std, dead fraction or None) of a module's output: the mean summed in float64,
        the std from the centred values (two passes, no cancellation)."""
        if a.size == 0:
            return float("nan"), float("nan"), None
        dead = None
        if _is_relu_output(module) and a.ndim >= 2:
            dead = float(np.mean(~np.any(a.reshape(a.shape[0], -1), axis=0)))
        flat = a.reshape(-1)
        mean = float(np.add.reduce(flat, dtype=np.float64)) / flat.size
        return mean, _norm(flat - flat.dtype.type(mean)) / math.sqrt(flat.size), dead

    def _open(self):
        """Start the record of this step, or None when this step is not recorded."""
        self._count += 1
        if (self._count - 1) % self.every:
            return None
        return {"grad": {}, "before": {}, "acts": dict(self._acts)}

    def _capture(self, record, name, p):
        if p.grad is not None:
            record["grad"][name] = _norm(p.grad.data)
        record["before"][name] = p.data.copy()

    def _close(self, record, epoch):
        params = dict(self.model.named_parameters())
        for name in self.param_names:
            if name not in record["before"]:
                continue
            before = record["before"][name]
            nb = _norm(before)
            self._append(f"grad_norm/{name}", record["grad"].get(name, float("nan")))
            self._append(f"weight_norm/{name}", nb)
            du = _norm(params[name].data - before)
            self._append(f"update_ratio/{name}", du / nb if nb > 0 else float("nan"))
        for name, (mean, std, dead) in record["acts"].items():
            self._append(f"act_mean/{name}", mean)
            self._append(f"act_std/{name}", std)
            if dead is not None:
                self._append(f"dead_fraction/{name}", dead)
        self.steps.append(self._count - 1)
        self.epochs.append(epoch)

    def _append(self, key, value):
        series = self.records.setdefault(key, [])
        # a series that starts late (a layer first seen now) is padded, so all align with steps
        series.extend([float("nan")] * (len(self.steps) - len(series)))
        series.append(value)

    # --- fit callback ----------------------------------------------------------------------
    def on_train_begin(self, state):
        self._start("fit")
        # fit hands its locals to on_train_begin: the History the epochs are appended to
        self._history = state.get("history") if isinstance(state, dict) else None
        self._epoch_start = len(self.steps)
        self._hook_activations()

    def on_after_backward(self, epoch, step, model):
        self._pending = self._open()
        if self._pending is not None:
            for name, p in model.named_parameters():
                self._capture(self._pending, name, p)

    def on_step_end(self, epoch, step, loss, model):
        if self._pending is not None:
            self._close(self._pending, epoch)
            self._pending = None

    def on_epoch_end(self, epoch, logs, state):
        if not self.log_to_history:
            return False
        start, self._epoch_start = self._epoch_start, len(self.steps)
        summary = {}
        for key, vs in self.records.items():
            window = np.asarray(vs[start:], dtype=np.float64)
            window = window[np.isfinite(window)]
            if window.size:
                summary[key] = float(window.mean())
        logs.update(summary)
        history = self._history
        if history is not None and len(history) and history.epochs[-1].get("epoch") == epoch:
            history.epochs[-1].update(summary)
        return False

    def on_train_end(self, state):
        self._stop()

    # --- context manager -----------------------------------------------------------------------
    def __enter__(self):
        self._start("context")
        self._hook_activations()
        params = dict(self.model.named_parameters())

        def pre_forward(module, inputs):
            self._finish_pending()
        self._handles.append(self.model.register_forward_pre_hook(pre_forward))
        for name, p in params.items():
            if p.requires_grad and p.is_leaf:
                def after_grad(t, name=name):
                    if self._pending is None:
                        self._pending = self._open() or {"skip": True}
                    if "skip" not in self._pending:
                        self._capture(self._pending, name, t)
                self._handles.append(p.register_post_accumulate_grad_hook(after_grad))
        return self

    def __exit__(self, exc_type, exc, tb):
        self._finish_pending()
        self._stop()
        return False

    def _finish_pending(self):
        if self._pending is not None:
            if "skip" not in self._pending:
                self._close(self._pending, 0)
            self._pending = None

    def _start(self, mode):
        if self._mode is not None:
            raise RuntimeError(f"GradientMonitor: already recording (as a {self._mode}); one "
                               "monitor records one loop at a time")
        self._mode = mode

    def _stop(self):
        for h in self._handles:
            h.remove()
        self._handles, self._mode, self._pending = [], None, None
