"""``dc.train.fit``: the training loop, with metrics, callbacks, checkpoints and exact resume.

A checkpoint (``<checkpoint_dir>/last.safetensors``, written atomically after every epoch)
holds the model, the optimizer, the scheduler, the data loader's shuffling state, deepcalc's
global generator (dropout) and the history, so ``fit(..., resume=True)`` continues exactly as
an uninterrupted run would (bit for bit on one thread).
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .autodiff.graph import Tensor, no_grad
from .creation import _RNG

CHECKPOINT_NAME = "last.safetensors"


class History:
    """Per-epoch metrics: ``history['loss']`` is the list of training losses, etc."""

    def __init__(self, epochs=None):
        self.epochs: list[dict] = list(epochs or [])

    def append(self, logs: dict):
        self.epochs.append(dict(logs))

    def __getitem__(self, key):
        return [e[key] for e in self.epochs if key in e]

    def __len__(self):
        return len(self.epochs)

    def keys(self):
        keys = []
        for e in self.epochs:
            keys.extend(k for k in e if k not in keys)
        return keys

    def best(self, key: str, mode: str = "min"):
        if mode not in ("min", "max"):
            raise ValueError(f"History.best: mode must be 'min' or 'max', got {mode!r}")
        vals = self[key]
        if not vals:
            raise KeyError(f"History.best: no metric {key!r}; have {self.keys()}")
        return min(vals) if mode == "min" else max(vals)

    def to_json(self, path=None):
        text = json.dumps({"epochs": self.epochs}, indent=2)
        if path is not None:
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        return text

    def __repr__(self):
        return f"History({len(self)} epochs, metrics={self.keys()})"


class Callback:
    """Hooks called by ``fit``; ``on_epoch_end`` may return True to stop training.

    Two per-step hooks are optional (a callback without them costs nothing per step):
    ``on_after_backward(epoch, step, model)`` runs when the gradients are in ``.grad``, before
    clipping and the optimizer step; ``on_step_end(epoch, step, loss, model)`` runs after the
    optimizer step, with the step's loss as a float."""

    def on_train_begin(self, state): ...

    def on_epoch_end(self, epoch: int, logs: dict, state) -> bool | None: ...

    def on_train_end(self, state): ...


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", patience=5, mode="min", min_delta=0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) \
                or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an integer >= 0, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta}")
        self.monitor, self.patience, self.mode, self.min_delta = monitor, patience, mode, min_delta
        self.best, self.wait, self.stopped_epoch = None, 0, None

    def on_epoch_end(self, epoch, logs, state):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: metric {self.monitor!r} not in {sorted(logs)}")
        v = logs[self.monitor]
        better = self.best is None or (v < self.best - self.min_delta if self.mode == "min"
                                       else v > self.best + self.min_delta)
        if better:
            self.best, self.wait = v, 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False


def _check_batch(x, epoch, step):
    arr = x.data if isinstance(x, Tensor) else np.asarray(x)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise FloatingPointError(f"fit: the input batch at epoch {epoch}, step {step} contains "
                                 f"NaN or Inf ({int((~np.isfinite(arr)).sum())} values)")


def _accuracy_count(out: Tensor, y) -> int | None:
    y = y.data if isinstance(y, Tensor) else np.asarray(y)
    if out.ndim == 2 and y.ndim == 1 and y.dtype.kind in "iu":
        return int((out.data.argmax(axis=1) == y).sum())
    return None


def _check_common(op: str, model, loss_fn, loaders) -> None:
    """What fit and evaluate share: a callable model and loss, loaders that are iterables
    (and, when they know their length, not empty)."""
    if not callable(model):
        raise TypeError(f"{op}: model must be a Module (callable), got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"{op}: loss_fn must be a function (output, target) -> loss, got "
                        f"{type(loss_fn).__name__}")
    for what, loader in loaders:
        if not hasattr(loader, "__iter__"):
            raise TypeError(f"{op}: the {what} loader must be an iterable of (x, y) batches "
                            f"(e.g. a DataLoader), got {type(loader).__name__}")
        if hasattr(loader, "__len__") and len(loader) == 0:
            raise ValueError(_no_batches(op, what))


def _no_batches(op: str, what: str) -> str:
    return (f"{op}: the {what} loader yielded no batches; its dataset is empty, or drop_last "
            "drops its only (partial) batch")


def evaluate(model, loss_fn, loader) -> dict:
    """Mean loss (and accuracy for integer targets) over ``loader`` in eval mode, without grad."""
    _check_common("evaluate", model, loss_fn, [("evaluation", loader)])
    return _evaluate(model, loss_fn, loader, "evaluate", "evaluation")


def _evaluate(model, loss_fn, loader, op: str, what: str, reduce=None) -> dict:
    was_training = getattr(model, "training", False)
    model.eval()
    total, n, correct = 0.0, 0, 0
    has_acc = True
    with no_grad():
        for x, y in loader:
            out = model(x)
            b = out.shape[0]
            total += float(loss_fn(out, y).item()) * b
            n += b
            c = _accuracy_count(out, y)
            has_acc = has_acc and c is not None
            correct += c or 0
    model.train(was_training)
    if reduce is not None:  # sums over every rank's samples
        total, n, correct = reduce([total, n, correct])
    if n == 0:
        raise ValueError(_no_batches(op, what))
    logs = {"loss": total / n}
    if has_acc:
        logs["accuracy"] = correct / n
    return logs


def _save_checkpoint(path, model, optimizer, scheduler, train, epoch, history, rng_ranks=None):
    from .serialization import save
    state = {
        "model": dict(model.state_dict()),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "history": history.epochs,
        "rng": _RNG.generator,
    }
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if hasattr(train, "state_dict"):
        state["loader"] = train.state_dict()
    if rng_ranks is not None:  # a distributed run: every rank's dropout generator
        state["rng_ranks"] = rng_ranks
    save(path, state)


def _load_checkpoint(path, model, optimizer, scheduler, train, rank=None):
    from .serialization import load
    state = load(path)

    def field(name, kind, what):
        if name not in state:
            raise ValueError(f"fit: checkpoint {path} has no field '{name}' to resume from")
        value = state[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"fit: checkpoint {path}: field '{name}' is a "
                             f"{type(value).__name__}, expected {what}")
        return value
    epoch = field("epoch", (int, np.integer), "an int")
    rng = field("rng", np.random.Generator, "a numpy Generator")
    history = field("history", list, "a list")
    try:
        model.load_state_dict(field("model", dict, "a dict"))
        optimizer.load_state_dict(field("optimizer", dict, "a dict"))
        if scheduler is not None and "scheduler" in state:
            scheduler.load_state_dict(field("scheduler", dict, "a dict"))
        if "loader" in state and hasattr(train, "load_state_dict"):
            train.load_state_dict(field("loader", dict, "a dict"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"fit: cannot resume from checkpoint {path}: {e}") from e
    _RNG.generator = rng
    if rank is not None:
        ranks = field("rng_ranks", list, "a list of every rank's generator")
        if rank >= len(ranks) or not isinstance(ranks[rank], np.random.Generator):
            raise ValueError(f"fit: checkpoint {path} holds generators of {len(ranks)} ranks; "
                             f"rank {rank} has none (resume with the same number of ranks)")
        _RNG.generator = ranks[rank]
    return int(epoch), History(history)


def fit(model, loss_fn, optimizer, train, val=None, epochs: int = 1, callbacks=(),
        checkpoint_dir=None, resume: bool = False, scheduler=None, progress: bool = True,
        max_grad_norm: float | None = None, distributed: bool = False,
        regularizer=None) -> History:
    """Train ``model`` for ``epochs`` passes over ``train`` (a DataLoader of (x, y) batches).

    Each step: forward, ``loss_fn(output, y)``, backward, optional gradient clipping
    (``max_grad_norm``), ``optimizer.step()``.  After each epoch: ``scheduler.step()``,
    validation metrics on ``val``, callbacks (any returning True stops training; see
    ``EarlyStopping``), and a checkpoint in ``checkpoint_dir``.  NaN/Inf in an input batch or
    in the loss stops training with a message naming the epoch and step.
    ``distributed=True`` (one process per rank, e.g. under ``mpirun``; see docs/distributed.md):
    the model is wrapped in ``dc.distributed.DistributedDataParallel`` unless it is one, the
    training loader must draw from a ``DistributedSampler`` (resharded each epoch), metrics
    are averaged over all ranks' samples, rank 0 alone shows the progress bar and writes the
    checkpoint (after a barrier), and an exception on one rank stops every rank.
    ``regularizer(model, x)`` (e.g. ``dc.regularize.JacobianRegularizer``) is a scalar penalty
    added to each step's loss before backward (called as ``regularizer(model, x, out=out)``
    with the step's output when it has ``takes_output``); its mean is logged as 'penalty'
    ('loss' stays the data loss; under ``distributed`` the penalty logged is this rank's).
    Returns the ``History`` of per-epoch metrics ('loss', 'accuracy', 'val_loss', ...)."""
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"fit: epochs must be an integer >= 0, got {epochs!r}")
    _check_common("fit", model, loss_fn, [("training", train)] +
                  ([("validation", val)] if val is not None else []))
    if not (callable(getattr(optimizer, "step", None))
            and callable(getattr(optimizer, "zero_grad", None))):
        raise TypeError(f"fit: optimizer must be an Optimizer (with step and zero_grad), got "
                        f"{type(optimizer).__name__}")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"fit: scheduler must be an LRScheduler (with step), got "
                        f"{type(scheduler).__name__}")
    if max_grad_norm is not None and (isinstance(max_grad_norm, bool) or not isinstance(
            max_grad_norm, (int, float, np.integer, np.floating)) or not max_grad_norm > 0):
        raise ValueError(f"fit: max_grad_norm must be a number > 0 or None, got "
                         f"{max_grad_norm!r}")
    if regularizer is not None and not callable(regularizer):
        raise TypeError(f"fit: regularizer must be callable as regularizer(model, x), got "
                        f"{type(regularizer).__name__}")
    if resume and not checkpoint_dir:
        raise ValueError("fit: resume=True needs the checkpoint_dir to resume from")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not all(callable(getattr(cb, hook, None))
                   for hook in ("on_train_begin", "on_epoch_end", "on_train_end")):
            raise TypeError(f"fit: callbacks[{i}] is a {type(cb).__name__}, expected a Callback "
                            "(on_train_begin, on_epoch_end, on_train_end)")
    history, start = History(), 0
    world = inner = None
    if distributed:
        from .distributed import training as dist
        model, inner, world, wrapped = dist.setup(model, train)
        progress = progress and world.rank == 0
    ckpt = os.path.join(checkpoint_dir, CHECKPOINT_NAME) if checkpoint_dir else None
    if ckpt and resume and (dist.checkpoint_exists(world, ckpt) if world else os.path.exists(ckpt)):
        start, history = _load_checkpoint(ckpt, inner or model, optimizer, scheduler, train,
                                          world.rank if world else None)
        start += 1
    if ckpt and (world is None or world.rank == 0):
        os.makedirs(checkpoint_dir, exist_ok=True)
    for cb in callbacks:
        cb.on_train_begin(locals())
    bar = None
    if progress:
        from tqdm.auto import tqdm
        per_epoch = len(train) if hasattr(train, "__len__") else None
        total = per_epoch * (epochs - start) if per_epoch is not None else None
        bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=True)
    step_hooks = ([cb.on_after_backward for cb in callbacks if hasattr(cb, "on_after_backward")],
                  [cb.on_step_end for cb in callbacks if hasattr(cb, "on_step_end")])
    reduce = None
    if world is not None:   # every gradient averaged before clipping and the step
        step_hooks[0].insert(0, lambda epoch, step, m: m.synchronize())
        reduce = lambda values: dist.sum_over_ranks(world, values)  # noqa: E731
    try:
        for epoch in range(start, epochs):
            if world is not None:
                dist.set_epoch(epoch, [train] + ([val] if val is not None else []))
            logs = _train_epoch(model, loss_fn, optimizer, train, epoch, bar, max_grad_norm,
                                step_hooks, reduce, regularizer)
            if scheduler is not None:
                scheduler.step()
            if val is not None:
                logs.update({f"val_{k}": v for k, v in
                             _evaluate(model, loss_fn, val, "fit", "validation", reduce).items()})
            logs["epoch"] = epoch
            history.append(logs)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k not in ("epoch", "time")})
            if ckpt and world is None:
                _save_checkpoint(ckpt, model, optimizer, scheduler, train, epoch, history)
            elif ckpt:
                world.barrier()
                rng_ranks = dist.rank_generators(world, _RNG.generator)
                if world.rank == 0:
                    _save_checkpoint(ckpt, inner, optimizer, scheduler, train, epoch, history,
                                     rng_ranks)
            state = locals()  # fit's variables (inside the comprehension below it would be its own)
            stop = [cb.on_epoch_end(epoch, logs, state) for cb in callbacks]
            if any(stop):
                break
    except BaseException as e:
        if world is not None:   # the other ranks stop too, naming this one
            world.report_failure(e)
        raise
    finally:
        if bar is not None:
            bar.close()
        if world is not None and wrapped:
            model.remove_hooks()
    for cb in callbacks:
        cb.on_train_end(locals())
    return history


def _train_epoch(model, loss_fn, optimizer, train, epoch, bar, max_grad_norm,
                 step_hooks=((), ()), reduce=None, regularizer=None):
    after_backward, step_end = step_hooks
    model.train()
    total, n, correct, has_acc = 0.0, 0, 0, True
    pen_total = 0.0
    t0 = time.perf_counter()
    for step, (x, y) in enumerate(train):
        _check_batch(x, epoch, step)
        out = model(x)
        loss = loss_fn(out, y)
        value = float(loss.item())
        if not math.isfinite(value):
            raise FloatingPointError(f"fit: the loss is {value} at epoch {epoch}, step {step}; "
                                     "lower the learning rate or check the data")
        optimizer.zero_grad()
        if regularizer is not None:
            penalty = regularizer(model, x, out=out) if getattr(regularizer, "takes_output",
                                                                 False) else regularizer(model, x)
            pen_value = float(penalty.item())
            if not math.isfinite(pen_value):
                raise FloatingPointError(f"fit: the regularizer's penalty is {pen_value} at epoch "
                                         f"{epoch}, step {step}")
            pen_total += pen_value * out.shape[0]
            loss = loss + penalty
        loss.backward()
        for hook in after_backward:
            hook(epoch, step, model)
        if max_grad_norm is not None:
            from .optim import clip_grad_norm_
            clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], max_grad_norm)
        optimizer.step()
        for hook in step_end:
            hook(epoch, step, value, model)
        b = out.shape[0]
        total += value * b
        n += b
        c = _accuracy_count(out, y)
        has_acc = has_acc and c is not None
        correct += c or 0
        if bar is not None:
            bar.update(1)
    if reduce is not None:  # sums over every rank's samples
        total, n, correct = reduce([total, n, correct])
    if n == 0:
        raise ValueError(_no_batches("fit", "training") + f" (epoch {epoch})")
    logs = {"loss": total / n, "time": time.perf_counter() - t0}
    if has_acc:
        logs["accuracy"] = correct / n
    if regularizer is not None:
        logs["penalty"] = pen_total / n
    return logs
