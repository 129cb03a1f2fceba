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
import math
import operator
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
        self.vmap_levels = []     # active vmap levels, innermost last (autodiff/batching.py)
        self.vmap_info = {}       # level -> (size of its mapped axis, randomness policy)


# Forward-mode level ids are unique across threads, so a tangent made in one thread can never
# be mistaken for another thread's level.
_LEVELS = itertools.count(1)


def new_level() -> int:
    return next(_LEVELS)


STATE = _State()
_EMPTY: dict = {}


class BatchedData:
    """The ``.data`` of a Tensor batched by ``vmap`` (see autodiff/batching.py): ``value`` holds
    the whole batch (the mapped axis first) at the level below, ``level`` the vmap it belongs
    to; ``shape``, ``dtype``, ``ndim`` and ``size`` are those of one slice.  Its values cannot be
    read inside the mapped function: anything else raises, naming what was asked for."""

    __slots__ = ("value", "level", "shape", "dtype", "ndim", "size")

    def __init__(self, value, level: int):
        self.value = value
        self.level = level
        shape = value.shape
        self.shape = shape[1:]
        self.dtype = value.dtype
        self.ndim = len(shape) - 1
        self.size = math.prod(self.shape)

    def _refuse(self, what):
        return RuntimeError(
            f"vmap: {what} needs the values of a batched tensor (shape {self.shape} per slice); "
            "inside vmap a function may only combine tensors with deepcalc ops, not read them "
            "(no .item(), bool(), np.asarray(), or Python control flow on values)")

    def __array__(self, *args, **kwargs):
        raise self._refuse("converting it to a NumPy array")

    def __getattr__(self, name):
        raise self._refuse(f"the array attribute .{name}")

    def __repr__(self):
        return f"<batched data of level {self.level}, slice shape {self.shape}>"


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
        if not isinstance(data, (np.ndarray, BatchedData)):
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
        if type(node) is OutputSlot:
            return node.node
        return node if isinstance(node, Node) else None

    @property
    def is_leaf(self):
        return not isinstance(self._node, (Node, OutputSlot))

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
        dtype = self.data.dtype
        if flag and dtype.char not in ("f", "d"):
            if dtype.kind == "f":
                raise TypeError(f"requires_grad_: deepcalc supports float32 and float64; "
                                f"got {dtype}")
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, "
                            f"this one is {dtype}")
        self.requires_grad = bool(flag)
        if not flag:
            self._node = None
        return self

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(self)`` each time a backward pass has added this leaf's gradient into
        ``.grad`` (torch's hook of the same name), e.g. to start an all-reduce of the gradient
        while the rest of the backward runs.  Returns a handle whose ``remove()`` unregisters it."""
        if not self.is_leaf or not self.requires_grad:
            raise RuntimeError("register_post_accumulate_grad_hook: only a leaf tensor that "
                               "requires grad accumulates a .grad; this one "
                               + ("is not a leaf" if not self.is_leaf else
                                  "does not require grad"))
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got "
                            f"{type(hook).__name__}")
        node = node_of(self)
        if node.hooks is None:
            node.hooks = {}
        key = next(_SEQ)
        node.hooks[key] = hook
        return _HookHandle(node.hooks, key)

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
        if type(self.data) is BatchedData:
            raise self.data._refuse("numpy()")
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
        if type(self.data) is BatchedData:
            return (f"BatchedTensor(level={self.data.level}, slice shape={self.shape}, "
                    f"dtype={self.dtype}, value={self.data.value!r})")
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype != np.float32:
            extra += f", dtype={self.data.dtype}"
        if not self.is_leaf:
            extra += f", grad_fn=<{self.grad_fn.prim.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __bool__(self):
        if type(self.data) is BatchedData:
            raise self.data._refuse("bool()")
        return bool(self.data)

    def __float__(self):
        if type(self.data) is BatchedData:
            raise self.data._refuse("float()")
        return float(self.data)

    def __int__(self):
        if type(self.data) is BatchedData:
            raise self.data._refuse("int()")
        return int(self.data)

    def __index__(self):
        return self.data.__index__()

    def __hash__(self):
        return id(self)


# Exact types the ops' fast paths accept without conversion (nn.Parameter registers itself).
TENSOR_TYPES = {Tensor}


def wrap(arr) -> Tensor:
    """Tensor around an ndarray (or vmap's ``BatchedData``) with no history (internal fast
    path: no copy)."""
    t = Tensor.__new__(Tensor)
    # ufuncs return NumPy scalars for 0-d inputs; .data is always an ndarray (or batched)
    t.data = arr if type(arr) is np.ndarray or type(arr) is BatchedData else np.asarray(arr)
    t.requires_grad = False
    t.grad = None
    t._node = None
    t._fw = None
    return t


# Creation order of graph nodes. A node's inputs' nodes exist before it is made (leaves' nodes
# are made just before their first consumer's), so every edge runs from a higher to a lower
# number and visiting nodes in decreasing ``seq`` is a topological order for the backward pass.
_SEQ = itertools.count()


class _HookHandle:
    """``remove()`` unregisters the hook it was returned for."""

    __slots__ = ("hooks", "key")

    def __init__(self, hooks: dict, key: int):
        self.hooks, self.key = hooks, key

    def remove(self):
        self.hooks.pop(self.key, None)


class AccumulateGrad:
    """Graph node of a leaf that requires grad: the engine adds incoming gradients to ``.grad``."""

    __slots__ = ("leaf", "retained", "seq", "hooks", "__weakref__")
    next = ()
    prim = None

    def __init__(self, leaf: Tensor):
        self.leaf = weakref.ref(leaf)
        self.retained = None
        self.seq = next(_SEQ)
        self.hooks = None  # {key: fn(tensor)}: run after each accumulation into .grad


class Node:
    """One recorded primitive application: what the VJP rule needs to run later."""

    __slots__ = ("prim", "inputs", "params", "saved", "out_data", "out_fw", "next", "retained",
                 "seq", "needs", "plain", "__weakref__")

    def needs_grad(self, i: int) -> bool:
        """Whether the VJP rule must compute input ``i``'s gradient: it requires grad and, in a
        ``grad(outputs, inputs)`` pass, leads to one of the inputs asked for (set by the engine;
        a rule may skip the others, as torch's ``needs_input_grad``)."""
        needs = self.needs
        return self.inputs[i].requires_grad if needs is None else needs[i]

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
        self.needs = None
        self.plain = False  # set by the engine: this pass records nothing (see array_rule)
        self.seq = next(_SEQ)  # after the input nodes (see _SEQ)

    @property
    def primals(self):
        """The inputs' values for an ``array_rule``: arrays in a pass that records nothing,
        else the input Tensors."""
        return tuple(map(_DATA, self.inputs)) if self.plain else self.inputs

    @property
    def result(self):
        """The output's value for an ``array_rule``: the array, or the Tensor (``out``)."""
        return self.out_data if self.plain else self.out

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

    def __repr__(self):
        return f"<{self.prim.name} node>"


class MultiNode(Node):
    """The node of a multi-output primitive: ``out_data`` and ``out_fw`` hold one entry per
    output, ``slots`` one ``OutputSlot`` per differentiable output (None for the others); the
    engine hands the VJP rule one cotangent per output (None where nothing flowed back)."""

    __slots__ = ("slots",)

    def __init__(self, prim, inputs, params, saved, outs, diff):
        Node.__init__(self, prim, inputs, params, saved, outs[0])
        self.out_data = tuple(o.data for o in outs)
        self.out_fw = tuple(o._fw for o in outs)
        # weak: a slot holds its node, so strong references back would make a cycle that keeps
        # the saved arrays alive until the cyclic collector runs
        self.slots = [None] * len(outs)
        for i in diff:
            slot = OutputSlot(self, i)
            self.slots[i] = weakref.ref(slot)
            outs[i].requires_grad = True
            outs[i]._node = slot

    def slot(self, i) -> OutputSlot:
        """The slot of differentiable output ``i`` (made anew if no tensor or consumer holds it
        any more: its ``seq`` still falls between this node and any later consumer)."""
        slot = self.slots[i]()
        if slot is None:
            slot = OutputSlot(self, i)
            self.slots[i] = weakref.ref(slot)
        return slot

    @property
    def out(self):
        raise TypeError(f"{self.prim.name} has several outputs: use ctx.outs")

    @property
    def outs(self) -> tuple:
        """The outputs, rebuilt as ``Node.out`` is (differentiable ones keep their slots)."""
        if self.out_data is None:
            raise RuntimeError(_RELEASED_MSG.format(self.prim.name))
        outs = []
        for i, (arr, fw) in enumerate(zip(self.out_data, self.out_fw)):
            t = wrap(arr)
            if self.slots[i] is not None:
                t.requires_grad = True
                t._node = self.slot(i)
                t._fw = fw
            outs.append(t)
        return tuple(outs)


class OutputSlot:
    """Graph node of output ``index`` of a multi-output ``node``: gradients reaching this output
    are summed here, then handed to the node's VJP rule with those of its other outputs.  Made
    right after its node, so ``seq`` puts it between its node and the output's consumers."""

    __slots__ = ("node", "index", "next", "retained", "seq", "__weakref__")
    prim = None

    def __init__(self, node: Node, index: int):
        self.node = node
        self.index = index
        self.next = (node,)
        self.retained = None
        self.seq = next(_SEQ)

    def __repr__(self):
        return f"<{self.node.prim.name} node, output {self.index}>"


_RELEASED_MSG = ("backward through the graph a second time ({} node): its saved tensors were "
                 "freed by the first backward; pass retain_graph=True to the first call")


def node_of(t: Tensor):
    """The graph node gradients for ``t`` flow into (created for leaves on first use)."""
    node = t._node
    if node is None:
        node = t._node = AccumulateGrad(t)
    return node


class JvpContext:
    """What a JVP rule sees: inputs and output(s) carrying only the tangents of outer levels."""

    __slots__ = ("inputs", "_out", "params", "saved")

    def __init__(self, inputs, out, params, saved):
        self.inputs = inputs
        self._out = out
        self.params = params
        self.saved = saved

    @property
    def out(self) -> Tensor:
        if type(self._out) is tuple:
            raise TypeError("this primitive has several outputs: use ctx.outs")
        return self._out

    @property
    def outs(self) -> tuple:
        return self._out


def dual(x: Tensor, t: Tensor, level: int) -> Tensor:
    """``x`` (same data, same reverse-mode node) carrying tangent ``t`` at forward ``level``
    on top of the tangents it already has."""
    d = wrap(x.data)
    if x.requires_grad:
        d.requires_grad = True
        d._node = node_of(x)
    d._fw = dict(x._fw) if x._fw else {}
    d._fw[level] = t
    return d


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


# --- vmap: a primitive with batched inputs runs its batching rule (autodiff/batching.py) ---

class BatchInfo:
    """What a batching rule sees besides its inputs: ``size`` (the mapped axis' length),
    ``batched`` (per input: carries the mapped axis first) and ``params`` (the names of array
    parameters that carry it)."""

    __slots__ = ("size", "batched", "params", "level")

    def __init__(self, size, batched, params, level):
        self.size, self.batched, self.params, self.level = size, batched, params, level

    def ndim(self, x, i: int) -> int:
        """The logical (per-slice) rank of input ``i`` given as ``x``."""
        return x.ndim - 1 if self.batched[i] else x.ndim


def _level_of(inputs, params):
    level = 0
    for t in inputs:
        d = t.data
        if type(d) is BatchedData and d.level > level:
            level = d.level
    for v in params.values():
        if type(v) is BatchedData and v.level > level:
            level = v.level
    return level


def _dispatch_batched(prim, inputs, params):
    """The batched output(s) of ``prim`` (``BatchedData``, or a tuple of them), or None when no
    input is batched at an active level (``apply`` then runs the primitive as usual)."""
    level = _level_of(inputs, params)
    if not level:
        return None
    if level not in STATE.vmap_levels:
        raise RuntimeError(f"{prim.name}: a batched tensor was used outside the vmap that made it "
                           "(a value of vmap's function escaped, e.g. into a global)")
    args, flags, size = [], [], None
    for t in inputs:
        d = t.data
        if type(d) is BatchedData and d.level == level:
            args.append(d.value)
            flags.append(True)
            size = d.value.shape[0]
        else:
            args.append(t)
            flags.append(False)
    names = []
    orig = params
    if params:
        new = {}
        for k, v in params.items():
            if type(v) is BatchedData and v.level == level:
                value = v.value.data
                if type(value) is not np.ndarray and type(value) is not BatchedData:
                    value = np.asarray(value)
                new[k] = value
                names.append(k)
                size = v.value.shape[0]
            else:
                new[k] = v
        params = new
    info = BatchInfo(size, tuple(flags), frozenset(names), level)
    rule = getattr(prim, "batch", None)
    out = NotImplemented if rule is None else rule(info, *args, **params)
    if out is NotImplemented:
        return _decompose(prim, inputs, orig, info)
    return _wrap_out(prim, out, level, size)


class _Decomposed:
    """The result of a primitive computed by its ``decompose`` on batched tensors: already
    recorded by the ops it is made of (``apply`` returns it as it is)."""
    __slots__ = ("out",)

    def __init__(self, out):
        self.out = out


def _decompose(prim, inputs, params, info):
    fn = getattr(prim, "decompose", None)
    if fn is None:
        shapes = ", ".join(f"{'batched ' if b else ''}{t.shape}"
                           for t, b in zip(inputs, info.batched))
        raise NotImplementedError(f"vmap: {prim.name} has no batching rule for inputs "
                                  f"({shapes}); file an issue with this message")
    # the original parameters: batched ones as batched arrays again (the decomposition sees
    # the logical values, as f does)
    return _Decomposed(fn(*inputs, **params))


def _wrap_out(prim, out, level, size):
    def one(o):
        if not isinstance(o, Tensor):
            o = wrap(np.asarray(o))
        if o.ndim == 0 or o.shape[0] != size:
            raise RuntimeError(f"{prim.name}: batching rule returned shape {o.shape}, expected "
                               f"the mapped axis of size {size} first")
        return BatchedData(o, level)
    if type(out) is tuple:
        return tuple(one(o) for o in out)
    return one(out)


def apply(prim, inputs, params=_EMPTY):
    """Run primitive ``prim`` on Tensors ``inputs``; record it for reverse and forward mode.
    Returns a Tensor, or a tuple of Tensors for a primitive with ``multiple_results``.  On
    NumPy arrays (an ``array_rule`` in a pass that records nothing) it returns the forward's
    array(s), recording nothing."""
    if not isinstance(inputs[0], Tensor):
        return _apply_arrays(prim, inputs, params)
    state = STATE
    saved = None
    vlevel = 0  # the vmap level this application is batched at (0: none)
    if state.vmap_levels and (result := _dispatch_batched(prim, inputs, params)) is not None:
        # inside vmap: the primitive's batching rule ran on the whole batch
        if type(result) is _Decomposed:
            return result.out
        if prim.multiple_results:
            return _apply_multi(prim, inputs, params, None, result, result[0].level)
        vlevel = result.level
    else:
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
        if prim.special:  # saves something for its rules, or has several outputs
            if prim.saves:
                result, saved = result
            if prim.multiple_results:
                return _apply_multi(prim, inputs, params, saved, result)
    out = _new_tensor(Tensor)  # wrap(), inlined: the hottest line of every op
    out.data = result if type(result) is np.ndarray else _as_data(result)
    out.grad = out._fw = None
    fw_active = state.fw_levels
    if state.grad_enabled:
        for t in inputs:
            if t.requires_grad:
                if fw_active:
                    out._fw = {}
                out.requires_grad = True
                out._node = Node(prim, inputs, params, saved, out)
                break
        else:
            out.requires_grad = False
            out._node = None
    else:
        out.requires_grad = False
        out._node = None
    if fw_active:
        _push_tangents(prim, inputs, params, saved, out, vlevel)
    return out


_new_tensor = Tensor.__new__
_DATA = operator.attrgetter("data")


def _as_data(result):
    """A forward's result as a Tensor's ``.data``: NumPy scalars become 0-d arrays; batched
    data stays as it is."""
    return result if type(result) is BatchedData else np.asarray(result)


def _apply_arrays(prim, inputs, params):
    """``apply`` on arrays: the forward alone.  A Tensor among the inputs means the caller
    mixes kinds; its values are wrapped and the op runs (and records) as usual.  NumPy
    scalars (what arithmetic on 0-d arrays returns) become 0-d arrays."""
    for x in inputs:
        if type(x) is not np.ndarray:
            if any(isinstance(x, Tensor) for x in inputs):
                return apply(prim, tuple(x if isinstance(x, Tensor) else wrap(np.asarray(x))
                                         for x in inputs), params)
            inputs = [np.asarray(x) for x in inputs]
            break
    result = prim.forward(*inputs, **params) if params else prim.forward(*inputs)
    return result[0] if prim.saves else result


def _apply_multi(prim, inputs, params, saved, result, vlevel=0):
    """``apply`` for a primitive returning several arrays: one Tensor per output; the
    differentiable ones share one node through their slots."""
    outs = tuple(wrap(r) for r in result)
    fw_active = STATE.fw_levels
    diff = prim.differentiable_outputs
    if diff is None:
        diff = range(len(outs))
    if STATE.grad_enabled and any(t.requires_grad for t in inputs):
        if fw_active:
            for i in diff:
                outs[i]._fw = {}
        MultiNode(prim, inputs, params, saved, outs, diff)  # links the differentiable outputs
    if fw_active:
        _push_tangents(prim, inputs, params, saved, outs, vlevel)
    return outs


def _push_tangents(prim, inputs, params, saved, out, vlevel=0):
    """Run the JVP rule for every active forward level at which an input carries a tangent.
    For an application batched at vmap level ``vlevel`` only the levels opened inside that
    vmap (> vlevel) are pushed here: the tangents of enclosing transforms ride on the batch's
    values and were pushed by the batching rule's own applications."""
    active = STATE.fw_levels
    levels = set()
    for t in inputs:
        if t._fw:
            levels.update(k for k in t._fw if k in active and k > vlevel)
    multi = type(out) is tuple
    outs = out if multi else (out,)
    diff = prim.differentiable_outputs if multi and prim.differentiable_outputs is not None \
        else range(len(outs))
    if not levels:
        for o in outs:
            if o._fw == {}:
                o._fw = None
        return
    for i in diff:
        if outs[i]._fw is None:
            outs[i]._fw = {}
    # Ascending: the rule for level L sees an output that already carries its tangents < L.
    for level in sorted(levels):
        tangents = [t._fw.get(level) if t._fw else None for t in inputs]
        stripped = tuple(strip_levels(o, level) for o in outs)
        ctx = JvpContext([strip_levels(t, level) for t in inputs],
                         stripped if multi else stripped[0], params, saved)
        t_out = prim.jvp(ctx, *tangents)
        if not multi:
            t_out = (t_out,)
        elif type(t_out) is not tuple or len(t_out) != len(outs):
            raise RuntimeError(f"{prim.name}: JVP rule must return a tuple of {len(outs)} "
                               f"tangents (None where an output has none)")
        for i in diff:
            t = t_out[i]
            if t is None:
                continue
            o = outs[i].data
            if t.data.shape != o.shape or t.data.dtype != o.dtype:
                raise RuntimeError(
                    f"{prim.name}: JVP rule returned a tangent of shape {t.data.shape} and dtype "
                    f"{t.data.dtype} for an output of shape {o.shape} and dtype {o.dtype}")
            outs[i]._fw[level] = t


# Every Primitive subclass, by module and class name: the test table (tests/test_registry.py) must cover them all.
REGISTRY: dict = {}


class Primitive:
    """Base of every primitive: subclasses define ``forward`` (NumPy/_core), ``vjp``, ``jvp``.

    ``forward(*arrays, **params)`` returns the output array (a tuple of arrays when
    ``multiple_results``), or ``(output, saved)`` when ``saves`` is True.

    ``vjp(ctx, g)`` returns one gradient (Tensor or None) per input; a multi-output primitive's
    rule is ``vjp(ctx, *gs)`` with one cotangent per output, None where none flowed back.  ``ctx``
    has ``inputs``, ``out`` (``outs`` for several outputs), ``params``, ``saved``.

    ``jvp(ctx, *tangents)`` returns the output tangent (a tuple of them for several outputs); the
    tangent of an input that carries none is None.  Tangents must have the output's shape and
    dtype, as gradients must have the input's.

    ``differentiable_outputs`` (indices, default all) lists the outputs autodiff follows; the
    others are returned as constants (like statistics a backward kernel reuses).  Subclasses are
    registered in ``REGISTRY``.

    ``array_rule = True`` says the VJP rule is written once for two kinds of values: Tensors
    when the backward pass records (``create_graph``, forward-mode levels) and plain NumPy
    arrays when nothing records (a plain ``backward()``), where the engine runs it on arrays and
    skips every Tensor and graph cost.  Such a rule reads its values as ``ctx.primals`` and
    ``ctx.result`` (``ctx.inputs`` only for shapes and dtypes), asks ``ctx.needs_grad(i)``,
    and uses only arithmetic operators and ops that take arrays as well (``sum_to``,
    ``broadcast_to``, ``apply`` of a primitive, methods arrays share with Tensor such as
    ``reshape``).  Other rules always get Tensors (their cotangents wrapped in a plain pass).
    """

    name = "primitive"
    saves = False
    multiple_results = False
    differentiable_outputs = None
    array_rule = False

    special = False   # saves or multiple_results: the one flag apply's common path reads

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.special = bool(cls.saves or cls.multiple_results)
        REGISTRY[f"{cls.__module__}.{cls.__qualname__}"] = cls

    def forward(self, *arrays, **params):
        raise NotImplementedError(f"{self.name}: forward")

    def vjp(self, ctx, g):
        raise NotImplementedError(f"{self.name}: no VJP rule")

    def jvp(self, ctx, *tangents):
        raise NotImplementedError(f"{self.name}: no JVP rule")

    def __call__(self, *inputs, **params):
        return apply(self, inputs, params)


class Alias(Primitive):
    """The identity, recorded: a transform (or a composite rule) differentiates with respect to
    an alias of each input so that only paths through that alias count."""
    name = "alias"

    def batch(self, info, x):
        return apply(self, (x,))

    def forward(self, x):
        return x.view()

    def vjp(self, ctx, g):
        return (g,)

    def jvp(self, ctx, t):
        return t


alias = Alias()


def watch(x: Tensor) -> Tensor:
    """An alias of ``x`` that requires grad: connected to ``x`` when reverse mode records and
    ``x`` requires grad (so gradients taken at the alias are differentiable in ``x``), a fresh
    leaf otherwise.  Forward-mode tangents of ``x`` carry over."""
    if x.requires_grad and STATE.grad_enabled:
        return apply(alias, (x,))
    y = wrap(x.data)
    y.requires_grad = True
    y._fw = dict(x._fw) if x._fw else None
    return y


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
    if STATE.vmap_levels:  # batched values go through apply (their batching rules)
        for t in tensors:
            if t is not None and type(t.data) is BatchedData:
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
