"""Curvature matrices of a model's loss as linear operators over its parameters (all, a named
subset) or its inputs: the Hessian, the generalized Gauss-Newton J^T H_out J and the empirical
Fisher (1/N) sum_i g_i g_i^T.  Nothing n x n is ever formed; ``matvec`` costs about two
forward-and-backward passes per batch (an HVP on the native kernels, forward over reverse)."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor, wrap
from ..func.functional import functional_call
from ..func.transforms import grad, hvp, jvp, vjp

BATCH_NORM_MODES = (None, "train", "eval")


class _Space:
    """The variables an operator acts on: names, shapes and offsets into one flat vector."""

    def __init__(self, named: dict):
        self.names = list(named)
        self.shapes = [tuple(named[k].shape) for k in self.names]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(int)
        self.dtype = named[self.names[0]].dtype
        self.size = int(self.offsets[-1])

    def flatten(self, d: dict, op: str) -> np.ndarray:
        missing = [k for k in self.names if k not in d]
        extra = [k for k in d if k not in self.names]
        if missing or extra:
            raise ValueError(f"{op}: the vector's names do not match the operator's variables "
                             f"(missing {missing}, unexpected {extra})")
        parts = []
        for k, s in zip(self.names, self.shapes):
            a = np.asarray(d[k].data if isinstance(d[k], Tensor) else d[k], np.float64)
            if a.shape != s:
                raise ValueError(f"{op}: entry '{k}' has shape {a.shape}, expected {s}")
            parts.append(a.ravel())
        return np.concatenate(parts)

    def unflatten(self, v: np.ndarray, dtype=None) -> dict:
        dtype = dtype or self.dtype
        return {k: wrap(np.ascontiguousarray(v[a:b].reshape(s), dtype=dtype))
                for k, s, a, b in zip(self.names, self.shapes, self.offsets[:-1],
                                      self.offsets[1:])}


def _as_batches(op, batches):
    """A list with one (x, y) batch, or the loader itself (iterated on every matvec)."""
    if isinstance(batches, (tuple, list)) and len(batches) == 2 and \
            isinstance(batches[0], (Tensor, np.ndarray)):
        x, y = batches
        return [(x if isinstance(x, Tensor) else wrap(np.asarray(x)), y)], True
    if not hasattr(batches, "__iter__"):
        raise TypeError(f"{op}: batches must be one (x, y) batch or an iterable of them, got "
                        f"{type(batches).__name__}")
    return batches, False


class CurvatureOperator:
    """What the three operators share: the variables, the batches, BatchNorm's mode, the flat /
    dict matvec and a count of matvecs.  Subclasses define ``_batch_matvec``.

    ``params``: None (every parameter), a list of parameter names (the operator is then the
    diagonal block of those names; the other parameters stay fixed), or a dict name -> Tensor
    of values to evaluate at.  ``wrt='inputs'`` makes the variables the input batch instead
    (one batch only).  ``batch_norm``: None keeps the model's own train/eval mode, 'train'
    uses the batch statistics, 'eval' the running ones (the model's mode is restored after
    every matvec).  Vectors are float64 NumPy arrays of length ``shape[0]`` (or dicts)."""

    name = "curvature"

    def __init__(self, model, loss_fn, batches, params=None, batch_norm=None, wrt="params"):
        op = type(self).__name__
        if not callable(loss_fn):
            raise TypeError(f"{op}: loss_fn must be callable, got {type(loss_fn).__name__}")
        if batch_norm not in BATCH_NORM_MODES:
            raise ValueError(f"{op}: batch_norm must be None, 'train' or 'eval', got "
                             f"{batch_norm!r}")
        if wrt not in ("params", "inputs"):
            raise ValueError(f"{op}: wrt must be 'params' or 'inputs', got {wrt!r}")
        self.model, self.loss_fn, self.batch_norm, self.wrt = model, loss_fn, batch_norm, wrt
        self._batches, single = _as_batches(op, batches)
        self._single = single
        self.n_matvecs = 0
        if wrt == "inputs":
            if not single:
                raise ValueError(f"{op}: wrt='inputs' needs one (x, y) batch, not a loader")
            self._values = {"input": self._batches[0][0]}
        else:
            self._values = self._select_params(op, params)
        self.space = _Space(self._values)
        self.shape = (self.space.size, self.space.size)

    def _select_params(self, op, params):
        own = dict(self.model.named_parameters())
        if params is None:
            return own
        if isinstance(params, dict):
            chosen = dict(params)
        else:
            if isinstance(params, str):
                params = [params]
            chosen = {}
            for k in params:
                if k not in own:
                    raise ValueError(f"{op}: unknown parameter {k!r}; the model has {list(own)}")
                chosen[k] = own[k]
        if not chosen:
            raise ValueError(f"{op}: params selects no parameter")
        for k, t in chosen.items():
            if k not in own:
                raise ValueError(f"{op}: unknown parameter {k!r}; the model has {list(own)}")
            if tuple(t.shape) != tuple(own[k].shape):
                raise ValueError(f"{op}: params['{k}'] has shape {tuple(t.shape)}, the model's "
                                 f"is {tuple(own[k].shape)}")
        return chosen

    def restrict(self, names):
        """The same operator over a subset of the parameters: its diagonal block."""
        if self.wrt != "params":
            raise ValueError(f"{type(self).__name__}.restrict: only for wrt='params'")
        sub = type(self).__new__(type(self))
        sub.__dict__.update(self.__dict__)
        sub._values = {k: self._values[k] for k in
                       self._select_params(type(self).__name__ + ".restrict", list(names))}
        sub.space = _Space(sub._values)
        sub.shape = (sub.space.size, sub.space.size)
        sub.n_matvecs = 0
        if "_cache" in sub.__dict__:      # a Hessian's kept graph is of the full variables
            sub._cache = None
        return sub

    @property
    def names(self) -> list:
        return list(self.space.names)

    def _forward(self, variables, x):
        """The model's output as a function of the variables."""
        if self.wrt == "inputs":
            return self.model(variables["input"])
        return functional_call(self.model, variables, x)

    def _check_output(self, out):
        if not np.all(np.isfinite(out)):
            raise FloatingPointError(f"{type(self).__name__}.matvec: the product has "
                                     f"{int(np.sum(~np.isfinite(out)))} non-finite entries "
                                     "(NaN or Inf in the model, the data or the vector)")
        return out

    def matvec(self, v):
        """H v for a flat vector (float64 array of length shape[0]) or a dict name -> array."""
        op = f"{type(self).__name__}.matvec"
        as_dict = isinstance(v, dict)
        flat = self.space.flatten(v, op) if as_dict else np.asarray(v, np.float64)
        if flat.shape != (self.space.size,):
            raise ValueError(f"{op}: vector of shape {flat.shape}, expected ({self.space.size},)")
        out = self._check_output(self._apply(flat))
        self.n_matvecs += 1
        return self.space.unflatten(out, np.float64) if as_dict else out

    __matmul__ = matvec

    def _apply(self, flat):
        vdict = self.space.unflatten(flat)
        total, count = np.zeros(self.space.size), 0
        mode = self.model.training
        if self.batch_norm is not None:
            self.model.train(self.batch_norm == "train")
        try:
            for x, y in self._batches:
                x = x if isinstance(x, Tensor) else wrap(np.asarray(x))
                n = int(x.shape[0])
                res = self._batch_matvec(x, y, vdict)
                total += n * self.space.flatten(res, type(self).__name__)
                count += n
        finally:
            self.model.train(mode)
        if count == 0:
            raise ValueError(f"{type(self).__name__}: the batches are empty")
        return total / count

    def to_dense(self) -> np.ndarray:
        """The whole matrix, one matvec per column (for small models and tests)."""
        n = self.space.size
        cols = [self.matvec(np.eye(1, n, j)[0]) for j in range(n)]
        return np.stack(cols, axis=1)

    def __repr__(self):
        return (f"{type(self).__name__}(n={self.space.size}, variables={self.space.names}, "
                f"batch_norm={self.batch_norm!r})")


class HessianOperator(CurvatureOperator):
    """The Hessian of the loss (averaged over the batches, weighted by batch size).

    Over a loader, each matvec is ``dc.hvp`` per batch (forward over reverse).  Over one
    batch with ``reuse_graph`` (the default), the gradient is computed once with its graph
    kept, and each matvec is one reverse pass through that graph (reverse over reverse, as
    torch's double backprop; about half the cost of forward over reverse).  The graph is
    rebuilt when any parameter, buffer or the train/eval mode has changed since it was made,
    so an operator stays right while its model trains."""

    def __init__(self, model, loss_fn, batches, params=None, batch_norm=None, wrt="params",
                 reuse_graph=True):
        super().__init__(model, loss_fn, batches, params, batch_norm, wrt)
        self.reuse_graph = bool(reuse_graph) and self._single
        self._cache = None

    def _arrays(self):
        """Every array the kept graph depends on (parameters, buffers, the variables)."""
        arrays, seen = [], set()
        for t in [*self.model.parameters(), *self.model.buffers(), *self._values.values()]:
            if id(t.data) not in seen:
                seen.add(id(t.data))
                arrays.append(t.data)
        return arrays

    def _fresh(self):
        """Whether the kept graph was built from the current mode and values (compared with
        the copies taken then; no copy is made while they agree)."""
        mode, old = self._cache[0]
        now = self._arrays()
        return mode == self.model.training and len(old) == len(now) and all(
            a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
            for a, b in zip(old, now))

    def _batch_matvec(self, x, y, vdict):
        variables = self._values

        def loss(p):
            return self.loss_fn(self._forward(p, x), y)
        if not self.reuse_graph:
            _, hv = hvp(loss, (variables,), (vdict,))
            return hv
        if self._cache is None or not self._fresh():
            _, vjp_fn = vjp(grad(loss), variables)
            state = (self.model.training, [np.array(a, copy=True) for a in self._arrays()])
            self._cache = (state, vjp_fn)
        (hv,) = self._cache[1](vdict)
        return hv


class GGNOperator(CurvatureOperator):
    """The generalized Gauss-Newton J^T H_out J, J = d output / d variables and H_out the
    Hessian of the loss in the model's output: a JVP (forward mode), an HVP of the loss in the
    output, and a VJP (reverse mode).  Positive semi-definite for a convex loss."""

    def _batch_matvec(self, x, y, vdict):
        variables = self._values
        out, jv = jvp(lambda p: self._forward(p, x), (variables,), (vdict,))
        _, hjv = hvp(lambda o: self.loss_fn(o, y), (out,), (jv,))
        _, vjp_fn = vjp(lambda p: self._forward(p, x), variables)
        (g,) = vjp_fn(hjv)
        return g


class FisherOperator(CurvatureOperator):
    """The empirical Fisher (1/N) sum_i g_i g_i^T, g_i the gradient of sample i's loss l_i
    (loss = mean_i l_i).  With L(p) the vector of per-sample losses of a batch and J_L its
    Jacobian, F v = (1/N) J_L^T (J_L v): one JVP and one VJP, no per-sample gradients held
    (deepcalc has no vmap yet).  ``loss_fn`` must accept ``reduction='none'``; its per-element
    losses are averaged over every axis but the first."""

    def _per_sample(self, p, x, y):
        try:
            losses = self.loss_fn(self._forward(p, x), y, reduction="none")
        except TypeError as e:
            raise TypeError("FisherOperator: loss_fn must accept reduction='none' to give "
                            f"per-sample losses ({e})") from e
        if losses.ndim == 0 or losses.shape[0] != x.shape[0]:
            raise ValueError(f"FisherOperator: loss_fn(..., reduction='none') returned shape "
                             f"{tuple(losses.shape)}, expected ({x.shape[0]}, ...)")
        if losses.ndim > 1:
            losses = losses.mean(axis=tuple(range(1, losses.ndim)))
        return losses

    def _batch_matvec(self, x, y, vdict):
        variables = self._values
        n = int(x.shape[0])
        _, jv = jvp(lambda p: self._per_sample(p, x, y), (variables,), (vdict,))
        _, vjp_fn = vjp(lambda p: self._per_sample(p, x, y), variables)
        (g,) = vjp_fn(jv)
        return {k: t * (1.0 / n) for k, t in g.items()}


def matvec_count(op) -> int:
    """Matvecs the operator has done (``op.n_matvecs``; 0 for a plain matrix)."""
    return int(getattr(op, "n_matvecs", 0))
