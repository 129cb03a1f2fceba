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
        if name in self._modules and not (value is None or isinstance(value, Module)):
            raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as "
                            f"child module '{name}' (a Module or None expected)")
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

    def _check_name(self, what: str, name) -> None:
        """torch's rules for a registered name: a non-empty str without '.'."""
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}.{what}: name must be a str, got "
                            f"{type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{type(self).__name__}.{what}: name must be non-empty and contain no "
                           f"'.', got {name!r}")

    def register_parameter(self, name: str, param):
        self._check_name("register_parameter", name)
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param if isinstance(param, Parameter) else Parameter(param))

    def register_buffer(self, name: str, value):
        """Non-trainable state saved in ``state_dict`` (e.g. BatchNorm running statistics)."""
        self._check_name("register_buffer", name)
        if value is not None and not isinstance(value, Tensor):
            value = Tensor(np.asarray(value))
        self.__dict__.pop(name, None)
        self._buffers[name] = value

    def add_module(self, name: str, module):
        self._check_name("add_module", name)
        if module is not None:
            _check_child(f"{type(self).__name__}.add_module", f"module '{name}'", module)
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
        if not (hasattr(state_dict, "keys") and hasattr(state_dict, "__getitem__")):
            raise TypeError(f"load_state_dict for {type(self).__name__}: expected a dict of name "
                            f"-> array (from state_dict() or dc.load), got "
                            f"{type(state_dict).__name__}")
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


def _describe(obj) -> str:
    """How an error names a value that should have been a Module: its type, plus the function's
    name for functions (``function relu``), as torch's "... is not a Module subclass"."""
    name = getattr(obj, "__name__", None)
    kind = type(obj).__name__
    return f"{kind} {name}" if callable(obj) and name else f"{kind} {obj!r}"[:80]


def _check_child(owner: str, where: str, m) -> None:
    if not isinstance(m, Module):
        if isinstance(m, type) and issubclass(m, Module):
            hint = f"; pass an instance, {m.__name__}(...), not the class"
        elif callable(m):
            hint = "; wrap a function in a Module (e.g. nn.ReLU() for dc.relu)"
        else:
            hint = ""
        raise TypeError(f"{owner}: {where} is {_describe(m)}, which is not a Module subclass"
                        f"{hint}")


class _ModuleSequence(Module):
    """Children kept in order and reached by position: the shared part of Sequential and
    ModuleList.  Every child is checked to be a Module where it enters."""

    def _renumber(self, modules) -> None:
        self._modules.clear()
        for i, m in enumerate(modules):
            self._modules[str(i)] = m

    def _index(self, i: int) -> int:
        n = len(self._modules)
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"{type(self).__name__} indices must be integers or slices, got "
                            f"{type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"{type(self).__name__}: index {i} is out of range for {n} modules")
        return int(i) % n

    def __getitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            return self._of(mods[i])
        return mods[self._index(i)]

    def __setitem__(self, i, module):
        key = list(self._modules)[self._index(i)]
        _check_child(type(self).__name__, f"the module assigned to index {i}", module)
        self._modules[key] = module

    def __delitem__(self, i):
        mods = list(self._modules.values())
        if isinstance(i, slice):
            del mods[i]
        else:
            del mods[self._index(i)]
        self._renumber(mods)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        _check_child(f"{type(self).__name__}.append", "the module", module)
        self._modules[str(len(self._modules))] = module
        return self


class Sequential(_ModuleSequence):
    """Modules applied in order; ``Sequential(a, b, c)`` or ``Sequential({'name': m, ...})``."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                _check_child("Sequential", f"argument {i}", m)
                self._modules[str(i)] = m

    def _of(self, modules):
        return Sequential(*modules)

    def forward(self, x):
        mods = list(self._modules.values())
        i, n = 0, len(mods)
        while i < n:
            m = mods[i]
            if i + 1 < n and _fusable(m, mods[i + 1]):
                x = m.fuse_activation(x, mods[i + 1].fused_name)
                i += 2
            else:
                x = m(x)
                i += 1
        return x


def _fusable(m, nxt) -> bool:
    """A Linear without an activation followed by an activation module its epilogue knows,
    neither with hooks (a hook must see the unfused output)."""
    return (getattr(m, "activation", True) is None and hasattr(m, "fuse_activation")
            and getattr(nxt, "fused_name", None) is not None
            and not (m._forward_hooks or m._forward_pre_hooks or nxt._forward_hooks
                     or nxt._forward_pre_hooks))


class ModuleList(_ModuleSequence):
    """A list of Modules whose parameters are registered (no forward of its own)."""

    def __init__(self, modules=()):
        super().__init__()
        self._extend("ModuleList", modules)

    def _of(self, modules):
        return ModuleList(modules)

    def extend(self, modules):
        return self._extend("ModuleList.extend", modules)

    def _extend(self, owner: str, modules):
        if isinstance(modules, Module) and not isinstance(modules, _ModuleSequence):
            raise TypeError(f"{owner}: expected an iterable of Modules, got a single "
                            f"{type(modules).__name__}; use append")
        try:
            mods = list(modules)
        except TypeError:
            raise TypeError(f"{owner}: expected an iterable of Modules, got "
                            f"{type(modules).__name__}") from None
        for i, m in enumerate(mods):  # all checked before any is added
            _check_child(owner, f"element {i}", m)
        n = len(self._modules)
        for i, m in enumerate(mods):
            self._modules[str(n + i)] = m
        return self

    def insert(self, index: int, module) -> None:
        _check_child("ModuleList.insert", "the module", module)
        mods = list(self._modules.values())
        mods.insert(index, module)
        self._renumber(mods)

    def __iadd__(self, modules):
        return self._extend("ModuleList +=", modules)
