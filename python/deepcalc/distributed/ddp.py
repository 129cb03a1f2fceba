"""DistributedDataParallel: every rank holds the same model, runs its own part of the batch,
and the gradients are averaged over ranks during the backward pass.

Gradients travel in buckets (Horovod's tensor fusion, torch DDP's buckets): the parameters, in
reverse order of registration (roughly the order the backward pass reaches them), are cut into
groups of at most ``bucket_mb`` MiB of one dtype, each with one flat buffer.  A hook on every
parameter (``register_post_accumulate_grad_hook``) copies its gradient into its bucket's buffer;
when a bucket is full its non-blocking allreduce starts, while the backward pass goes on with
the layers below (each gradient is divided by the world size on its way into the buffer, so the
sum is the mean).  Buckets start strictly in bucket order, the same on every rank (MPI requires
collectives in one order): a bucket that fills early waits for the ones before it.  After the
first step the buckets are rebuilt in the order the gradients arrived on rank 0.  The last
gradient of the step waits for all reductions and points every ``.grad`` at its average, so
``optimizer.step()`` sees averaged gradients, as with torch's DDP.
Those ``.grad`` arrays are views of the bucket buffers (torch's ``gradient_as_bucket_view``):
the next synchronized backward overwrites them, so copy one to keep it.

BatchNorm statistics are per rank (as torch's DDP without SyncBatchNorm): each rank normalizes
with the mean and variance of its own part of the batch; with ``broadcast_buffers`` (default)
rank 0's running statistics are copied to every rank before each training forward.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from ..autodiff.graph import Tensor, is_grad_enabled
from ..nn.module import Module
from .world import _world


class _Bucket:
    """A flat buffer of one dtype and the parameters whose gradients it carries."""

    def __init__(self, members, dtype):
        self.members = members                  # [(param index, offset, size)]
        self.buffer = np.empty(sum(n for _, _, n in members), dtype)
        self.ready = 0                          # gradients copied in during this step
        self.request = None


def _plan_buckets(params, order, cap_bytes):
    """Cut the parameters, taken in ``order``, into buckets of one dtype and at most
    ``cap_bytes`` (a parameter larger than that gets a bucket of its own)."""
    buckets, members, dtype, nbytes = [], [], None, 0
    for i in order:
        p = params[i]
        size = p.data.size * p.data.itemsize
        if members and (p.dtype != dtype or nbytes + size > cap_bytes):
            buckets.append(_Bucket(members, dtype))
            members, nbytes = [], 0
        offset = sum(n for _, _, n in members)
        members.append((i, offset, p.data.size))
        dtype, nbytes = p.dtype, nbytes + size
    if members:
        buckets.append(_Bucket(members, dtype))
    return buckets


def _signature(module) -> list:
    return [[name, list(t.shape), t.dtype.str] for name, t in
            list(module.named_parameters()) + list(module.named_buffers())]


def _check_same_model(w, module) -> None:
    """Raise on every rank if some rank's parameters or buffers differ from rank 0's."""
    sigs = w.allgather_obj(_signature(module))
    for r, sig in enumerate(sigs):
        if sig == sigs[0]:
            continue
        mine, theirs = {s[0]: s for s in sigs[0]}, {s[0]: s for s in sig}
        diffs = [f"'{n}': rank 0 {tuple(mine[n][1])} {mine[n][2]}, rank {r} "
                 f"{tuple(theirs[n][1])} {theirs[n][2]}" for n in mine
                 if n in theirs and mine[n] != theirs[n]]
        diffs += [f"'{n}' only on rank 0" for n in mine if n not in theirs]
        diffs += [f"'{n}' only on rank {r}" for n in theirs if n not in mine]
        raise ValueError(f"DistributedDataParallel: the model on rank {r} differs from rank 0's: "
                         + "; ".join(diffs[:5]) + ("; ..." if len(diffs) > 5 else "")
                         + " (every rank must build the same model)")


def _broadcast_arrays(w, arrays, root=0) -> None:
    """Copy rank ``root``'s values of ``arrays`` into every rank's, one flat buffer per dtype."""
    by_dtype: dict = {}
    for a in arrays:
        by_dtype.setdefault(a.dtype, []).append(a)
    for dtype, group in by_dtype.items():
        flat = np.concatenate([a.reshape(-1) for a in group]) if len(group) > 1 \
            else np.array(group[0].reshape(-1))
        w.wait([w.ibcast(flat, root)])
        offset = 0
        for a in group:
            a[...] = flat[offset:offset + a.size].reshape(a.shape)
            offset += a.size


class DistributedDataParallel(Module):
    """Wrap ``module`` so that ``backward`` averages its gradients over all ranks.

    At construction the model's parameter and buffer shapes are compared across ranks (a
    mismatch raises on every rank) and rank 0's values are broadcast.  ``bucket_mb`` caps a
    bucket (MiB); ``overlap=False`` starts every reduction only after the whole backward (for
    measuring what overlap gains); ``check_finite`` stops with an error naming the rank and
    the parameter when a local gradient holds NaN or Inf, before it can spread to the other
    ranks.  ``comm_wait_seconds`` is the time the last step waited for its reductions.
    """

    def __init__(self, module, bucket_mb: float = 25, broadcast_buffers: bool = True,
                 overlap: bool = True, check_finite: bool = True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: module must be a Module, got "
                            f"{type(module).__name__}")
        if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)) \
                or not bucket_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_mb must be a number > 0, got "
                             f"{bucket_mb!r}")
        self.module = module
        self.bucket_mb, self.broadcast_buffers = bucket_mb, bool(broadcast_buffers)
        self.overlap, self.check_finite = bool(overlap), bool(check_finite)
        w = self._w = _world()
        _check_same_model(w, module)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        if w.size > 1:
            _broadcast_arrays(w, [p.data for p in module.parameters()] +
                              [b.data for b in module.buffers()])
        self._build(list(range(len(self._params)))[::-1])
        self._handles = [p.register_post_accumulate_grad_hook(self._hook(i))
                         for i, p in enumerate(self._params)]
        self._sync = True
        self._arrival = []          # parameter indices in the order their gradients came
        self._rebuilt = False
        self.comm_wait_seconds = 0.0

    def _build(self, order) -> None:
        self._buckets = _plan_buckets(self._params, order, self.bucket_mb * 2**20)
        self._where = {}            # param index -> (bucket index, offset, size)
        for b, bucket in enumerate(self._buckets):
            for i, off, n in bucket.members:
                self._where[i] = (b, off, n)
        self._got = [False] * len(self._params)
        self._next = 0              # the next bucket to start

    @property
    def bucket_sizes(self) -> list[int]:
        """Elements per bucket, in the order the buckets are reduced."""
        return [b.buffer.size for b in self._buckets]

    # --- the step -------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        self.synchronize()
        if self.broadcast_buffers and self.training and self._w.size > 1 and is_grad_enabled():
            bufs = [b.data for b in self.module.buffers()]
            if bufs:
                _broadcast_arrays(self._w, bufs)
        return self.module(*args, **kwargs)

    def synchronize(self) -> None:
        """Check that the last backward reduced every gradient; raise naming the parameters
        that got none (a parameter the loss does not depend on must be frozen or removed)."""
        missing = [self._names[i] for i, got in enumerate(self._got) if not got]
        if len(missing) in (0, len(self._params)):
            return
        raise RuntimeError(f"DistributedDataParallel: rank {self._w.rank}: the last backward "
                           f"gave no gradient to {missing[:8]}{' ...' if len(missing) > 8 else ''}"
                           "; its gradients were never averaged (freeze unused parameters with "
                           "requires_grad_(False) before wrapping the model)")

    @contextlib.contextmanager
    def no_sync(self):
        """Backward passes inside accumulate gradients locally, without communication; the
        first backward after it averages the accumulated sum (gradient accumulation)."""
        previous, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = previous

    def _hook(self, i):
        def hook(t):
            if self._sync:
                self._on_gradient(i, t)
        return hook

    def _on_gradient(self, i, t) -> None:
        if self._got[i]:    # the backward before gave gradients to only some parameters
            raise RuntimeError(f"DistributedDataParallel: parameter '{self._names[i]}' got a "
                               "second gradient before the first was averaged (the last "
                               "backward left other parameters without one); accumulate "
                               "inside no_sync()")
        b, off, n = self._where[i]
        bucket = self._buckets[b]
        g = t.grad.data if isinstance(t.grad, Tensor) else np.asarray(t.grad)
        # the mean is the sum of g / world size: the division rides on the copy's pass
        np.divide(g.reshape(-1), self._w.size, out=bucket.buffer[off:off + n])
        self._got[i] = True
        self._arrival.append(i)
        bucket.ready += 1
        try:
            if self.overlap:
                while self._next < len(self._buckets) and \
                        self._buckets[self._next].ready == len(self._buckets[self._next].members):
                    self._start(self._next)
                    self._next += 1
                for started in self._buckets[:self._next]:   # let MPI progress the started ones
                    if started.request is not None and started.request.Test():
                        started.request = None
            if len(self._arrival) == len(self._params):
                self._finish()
        except BaseException:
            self._reset()       # a caught error (a NaN batch skipped) leaves no half step
            raise

    def _reset(self) -> None:
        for bucket in self._buckets:
            bucket.request, bucket.ready = None, 0
        self._arrival, self._got, self._next = [], [False] * len(self._params), 0

    def _start(self, b) -> None:
        bucket = self._buckets[b]
        # one BLAS pass: NaN or Inf anywhere makes the dot product non-finite (so can overflow
        # of huge finite values, which _raise_nonfinite's exact count then clears)
        if self.check_finite and not np.isfinite(np.dot(bucket.buffer, bucket.buffer)):
            self._raise_nonfinite(bucket)
        bucket.request = self._w.iallreduce(bucket.buffer, "sum")

    def _raise_nonfinite(self, bucket) -> None:
        for i, off, n in bucket.members:
            bad = int((~np.isfinite(bucket.buffer[off:off + n])).sum())
            if bad:
                raise FloatingPointError(
                    f"DistributedDataParallel: rank {self._w.rank}: the gradient of "
                    f"'{self._names[i]}' has {bad} NaN/Inf values (of {n}); stopping before "
                    "it reaches the other ranks")

    def _finish(self) -> None:
        """Wait for every reduction, point every .grad at its average, reset for the next step."""
        while self._next < len(self._buckets):
            self._start(self._next)
            self._next += 1
        t0 = time.perf_counter()
        self._w.wait([b.request for b in self._buckets])
        self.comm_wait_seconds = time.perf_counter() - t0
        for bucket in self._buckets:
            for i, off, n in bucket.members:
                p = self._params[i]
                p.grad = Tensor(bucket.buffer[off:off + n].reshape(p.shape))
        arrival = self._arrival
        self._reset()
        if not self._rebuilt:
            self._rebuilt = True
            order = self._w.bcast_obj(arrival)
            if order != list(range(len(self._params)))[::-1]:
                self._build(order)

    def remove_hooks(self) -> None:
        """Detach from the wrapped module's parameters (the module trains alone again)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def extra_repr(self) -> str:
        return (f"world_size={self._w.size}, buckets={len(self._buckets)}, "
                f"bucket_mb={self.bucket_mb}")
