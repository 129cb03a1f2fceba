"""The Tensor, the recorded graph, and `apply`: the one place where every primitive runs.

A primitive (see ``ops/``) is a forward on NumPy arrays plus a VJP rule and a JVP rule written
with deepcalc ops, so that the rules are themselves differentiable.  ``apply`` runs the forward,
then

* reverse mode: if grad mode is on and an input requires grad, records a ``Node`` holding the
  inputs; ``autodiff/engine.py`` later calls the VJP rule on it;
* forward mode: for every active forward level ``L`` at which an input carries a tangent, calls
  the JVP rule on views of the inputs that only carry tangents of levels below ``L`` (the
  enclosing transforms).  The rule's own ops are then differentiated by those outer levels, so
  nested ``jvp`` calls never confuse their perturbations, and the rule's ops are recorded by
  reverse mode, so ``grad`` of a ``jvp`` works too.
"""
from __future__ import annotations

import itertools
import threading
import weakref

import numpy as np


class _State(threading.local):
    """Autodiff mode, per thread (as torch's grad mode): grad mode, the active forward levels and
    the transform depth of one Python thread never leak into another, so threads can train
    their own models (or run transforms) side by side; a new thread starts with grad mode on
    and no transform active."""

    def __init__(self):
        self.grad_enabled = True
        self.fw_levels = []       # active forward-mode levels of this thread, innermost last
        self.transform_depth = 0  # > 0 while a function transform (grad, vjp, jvp, ...) runs f


# Forward-mode level ids are unique across threads, so a tangent made in one thread can never
# be mistaken for another thread's level.
_LEVELS = itertools.count(1)


def new_level() -> int:
    return next(_LEVELS)


STATE = _State()
_EMPTY: dict = {}


class Tensor:
    """An n-dimensional array (``.data``, a NumPy array) that autodiff can follow.

    ``requires_grad`` marks tensors whose gradient is wanted; ``.grad`` receives it after
    ``backward``.  Tensors made by ops keep the node that made them (``grad_fn``).
    """

    __slots__ = ("data", "requires_grad", "grad", "_node", "_fw", "__weakref__")
    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        if not isinstance(data, np.ndarray):
            raise TypeError(f"Tensor: expected a numpy.ndarray, got {type(data).__name__}; "
                            "use dc.tensor(...) to convert other data")
        self.data = data
        self.grad = None
        self._node = None
        self._fw = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # --- basic properties -------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    @property
    def grad_fn(self):
        node = self._node
        return node if isinstance(node, Node) else None

    @property
    def is_leaf(self):
        return not isinstance(self._node, Node)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def requires_grad_(self, flag: bool = True):
        if not self.is_leaf:
            if not flag:
                raise RuntimeError("requires_grad_: only leaf tensors can stop requiring grad; "
                                   "use .detach()")
            return self
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, "
                            f"this one is {self.data.dtype}")
        self.requires_grad = bool(flag)
        if not flag:
            self._node = None
        return self

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after ``backward`` (leaves always keep it)."""
        if self.is_leaf:
            return self
        self._node.retained = weakref.ref(self)
        return self

    def detach(self):
        """Same data, no reverse-mode history and no forward-mode tangents."""
        return Tensor(self.data)

    def numpy(self):
        return self.data

    def item(self):
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        if dtype is None or np.dtype(dtype) == self.data.dtype:
            return self.data
        if copy is False:
            raise ValueError(f"__array__: converting {self.data.dtype} to {np.dtype(dtype)} "
                             "needs a copy but copy=False was given")
        return self.data.astype(dtype)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype != np.float32:
            extra += f", dtype={self.data.dtype}"
        if isinstance(self._node, Node):
            extra += f", grad_fn=<{self._node.prim.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.data)

    def __int__(self):
        return int(self.data)

    def __index__(self):
        return self.data.__index__()

    def __hash__(self):
        return id(self)


# Exact types the ops' fast paths accept without conversion (nn.Parameter registers itself).
TENSOR_TYPES = {Tensor}


def wrap(arr) -> Tensor:
    """Tensor around an ndarray with no history (internal fast path: no copy)."""
    t = Tensor.__new__(Tensor)
    # ufuncs return NumPy scalars for 0-d inputs; .data is always an ndarray
    t.data = arr if type(arr) is np.ndarray else np.asarray(arr)
    t.requires_grad = False
    t.grad = None
    t._node = None
    t._fw = None
    return t


# Creation order of graph nodes. A node's inputs' nodes exist before it is made (leaves' nodes
# are made just before their first consumer's), so every edge runs from a higher to a lower
# number and visiting nodes in decreasing ``seq`` is a topological order for the backward pass.
_SEQ = itertools.count()


class AccumulateGrad:
    """Graph node of a leaf that requires grad: the engine adds incoming gradients to ``.grad``."""

    __slots__ = ("leaf", "retained", "seq", "__weakref__")
    next = ()
    prim = None

    def __init__(self, leaf: Tensor):
        self.leaf = weakref.ref(leaf)
        self.retained = None
        self.seq = next(_SEQ)


class Node:
    """One recorded primitive application: what the VJP rule needs to run later."""

    __slots__ = ("prim", "inputs", "params", "saved", "out_data", "out_fw", "next", "retained",
                 "seq", "__weakref__")

    def __init__(self, prim, inputs, params, saved, out):
        self.prim = prim
        self.inputs = inputs
        self.params = params
        self.saved = saved
        self.out_data = out.data
        self.out_fw = out._fw
        nxt = []
        for t in inputs:
            if t.requires_grad:
                node = t._node
                nxt.append(node if node is not None else node_of(t))
            else:
                nxt.append(None)
        self.next = nxt
        self.retained = None
        self.seq = next(_SEQ)  # after the input nodes (see _SEQ)

    @property
    def out(self) -> Tensor:
        """The output, rebuilt around the saved array (the node does not keep the output Tensor
        alive, which would make a reference cycle); it shares this node, so rules that use it
        stay differentiable."""
        if self.out_data is None:
            raise RuntimeError(_RELEASED_MSG.format(self.prim.name))
        t = wrap(self.out_data)
        t.requires_grad = True
        t._node = self
        t._fw = self.out_fw
        return t

    def release(self):
        self.inputs = None
        self.saved = None
        self.out_data = None
        self.out_fw = None

    def __repr__(self):
        return f"<{self.prim.name} node>"


_RELEASED_MSG = ("backward through the graph a second time ({} node): its saved tensors were "
                 "freed by the first backward; pass retain_graph=True to the first call")


def node_of(t: Tensor):
    """The graph node gradients for ``t`` flow into (created for leaves on first use)."""
    node = t._node
    if node is None:
        node = t._node = AccumulateGrad(t)
    return node


class JvpContext:
    """What a JVP rule sees: inputs and output carrying only the tangents of outer levels."""

    __slots__ = ("inputs", "out", "params", "saved")

    def __init__(self, inputs, out, params, saved):
        self.inputs = inputs
        self.out = out
        self.params = params
        self.saved = saved


def strip_levels(t: Tensor, level: int) -> Tensor:
    """A view of ``t`` sharing data and reverse-mode history, with tangents below ``level`` only."""
    fw = t._fw
    if not fw:
        return t
    v = wrap(t.data)
    if t.requires_grad:
        v.requires_grad = True
        v._node = node_of(t)
    low = {k: tan for k, tan in fw.items() if k < level}
    v._fw = low or None
    return v


def apply(prim, inputs, params=_EMPTY):
    """Run primitive ``prim`` on Tensors ``inputs``; record it for reverse and forward mode."""
    n = len(inputs)
    if params:
        result = (prim.forward(inputs[0].data, **params) if n == 1
                  else prim.forward(*[t.data for t in inputs], **params))
    elif n == 1:  # without ** (unpacking even an empty dict costs ~0.1 us a call)
        result = prim.forward(inputs[0].data)
    elif n == 2:
        result = prim.forward(inputs[0].data, inputs[1].data)
    else:
        result = prim.forward(*[t.data for t in inputs])
    saved = None
    if prim.saves:
        result, saved = result
    out = wrap(result)
    fw_active = STATE.fw_levels
    if STATE.grad_enabled:
        for t in inputs:
            if t.requires_grad:
                if fw_active:
                    out._fw = {}
                out.requires_grad = True
                out._node = Node(prim, inputs, params, saved, out)
                break
    if fw_active:
        _push_tangents(prim, inputs, params, saved, out)
    return out


def _push_tangents(prim, inputs, params, saved, out):
    active = STATE.fw_levels
    levels = set()
    for t in inputs:
        if t._fw:
            levels.update(k for k in t._fw if k in active)
    if not levels:
        if out._fw == {}:
            out._fw = None
        return
    if out._fw is None:
        out._fw = {}
    # Ascending: the rule for level L sees an output that already carries its tangents < L.
    for level in sorted(levels):
        tangents = [t._fw.get(level) if t._fw else None for t in inputs]
        ctx = JvpContext([strip_levels(t, level) for t in inputs], strip_levels(out, level),
                         params, saved)
        t_out = prim.jvp(ctx, *tangents)
        if t_out is None:
            continue
        if t_out.data.shape != out.data.shape:
            from ..ops.shape import broadcast_to
            t_out = broadcast_to(t_out, out.data.shape)
        out._fw[level] = t_out


class Primitive:
    """Base of every primitive: subclasses define ``forward`` (NumPy/_core), ``vjp``, ``jvp``.

    ``forward(*arrays, **params)`` returns the output array, or ``(output, saved)`` when
    ``saves`` is True.  ``vjp(ctx, g)`` returns one gradient (Tensor or None) per input;
    ``ctx`` has ``inputs``, ``out``, ``params``, ``saved``.  ``jvp(ctx, *tangents)`` returns the
    output tangent; a tangent of an input that carries none is None.
    """

    name = "primitive"
    saves = False

    def forward(self, *arrays, **params):
        raise NotImplementedError(f"{self.name}: forward")

    def vjp(self, ctx, g):
        raise NotImplementedError(f"{self.name}: no VJP rule")

    def jvp(self, ctx, *tangents):
        raise NotImplementedError(f"{self.name}: no JVP rule")

    def __call__(self, *inputs, **params):
        return apply(self, inputs, params)


def needs_graph(*tensors) -> bool:
    """True when ops on ``tensors`` would be recorded (reverse or forward mode), i.e. when a
    rule must use differentiable ops instead of a fused kernel that returns plain arrays."""
    if STATE.grad_enabled:
        for t in tensors:
            if t is not None and t.requires_grad:
                return True
    if STATE.fw_levels:
        for t in tensors:
            if t is not None and t._fw:
                return True
    return False


class no_grad:
    """Context manager / decorator: ops inside record no reverse-mode graph."""

    def __enter__(self):
        self.prev = STATE.grad_enabled
        STATE.grad_enabled = False

    def __exit__(self, *exc):
        STATE.grad_enabled = self.prev

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with no_grad():
                return fn(*a, **k)
        return wrapper


class enable_grad(no_grad):
    """Context manager: turn reverse-mode recording back on (e.g. inside ``no_grad``)."""

    def __enter__(self):
        self.prev = STATE.grad_enabled
        STATE.grad_enabled = True


class set_grad_enabled(no_grad):
    def __init__(self, mode: bool):
        self.mode = bool(mode)

    def __enter__(self):
        self.prev = STATE.grad_enabled
        STATE.grad_enabled = self.mode


def is_grad_enabled() -> bool:
    return STATE.grad_enabled


def in_transform() -> bool:
    """True while ``f`` is being evaluated by a function transform (grad, vjp, jvp, jacrev,
    jacfwd, hessian, hvp).  Layers use it to leave their running state (BatchNorm statistics)
    untouched, since a transform may evaluate ``f`` many times."""
    return STATE.transform_depth > 0


class _TransformScope:
    def __enter__(self):
        STATE.transform_depth += 1

    def __exit__(self, *exc):
        STATE.transform_depth -= 1


transform_scope = _TransformScope()
