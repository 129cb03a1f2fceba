"""Reverse mode: walk the recorded graph from the outputs back, calling each node's VJP rule.

With ``create_graph=True`` the rules run with grad mode on, so the gradients are themselves
recorded and can be differentiated again, to any order.  Forward-mode tangents flow through the
rules whatever ``create_graph`` says (that is how ``jvp(grad(f))`` works).
"""
from __future__ import annotations

from operator import attrgetter

import numpy as np

from .graph import _RELEASED_MSG, STATE, AccumulateGrad, OutputSlot, Tensor, node_of, wrap


def _seq_order(roots):
    """The nodes reachable from ``roots`` in decreasing creation order (``Node.seq``), which
    puts every node after all of its consumers; each node once."""
    seen = set(roots)
    stack = list(seen)
    add, push = seen.add, stack.append
    while stack:
        for nxt in stack.pop().next:
            if nxt is not None and nxt not in seen:
                add(nxt)
                push(nxt)
    return sorted(seen, key=_SEQ, reverse=True)


_SEQ = attrgetter("seq")


def _useful(order, targets):
    """The nodes of ``order`` with a path to a target (targets included), in the same order, and
    that set.  A node's inputs come after it in ``order``, so a reverse walk sees them first.
    ``_propagate`` stops at a target with no other target upstream: its rule does not run (and
    its saved tensors are not freed), as the graph beyond it may belong to an enclosing
    computation."""
    order = list(order)
    reaches = set()   # nodes with a path to some target (targets included)
    for node in reversed(order):
        if node in targets or any(n is not None and n in reaches for n in node.next):
            reaches.add(node)
    return [n for n in order if n in reaches], reaches


def _root(arr):
    """The object that owns ``arr``'s memory (the end of its ``.base`` chain)."""
    while isinstance(arr, np.ndarray) and arr.base is not None:
        arr = arr.base
    return arr


def _own(d: np.ndarray, claimed: set) -> np.ndarray:
    """``d`` as a gradient to store in a ``.grad``: a writeable C-contiguous array that shares
    memory with nothing the user or another ``.grad`` holds. Rules may pass one gradient to
    several inputs (add), hand out views (reshape, transpose) or read-only broadcasts (sum), and
    the caller's ``grad=`` flows through unchanged: those are copied. ``claimed`` holds the ids of
    the memory owners already given out in this backward pass."""
    root = _root(d)
    if not (d.flags.writeable and d.flags.c_contiguous) or id(root) in claimed:
        d = root = np.array(d, order="C")
    claimed.add(id(root))
    return d


def _accumulate_grad(t: Tensor, g, plain: bool, claimed) -> None:
    """t.grad += g.  In a plain pass ``g`` is an array and a first gradient is stored as an
    array of its own (``_own``); otherwise ``g`` is a Tensor and the sum is recorded."""
    if plain:
        t.grad = wrap(_own(g, claimed) if t.grad is None else t.grad.data + g)
    else:
        t.grad = g if t.grad is None else t.grad + g


def run_backward(outputs, grad_outputs, inputs=None, retain_graph=False, create_graph=False,
                 allow_unused=True):
    """Propagate ``grad_outputs`` from ``outputs`` to the graph's leaves (``inputs is None``:
    accumulate into ``.grad``) or to ``inputs`` (return their gradients, touch no ``.grad``).

    A pass that records nothing (no ``create_graph``, no forward-mode level) is *plain*: the
    gradients in flight are NumPy arrays and the rules of ``array_rule`` primitives run on
    arrays; other rules get their cotangents wrapped as Tensors.  Results are Tensors."""
    # inside vmap the rules run on batched Tensors (their ops are batched in turn)
    plain = not create_graph and not STATE.fw_levels and not STATE.vmap_levels
    roots, grads = [], {}
    for out, g in zip(outputs, grad_outputs):
        if out.requires_grad:
            node = node_of(out)
            roots.append(node)
            if plain:
                g = g.data
            prev = grads.get(node)
            grads[node] = g if prev is None else prev + g
    targets, results = None, []
    if inputs is not None:
        targets, results = {}, [None] * len(inputs)
        for i, t in enumerate(inputs):
            if t.requires_grad:
                targets.setdefault(node_of(t), []).append(i)
    order, reaches = (_seq_order(roots), None) if targets is None else \
        _useful(_seq_order(roots), targets)
    # memory owners of the caller's gradients: a .grad must never alias them (see _own)
    claimed = {id(_root(g.data)) for g in grad_outputs} if plain and targets is None else None
    prev_mode = STATE.grad_enabled
    STATE.grad_enabled = create_graph
    try:
        _propagate(order, grads, targets, reaches, results, plain, claimed, retain_graph)
    finally:
        STATE.grad_enabled = prev_mode
    if plain:
        results = [None if r is None else wrap(r) for r in results]
    if inputs is not None and not allow_unused:
        for i, r in enumerate(results):
            if r is None:
                raise RuntimeError(f"grad: input {i} (shape {inputs[i].shape}) was not used to "
                                   "compute the outputs; pass allow_unused=True to get None")
    return results


def _propagate(order, grads, targets, reaches, results, plain, claimed, retain_graph):
    """Visit ``order``: each node's pending gradient (a list, one per output, for a multi-output
    node) goes to its leaf's ``.grad`` or ``results``, or through its VJP rule into the pending
    gradients of its inputs' nodes.  ``plain``: gradients are arrays, sums may be made in place."""
    pop, get = grads.pop, grads.get
    owned = set()  # nodes whose pending gradient is a sum this pass made and nobody else has seen
    for node in order:
        g = pop(node, None)
        if g is None:
            continue
        if node.retained is not None:
            t = node.retained()
            if t is not None:
                _accumulate_grad(t, g, plain, claimed)
        if targets is not None:
            # which inputs lie on a path to a target: only their gradients are needed
            needs = tuple(n is not None and n in reaches for n in node.next)
            hit = targets.get(node)
            if hit is not None:
                for i in hit:
                    results[i] = g
                if not any(needs):
                    continue  # nothing wanted lies upstream: leave the graph beyond it alone
        prim = node.prim
        if prim is None:  # a leaf's AccumulateGrad, or one output's slot of a multi-output node
            if type(node) is OutputSlot:
                parent = node.node
                pending = get(parent)
                if pending is None:
                    pending = grads[parent] = [None] * len(parent.slots)
                pending[node.index] = g
            elif targets is None:
                leaf = node.leaf()
                if leaf is not None:
                    _accumulate_grad(leaf, g, plain, claimed)
                    if node.hooks:
                        _run_hooks(leaf)
            continue
        inputs = node.inputs
        if inputs is None:
            raise RuntimeError(_RELEASED_MSG.format(prim.name))
        if targets is not None:
            node.needs = needs
        node.plain = plain
        if plain and not prim.array_rule:  # a Tensor rule: its cotangents as Tensors
            g = [None if c is None else wrap(c) for c in g] if prim.multiple_results else wrap(g)
        in_grads = prim.vjp(node, *g) if prim.multiple_results else prim.vjp(node, g)
        node.needs = None  # the graph may be walked again, for other inputs
        if len(in_grads) != len(inputs):
            raise RuntimeError(f"{prim.name}: VJP rule returned {len(in_grads)} gradients for "
                               f"{len(inputs)} inputs")
        for inp, nxt, gi in zip(inputs, node.next, in_grads):
            if nxt is None or gi is None:
                continue
            if plain:
                if type(gi) is not np.ndarray:  # a Tensor rule's result, or a NumPy scalar
                    gi = gi.data if isinstance(gi, Tensor) else np.asarray(gi)
                d = gi
            else:
                if not isinstance(gi, Tensor):  # a constant the rule computed on arrays
                    gi = wrap(gi)
                d = gi.data
            x = inp.data
            if d.shape != x.shape or (d.dtype is not x.dtype and d.dtype != x.dtype):
                _bad_gradient(prim, d, x)
            prev = get(nxt)
            if prev is None:
                grads[nxt] = gi
            elif not plain:
                grads[nxt] = prev + gi
            elif nxt in owned:
                np.add(prev, d, out=prev)
            else:
                grads[nxt] = np.add(prev, d, out=np.empty_like(d))  # an array even when 0-d
                owned.add(nxt)
        if not retain_graph:  # free what the rule needed
            node.inputs = node.saved = node.out_data = node.out_fw = None


def _run_hooks(t: Tensor) -> None:
    """A leaf's post-accumulate-grad hooks, in registration order, after its .grad changed."""
    node = t._node
    if type(node) is AccumulateGrad and node.hooks:
        for hook in list(node.hooks.values()):
            hook(t)


def _bad_gradient(prim, d, x):
    raise RuntimeError(f"{prim.name}: VJP rule returned a gradient of shape {d.shape} and dtype "
                       f"{d.dtype} for an input of shape {x.shape} and dtype {x.dtype}")


def backward(tensor: Tensor, grad=None, retain_graph=None, create_graph=False, inputs=None):
    if retain_graph is None:
        # a differentiable gradient is useless if the graph under it is freed (as in torch)
        retain_graph = create_graph
    if not tensor.requires_grad:
        raise RuntimeError("backward: this tensor does not require grad and has no grad_fn; "
                           "did you forget requires_grad=True, or compute it under no_grad()?")
    if grad is None:
        if tensor.data.size != 1:
            raise RuntimeError(f"backward: grad can be created implicitly only for a single-element "
                               f"output; this output has shape {tensor.shape}; pass grad=")
        grad = wrap(np.ones(tensor.shape, tensor.dtype))
    else:
        grad = _as_grad(grad, tensor, "backward")
    if inputs is not None:
        inputs = list(inputs)
        results = run_backward([tensor], [grad], inputs, retain_graph, create_graph)
        plain = not create_graph and not STATE.fw_levels and not STATE.vmap_levels
        claimed = {id(_root(grad.data))}
        for t, g in zip(inputs, results):
            if g is not None:
                if t.grad is not None:
                    t.grad = t.grad + g  # recorded when grad mode and t.grad allow it
                else:
                    t.grad = wrap(_own(g.data, claimed)) if plain else g
                _run_hooks(t)
        return
    run_backward([tensor], [grad], None, retain_graph, create_graph)


def _as_grad(g, like: Tensor, op: str) -> Tensor:
    if not isinstance(g, Tensor):
        g = wrap(np.asarray(g))
    if g.data.shape != like.data.shape:
        raise ValueError(f"{op}: grad has shape {g.shape} but the output has shape {like.shape}")
    if g.data.dtype != like.data.dtype:
        raise TypeError(f"{op}: grad is {g.dtype} but the output is {like.dtype}")
    return g


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=True):
    """Gradients of ``outputs`` with respect to ``inputs`` (like ``torch.autograd.grad``); returns
    a list with None for inputs the outputs do not depend on (unless ``allow_unused=False``)."""
    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    single_in = isinstance(inputs, Tensor)
    inputs = [inputs] if single_in else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    gs = []
    for o, g in zip(outputs, grad_outputs):
        if g is None:
            if o.data.size != 1:
                raise RuntimeError(f"grad: grad_outputs must be given for an output of shape "
                                   f"{o.shape} (only single-element outputs get an implicit one)")
            g = wrap(np.ones(o.shape, o.dtype))
        gs.append(_as_grad(g, o, "grad"))
    if retain_graph is None:
        retain_graph = create_graph
    return run_backward(outputs, gs, inputs, retain_graph, create_graph, allow_unused)
