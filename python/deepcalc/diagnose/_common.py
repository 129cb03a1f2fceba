"""What the measures share: evaluating a model's loss and gradient at other weights without
touching the model (parameters, BatchNorm running statistics, random draws), grouping
parameters into layers, and the update an optimizer would make."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor, no_grad
from ..creation import default_generator
from ..func import functional_call, value_and_grad
from ..nn.module import Module


def check_model(op: str, model) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"{op}: model must be a dc.nn.Module, got {type(model).__name__}")
    if not any(True for _ in model.parameters()):
        raise ValueError(f"{op}: the model has no parameters")


def check_loss_fn(op: str, loss_fn) -> None:
    if not callable(loss_fn):
        raise TypeError(f"{op}: loss_fn must be a function (output, target) -> scalar loss, got "
                        f"{type(loss_fn).__name__}")


def check_etas(op: str, etas) -> np.ndarray:
    """Step sizes along the negative gradient: a non-empty 1-D sequence of finite numbers > 0."""
    try:
        arr = np.asarray(etas, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: etas must be a sequence of step sizes, got {etas!r}") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{op}: etas must be a non-empty list of finite step sizes > 0, got "
                         f"{arr.tolist()}")
    return arr


def _generators(model):
    gens = [default_generator()]
    for m in model.modules():
        g = getattr(m, "generator", None)
        if isinstance(g, np.random.Generator) and all(g is not h for h in gens):
            gens.append(g)
    return gens


class Frozen:
    """Evaluates ``model`` at other weights as if it were not being evaluated: the buffers
    (BatchNorm running statistics) and every random generator the model draws from (deepcalc's
    and any module's own, e.g. noisy BatchNorm's) are put back to their state at construction
    before every evaluation, so every evaluation sees the same noise, and ``restore()`` leaves the
    model and the generators exactly as they were."""

    def __init__(self, model):
        self.model = model
        self.buffers = {n: b.data.copy() for n, b in model.named_buffers()}
        self.gens = _generators(model)
        self.gen_states = [g.bit_generator.state for g in self.gens]
        self.names = [n for n, _ in model.named_parameters()]
        self.current = {n: p.data for n, p in model.named_parameters()}

    def reset(self):
        for name, b in self.model.named_buffers():
            np.copyto(b.data, self.buffers[name])
        for g, s in zip(self.gens, self.gen_states):
            g.bit_generator.state = s

    restore = reset

    def loss(self, loss_fn, x, y, weights=None) -> float:
        """L(weights) (default: the model's own), without recording a graph."""
        self.reset()
        params = {n: Tensor(w) for n, w in (weights or self.current).items()}
        with no_grad():
            value = loss_fn(functional_call(self.model, params, x), y)
        return float(_scalar("loss_fn", value))

    def loss_and_grad(self, loss_fn, x, y, weights=None):
        """(L, {name: dL/dw}) at ``weights`` (a dict name -> array; default the model's own)."""
        self.reset()
        params = {n: Tensor(w) for n, w in (weights or self.current).items()}
        value, grads = value_and_grad(
            lambda p: _scalar("loss_fn", loss_fn(functional_call(self.model, p, x), y)))(params)
        out = {}
        for n in self.names:
            g = grads.get(n)
            out[n] = np.zeros_like(params[n].data) if g is None else np.asarray(g.data)
        return float(value.data), out


def _scalar(op, value):
    if not isinstance(value, Tensor) or value.size != 1:
        raise ValueError(f"{op} must return a scalar loss Tensor, got "
                         f"{getattr(value, 'shape', type(value).__name__)}")
    return value.reshape(()) if value.ndim else value


def flat_norm(arrays) -> float:
    return float(np.sqrt(sum(float(np.vdot(a, a)) for a in arrays)))


def layer_groups(model, layers=None) -> dict[str, list[str]]:
    """Layer name -> names of its parameters, in parameter order.  Default: one layer per module
    that owns parameters directly (a Linear's weight and bias, a BatchNorm's weight and bias).
    ``layers`` may name modules (their parameters form the layer) or be a dict layer -> list of
    parameter names."""
    names = [n for n, _ in model.named_parameters()]
    if isinstance(layers, dict):
        groups = {str(k): list(v) for k, v in layers.items()}
        for k, v in groups.items():
            missing = [n for n in v if n not in names]
            if missing or not v:
                raise ValueError(f"layer {k!r}: unknown or no parameters {missing or v}; the "
                                 f"model's are {names}")
        return groups
    owners = {}
    for n in names:
        owners.setdefault(n.rpartition(".")[0], []).append(n)
    if layers is None:
        return {(k or "<root>"): v for k, v in owners.items()}
    groups = {}
    for k in layers:
        if k not in owners:
            raise ValueError(f"layer {k!r} owns no parameters; modules that do: {list(owners)}")
        groups[k] = owners[k]
    return groups


def optimizer_update(model, step, grads) -> dict[str, np.ndarray]:
    """The weights after one step from the model's weights with gradients ``grads``: ``step``
    is a learning rate (plain SGD, w - lr g) or an Optimizer over the model's parameters, whose
    step is taken on trial (parameters, gradients and optimizer state are restored after)."""
    params = dict(model.named_parameters())
    if isinstance(step, (int, float, np.integer, np.floating)) and not isinstance(step, bool):
        lr = float(step)
        if not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"the learning rate must be a finite number > 0, got {step}")
        return {n: p.data - p.data.dtype.type(lr) * grads[n] for n, p in params.items()}
    if not (callable(getattr(step, "step", None)) and callable(getattr(step, "state_dict", None))):
        raise TypeError(f"step must be a learning rate or an Optimizer, got {type(step).__name__}")
    owned = {id(p) for g in step.param_groups for p in g["params"]}
    saved_data = {n: p.data.copy() for n, p in params.items()}
    saved_grad = {n: p.grad for n, p in params.items()}
    saved_state = step.state_dict()
    try:
        for n, p in params.items():
            p.grad = Tensor(np.asarray(grads[n], p.data.dtype)) if id(p) in owned else None
        step.step()
        return {n: p.data.copy() for n, p in params.items()}
    finally:
        for n, p in params.items():
            np.copyto(p.data, saved_data[n])
            p.grad = saved_grad[n]
        step.load_state_dict(saved_state)
