"""Module, Parameter and Sequential: the PyTorch-style container API.

A Module owns Parameters (trainable Tensors), buffers (state such as running statistics) and
child Modules, found by attribute assignment.  ``state_dict`` / ``load_state_dict`` use dotted
names; loading copies values into the existing arrays so optimizers keep their references.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..autodiff.graph import TENSOR_TYPES, Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (``requires_grad=True`` by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        data = np.asarray(data)
        if data.dtype.kind != "f":
            raise TypeError(f"Parameter: expected float data, got {data.dtype}")
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


TENSOR_TYPES.add(Parameter)


class RemovableHandle:
    def __init__(self, hooks: dict, key: int):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


class Module:
    """Base class of every layer and model."""

    _hook_id = 0

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration ---------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call Module.__init__() before assigning "
                               "attributes")
        # as torch: a Tensor (or None) assigned to a buffer's name replaces the buffer; a
        # parameter's name takes only a Parameter or None (anything else would silently drop
        # it from parameters() and state_dict())
        if name in self._buffers and (value is None or (isinstance(value, Tensor)
                                                        and not isinstance(value, Parameter))):
            self._buffers[name] = value
            self.__dict__.pop(name, None)
            return
        if name in self._parameters and not (value is None or isinstance(value, Parameter)):
            raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as "
                            f"parameter '{name}' (a Parameter or None expected)")
        if name in self._parameters:  # replaced in place: parameters() keeps its order
            self._parameters[name] = value
            self.__dict__.pop(name, None)
            return
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # only reached when normal lookup fails: parameters, buffers and children (hot path)
        d = self.__dict__
        try:
            p = d["_parameters"]
            if name in p:
                return p[name]
            b = d["_buffers"]
            if name in b:
                return b[name]
            m = d["_modules"]
            if name in m:
                return m[name]
        except KeyError:  # during __init__, before the stores exist
            pass
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for d in (self._parameters, self._buffers, self._modules):
            if name in d:
                del d[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param):
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param if isinstance(param, Parameter) else Parameter(param))

    def register_buffer(self, name: str, value):
        """Non-trainable state saved in ``state_dict`` (e.g. BatchNorm running statistics)."""
        if value is not None and not isinstance(value, Tensor):
            value = Tensor(np.asarray(value))
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def add_module(self, name: str, module):
        setattr(self, name, module)

    # --- traversal --------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def _named(self, store: str, recurse: bool):
        seen = set()
        mods = self.named_modules() if recurse else [("", self)]
        for mprefix, m in mods:
            for name, t in getattr(m, store).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{mprefix}.{name}" if mprefix else name), t

    def named_parameters(self, recurse: bool = True):
        return self._named("_parameters", recurse)

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse))

    def named_buffers(self, recurse: bool = True):
        return self._named("_buffers", recurse)

    def buffers(self, recurse: bool = True):
        return (b for _, b in self.named_buffers(recurse))

    # --- modes, gradients --------------------------------------------------------------
    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag: bool = True):
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.parameters()))

    # --- state ---------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, Tensor]":
        """Dotted name -> Tensor (sharing memory with the module) for parameters and buffers."""
        out = OrderedDict()
        for mprefix, m in self.named_modules():
            for store in ("_parameters", "_buffers"):
                for name, t in getattr(m, store).items():
                    if t is not None:
                        out[f"{mprefix}.{name}" if mprefix else name] = t
        return out

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values into this module's parameters and buffers.

        With ``strict`` (the default) the keys must match exactly: the error lists the missing
        and the unexpected keys.  Shapes must always match.  Returns (missing, unexpected)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        errors = []
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = v.data if isinstance(v, Tensor) else np.asarray(v)
            if arr.shape != t.data.shape:
                errors.append(f"{k}: checkpoint has shape {arr.shape}, model has {t.data.shape}")
        if errors:
            raise ValueError(f"load_state_dict for {type(self).__name__}: shape mismatch: " +
                             "; ".join(errors))
        for k, t in own.items():
            if k in state_dict:
                v = state_dict[k]
                np.copyto(t.data, v.data if isinstance(v, Tensor) else np.asarray(v),
                          casting="same_kind")
        return missing, unexpected

    def _swap_tensors(self, values: dict) -> dict:
        """Replace named parameters/buffers by the given Tensors; return the previous ones
        (used by ``dc.func.functional_call``)."""
        previous = {}
        for name, value in values.items():
            *path, leaf = name.split(".")
            m = self
            for part in path:
                if part not in m._modules:
                    raise KeyError(f"functional_call: {type(self).__name__} has no submodule "
                                   f"'{part}' (in '{name}')")
                m = m._modules[part]
            store = m._parameters if leaf in m._parameters else \
                m._buffers if leaf in m._buffers else None
            if store is None:
                raise KeyError(f"functional_call: {type(self).__name__} has no parameter or "
                               f"buffer named '{name}'")
            previous[name] = store[leaf]
            store[leaf] = value
        return previous

    # --- calling ---------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        if self._forward_pre_hooks:
            for hook in list(self._forward_pre_hooks.values()):
                res = hook(self, args)
                if res is not None:
                    args = res if isinstance(res, tuple) else (res,)
        out = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                res = hook(self, args, out)
                if res is not None:
                    out = res
        return out

    def register_forward_hook(self, hook) -> RemovableHandle:
        """``hook(module, inputs, output)`` after every forward; a non-None return replaces the
        output.  Returns a handle whose ``remove()`` unregisters it."""
        Module._hook_id += 1
        self._forward_hooks[Module._hook_id] = hook
        return RemovableHandle(self._forward_hooks, Module._hook_id)

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """``hook(module, inputs)`` before every forward; a non-None return replaces the inputs."""
        Module._hook_id += 1
        self._forward_pre_hooks[Module._hook_id] = hook
        return RemovableHandle(self._forward_pre_hooks, Module._hook_id)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        children = list(self.named_children())
        if not children:
            return lines[0] + ")"
        for name, m in children:
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*mods[i])
        return mods[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
