"""Random draws under transforms that evaluate a function several times (``jacfwd`` evaluates
f once per input element, ``hessian`` through it).  Every layer that draws random numbers
(Dropout, noisy BatchNorm) draws through ``draw``, and the innermost transform's policy says
what the repeated evaluations see (torch.func's ``randomness`` argument is the model):

* ``'same'`` (deepcalc's default): one set of draws per transform call; every evaluation after
  the first replays the first evaluation's draws, so the Jacobian is that of one function;
* ``'different'``: each evaluation draws afresh (columns of the Jacobian see different masks);
* ``'error'``: drawing inside the transform raises.

The policy is per thread, like the rest of the autodiff state.
"""
from __future__ import annotations

import threading

POLICIES = ("error", "different", "same")


class _Scope:
    def __init__(self, policy: str, transform: str, parent):
        self.policy, self.transform, self.parent = policy, transform, parent
        self.recorded = []      # the first evaluation's draws, in order ('same')
        self.evaluation = 0
        self.cursor = 0

    def next_evaluation(self):
        """Mark the start of one evaluation of f (call before each)."""
        if self.evaluation and self.policy == "same" and self.cursor != len(self.recorded):
            raise RuntimeError(f"{self.transform}: randomness='same' needs every evaluation of f "
                               f"to draw the same random arrays; evaluation {self.evaluation} "
                               f"drew {self.cursor}, the first {len(self.recorded)}")
        self.evaluation += 1
        self.cursor = 0

    def draw(self, op: str, sample):
        if self.policy == "error":
            raise RuntimeError(f"{op}: random numbers drawn inside {self.transform} with "
                               "randomness='error'; pass randomness='same' (one draw for every "
                               "evaluation) or 'different', or put the layer in eval mode")
        parent_sample = (lambda: self.parent.draw(op, sample)) if self.parent else sample
        if self.policy == "different":
            return parent_sample()
        if self.evaluation <= 1:
            value = parent_sample()
            self.recorded.append(value)
            self.cursor += 1
            return value
        if self.cursor >= len(self.recorded):
            raise RuntimeError(f"{op}: {self.transform} with randomness='same': evaluation "
                               f"{self.evaluation} of f draws more random arrays than the first "
                               f"({len(self.recorded)})")
        value = self.recorded[self.cursor]
        self.cursor += 1
        return value


class _Local(threading.local):
    scope = None


_LOCAL = _Local()


def check_policy(transform: str, policy) -> str:
    if policy not in POLICIES:
        raise ValueError(f"{transform}: randomness must be one of {POLICIES}, got {policy!r}")
    return policy


class random_scope:
    """``with random_scope(policy, 'jacfwd') as scope:`` around the evaluations of one transform
    call; ``scope.next_evaluation()`` before each."""

    def __init__(self, policy: str, transform: str):
        self.policy, self.transform = check_policy(transform, policy), transform

    def __enter__(self):
        self.prev = _LOCAL.scope
        _LOCAL.scope = _Scope(self.policy, self.transform, self.prev)
        return _LOCAL.scope

    def __exit__(self, *exc):
        _LOCAL.scope = self.prev


def draw(op: str, sample):
    """``sample()`` (a function returning an array of random numbers), or what the innermost
    transform's randomness policy gives in its place."""
    scope = _LOCAL.scope
    return sample() if scope is None else scope.draw(op, sample)


def draw_tensor(op: str, sample):
    """A Tensor of random numbers from ``sample(lead)`` (an array of shape ``lead`` + the slice
    shape, or a tuple of such arrays: then a tuple of Tensors), as ``draw`` gives, and under
    ``vmap`` as its ``randomness`` says: 'error' raises, 'same' draws one slice for the whole
    batch, 'different' one per slice (a batched Tensor)."""
    from .batching import batched
    from .graph import STATE, wrap

    def tensors(value, levels=()):
        if isinstance(value, tuple):
            return tuple(tensors(v, levels) for v in value)
        t = wrap(value)
        for level in levels:  # outermost first: each level's value is the next outer one's
            t = batched(t, level)
        return t
    levels = STATE.vmap_levels
    if not levels:
        return tensors(draw(op, lambda: sample(())))
    info = STATE.vmap_info
    for level in levels:
        if info[level][1] == "error":
            raise RuntimeError(f"{op}: random numbers drawn inside vmap with randomness='error'; "
                               "pass randomness='different' (fresh numbers for each slice) or "
                               "'same' (one draw shared by every slice), or put the layer in "
                               "eval mode")
    different = [level for level in levels if info[level][1] == "different"]
    return tensors(draw(op, lambda: sample(tuple(info[level][0] for level in different))),
                   different)
