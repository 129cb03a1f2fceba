"""The Optimizer base class in the torch.optim idiom: ``param_groups`` (dicts of 'params' plus
hyperparameters), per-parameter ``state``, ``zero_grad`` and a ``state_dict`` whose structure
matches torch's (state keyed by parameter index, arrays as NumPy arrays), so checkpoints resume
bit for bit."""
from __future__ import annotations

import copy

import numpy as np

from ..autodiff.graph import Tensor
from ..nn._checks import real


class Optimizer:
    """Base of every optimizer: subclasses implement ``step()`` over ``self.param_groups``.

    ``params`` is an iterable of Tensors that require grad, or of dicts ``{'params': [...],
    **hyperparameters}``; ``defaults`` fills the hyperparameters a group does not set.
    ``state[p]`` holds the per-parameter state (NumPy arrays and a Python int ``step``).
    """

    def __init__(self, params, defaults: dict):
        name = type(self).__name__
        self.defaults = self._check_hyperparameters(dict(defaults), name)
        self.state: dict = {}
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of Tensors or of dicts, "
                            "got a single Tensor; wrap it in a list")
        if callable(getattr(params, "named_parameters", None)):
            raise TypeError(f"{name}: params is a {type(params).__name__} (a Module); pass "
                            "model.parameters()")
        if isinstance(params, (dict, set)):
            raise TypeError(f"{name}: params must be an ordered iterable of Tensors or of dicts "
                            f"(a list), got a {type(params).__name__}"
                            + ("; wrap the group in a list" if isinstance(params, dict) else ""))
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(f"{name}: params must be an iterable of Tensors or of dicts, got "
                            f"{type(params).__name__}") from None
        if not groups:
            raise ValueError(f"{name}: optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Append a group; hyperparameters it does not give come from ``defaults``."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict, got "
                            f"{type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError(f"{name}.add_param_group: the group has no 'params' entry")
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, but parameter {i} of the "
                                f"group is a {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"{name}: parameter {i} of the group (shape {p.shape}) does "
                                 "not require grad")
            if not p.is_leaf:
                raise ValueError(f"{name}: can only optimize leaf Tensors, parameter {i} of the "
                                 "group was made by an op")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        group = self._check_hyperparameters(group, f"{name} (param group "
                                                   f"{len(self.param_groups)})")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in params]
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group "
                             "(or twice in one)")
        self.param_groups.append(group)

    def _check_hyperparameters(self, hp: dict, owner: str) -> dict:
        """``hp`` (the defaults or a group) with its hyperparameters checked and normalized;
        raises naming ``owner`` and the argument.  Subclasses check their own."""
        return hp

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (``.grad = None``)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self):
        raise NotImplementedError

    # --- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """A snapshot (copies) ``{'state': {index: {...}}, 'param_groups': [{..., 'params':
        [indices]}]}``; indices number parameters in group order, as torch does."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p in self.state:
                    state[index[id(p)]] = {k: _copy_value(v) for k, v in self.state[p].items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by ``state_dict``; arrays are copied and cast
        to each parameter's dtype. Integer-like string keys ("0") are accepted for the state."""
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the saved state has {len(saved_groups)} "
                             f"parameter groups, this optimizer has {len(self.param_groups)}")
        by_index = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: saved parameter group {i} has "
                                 f"{len(saved['params'])} parameters, this optimizer's has "
                                 f"{len(group['params'])}")
            by_index.update({int(k): p for k, p in zip(saved["params"], group["params"])})
        state = {}
        for key, values in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter index {key}, "
                                 "which is in no saved parameter group")
            state[p] = {k: _restore_value(v, p, name, k) for k, v in values.items()}
        self.state = state
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            restored = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            if "betas" in restored:
                restored["betas"] = tuple(restored["betas"])
            restored["params"] = group["params"]
            new_groups.append(restored)
        self.param_groups = new_groups

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


def _copy_value(v):
    if isinstance(v, Tensor):
        v = v.data
    return np.array(v, copy=True) if isinstance(v, np.ndarray) else copy.deepcopy(v)


def _restore_value(v, p, name, key):
    if isinstance(v, Tensor):
        v = v.data
    if not isinstance(v, np.ndarray):
        return copy.deepcopy(v)
    if v.shape != p.shape:
        raise ValueError(f"{name}.load_state_dict: state '{key}' has shape {v.shape}, its "
                         f"parameter has shape {p.shape}")
    return np.array(v, dtype=p.dtype, order="C", copy=True)


# --- helpers shared by the optimizers ----------------------------------------------------
def nonnegative(hp: dict, owner: str, *keys: str) -> None:
    """Each of ``keys`` a number >= 0 (torch's rule for lr, eps, weight_decay, momentum)."""
    for key in keys:
        hp[key] = real(owner, key, hp[key], 0.0)



def grad_array(p: Tensor, name: str) -> np.ndarray:
    """p.grad as a C-contiguous array of p's dtype (a copy only when needed; never written)."""
    g = p.grad.data if isinstance(p.grad, Tensor) else np.asarray(p.grad)
    if g.shape != p.shape:
        raise ValueError(f"{name}: gradient shape {g.shape} does not match parameter shape "
                         f"{p.shape}")
    return np.ascontiguousarray(g, dtype=p.dtype)


def check_float(p: Tensor, name: str) -> None:
    if p.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: parameters must be float32 or float64, got {p.dtype}")


class inplace_view:
    """Context giving a C-contiguous writeable array for ``p.data``; when ``p.data`` is not
    contiguous the kernel works on a copy that is written back into the same array object."""

    def __init__(self, p: Tensor):
        self.p = p

    def __enter__(self) -> np.ndarray:
        d = self.p.data
        self.direct = d.flags.c_contiguous and d.flags.writeable
        self.buf = d if self.direct else np.ascontiguousarray(d)
        return self.buf

    def __exit__(self, exc_type, exc, tb):
        if not self.direct and exc_type is None:
            self.p.data[...] = self.buf
        return False
