"""Run under ``mpirun -n 2``: data-parallel training against one process, measured on every rank;
rank 0 writes the measurements as JSON to argv[1] and tests/test_distributed.py judges them.

Each reference is computed by each rank alone (plain deepcalc, no communication) on the whole
batch; the distributed run gives each rank half of it.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

import deepcalc as dc
from deepcalc import distributed as D
from deepcalc.nn import functional as F

STEPS, B, IN, OUT = 20, 16, 10, 5


def make_model(kind, dtype, seed=0):
    dc.manual_seed(seed)
    if kind == "mlp":
        return dc.nn.MLP([IN, 32, 32, OUT], activation="relu", dtype=dtype)
    if kind == "bn":
        return dc.nn.Sequential(dc.nn.Linear(IN, 32, dtype=dtype), dc.nn.BatchNorm1d(32, dtype=dtype),
                                dc.nn.ReLU(), dc.nn.Linear(32, OUT, dtype=dtype))
    return OutOfOrder(dtype)


class OutOfOrder(dc.nn.Module):
    """Parameters registered in an order unlike the backward's: the last layer first, and one
    layer's weight and bias apart, so buckets fill out of their order."""

    def __init__(self, dtype):
        super().__init__()
        self.head = dc.nn.Linear(32, OUT, dtype=dtype)
        self.first = dc.nn.Linear(IN, 32, dtype=dtype)
        self.middle = dc.nn.Linear(32, 32, dtype=dtype)

    def forward(self, x):
        return self.head(dc.relu(self.middle(dc.relu(self.first(x)))))


def batches(dtype, steps=STEPS):
    rng = np.random.default_rng(42)
    return [(rng.standard_normal((B, IN)).astype(dtype), rng.integers(0, OUT, B))
            for _ in range(steps)]


def optimizer(name, params):
    if name == "sgd":
        return dc.optim.SGD(params, lr=0.1, momentum=0.9)
    return dc.optim.Adam(params, lr=1e-2)


def flat(model):
    return np.concatenate([p.data.reshape(-1).astype(np.float64) for p in model.parameters()])


def loss_of(model, x, y):
    return F.cross_entropy(model(dc.tensor(x)), dc.tensor(y))


def buffers(model):
    return [b.data.copy() for b in model.buffers()]


def set_buffers(model, values):
    for b, v in zip(model.buffers(), values):
        b.data[...] = v


def reference(kind, opt_name, dtype, halves=False):
    """One process, the whole batch; ``halves``: the batch's two halves through the model
    separately (BatchNorm statistics per half, as two ranks compute them), losses averaged.
    Returns the parameters, and with ``halves`` the running statistics each rank should hold:
    rank 0's own, and rank 1's (rank 0's before the last step, updated by rank 1's half)."""
    model = make_model(kind, dtype)
    opt = optimizer(opt_name, model.parameters())
    h, rank0 = B // 2, None
    for x, y in batches(dtype):
        opt.zero_grad()
        if halves:
            if rank0 is not None:
                set_buffers(model, rank0)
            before = buffers(model)       # what the broadcast gives rank 1 at this step
            first = loss_of(model, x[:h], y[:h])
            rank0 = buffers(model)
            set_buffers(model, before)
            loss = (first + loss_of(model, x[h:], y[h:])) * 0.5
        else:
            loss = loss_of(model, x, y)
        loss.backward()
        opt.step()
    if halves:
        return flat(model), [rank0, buffers(model)]
    return flat(model)


def distributed(kind, opt_name, dtype, bucket_mb=25, overlap=True, accumulate=False):
    """Two ranks, each half the batch (``accumulate``: that half in two quarters, the first
    backward inside no_sync)."""
    r = D.rank()
    # rank 1 starts from other weights: DistributedDataParallel broadcasts rank 0's
    model = D.DistributedDataParallel(make_model(kind, dtype, seed=0 if r == 0 else 10 + r),
                                      bucket_mb=bucket_mb, overlap=overlap)
    opt = optimizer(opt_name, model.parameters())
    h, q = B // 2, B // 4
    for x, y in batches(dtype):
        x, y = x[r * h:(r + 1) * h], y[r * h:(r + 1) * h]
        opt.zero_grad()
        if accumulate:
            with model.no_sync():
                (loss_of(model, x[:q], y[:q]) * 0.5).backward()
            (loss_of(model, x[q:], y[q:]) * 0.5).backward()
        else:
            loss_of(model, x, y).backward()
        opt.step()
    return flat(model), model


def gap(a, b):
    return float(np.max(np.abs(a - b)))


def check_equivalence(out):
    for dtype in (np.float64, np.float32):
        dn = np.dtype(dtype).name
        for opt_name in ("sgd", "adam"):
            ddp, _ = distributed("mlp", opt_name, dtype)
            out[f"mlp_{opt_name}_{dn}"] = gap(ddp, reference("mlp", opt_name, dtype))
            ddp, model = distributed("bn", opt_name, dtype)
            ref, ref_buffers = reference("bn", opt_name, dtype, halves=True)
            out[f"bn_{opt_name}_{dn}"] = gap(ddp, ref)
            out[f"bn_{opt_name}_{dn}_vs_full_batch_stats"] = gap(ddp, reference("bn", opt_name,
                                                                                 dtype))
            # running statistics: rank 0's are broadcast before each training forward
            mine = buffers(model)
            out[f"bn_{opt_name}_{dn}_running_stats"] = max(
                gap(a.astype(np.float64), b.astype(np.float64))
                for a, b in zip(mine, ref_buffers[D.rank()]))


def check_buckets(out):
    ref = reference("mlp", "adam", np.float64)
    runs = {}
    for mb in (1e-4, 4e-3, 0.02, 25):
        runs[mb], model = distributed("mlp", "adam", np.float64, bucket_mb=mb)
        out[f"buckets_{mb}_count"] = len(model.bucket_sizes)
    runs["no_overlap"], _ = distributed("mlp", "adam", np.float64, bucket_mb=4e-3, overlap=False)
    out["buckets_max_gap_between_sizes"] = max(gap(v, runs[25]) for v in runs.values())
    out["buckets_gap_to_reference"] = gap(runs[25], ref)
    # out of order: registered head, first, middle; the backward reaches head, middle, first
    ddp, model = distributed("ooo", "sgd", np.float64, bucket_mb=1e-4)
    out["out_of_order_gap"] = gap(ddp, reference("ooo", "sgd", np.float64))
    names = [n for n, _ in model.module.named_parameters()]
    out["out_of_order_bucket_order"] = [names[i] for b in model._buckets for i, _, _ in b.members]
    ddp, _ = distributed("mlp", "sgd", np.float64, accumulate=True)
    out["no_sync_gap"] = gap(ddp, reference("mlp", "sgd", np.float64))


def check_collectives(out):
    r, n = D.rank(), D.world_size()
    out["world"] = [r, n]
    out["all_reduce_sum"] = D.all_reduce(np.array([1.0, 2.0]) * (r + 1)).tolist()
    out["all_reduce_mean_tensor"] = D.all_reduce(dc.tensor(np.array([r * 4.0])), "mean").data.tolist()
    out["all_reduce_max_int"] = D.all_reduce(3 + r, "max")
    out["broadcast"] = D.broadcast(np.full(3, float(r + 7)), src=1).tolist()
    out["all_gather"] = [a.tolist() for a in D.all_gather(np.array([r, 10 * r]))]
    try:
        D.all_reduce(np.zeros(2 + r))
        out["all_reduce_mismatch"] = "no error"
    except ValueError as e:
        out["all_reduce_mismatch"] = str(e)
    try:
        D.DistributedDataParallel(dc.nn.MLP([IN, 16 + r, OUT]))
        out["model_mismatch"] = "no error"
    except ValueError as e:
        out["model_mismatch"] = str(e)
    D.barrier()


def check_sampler(out):
    ds = dc.data.TensorDataset(np.arange(11.0)[:, None], np.arange(11))
    shards = {}
    for epoch in (0, 1):
        s = D.DistributedSampler(ds, seed=3)
        s.set_epoch(epoch)
        shards[epoch] = [list(map(int, x)) for x in D.all_gather(s.indices())]
    out["sampler_shards"] = shards
    dropped = D.DistributedSampler(ds, seed=3, drop_last=True)
    out["sampler_drop_last_len"] = len(dropped)


class StepLosses(dc.train.Callback):
    """Each step's loss on this rank, by epoch."""

    def __init__(self):
        self.losses = {}

    def on_step_end(self, epoch, step, loss, model):
        self.losses.setdefault(str(epoch), []).append(loss)


def fit_run(out_dir, epochs, resume=False, callbacks=()):
    dc.manual_seed(0)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, IN))
    y = rng.integers(0, OUT, 64)
    train = dc.data.DataLoader(D.DistributedSampler(dc.data.TensorDataset(x, y), seed=1),
                               batch_size=8)
    val = dc.data.DataLoader(dc.data.TensorDataset(x[:20], y[:20]), batch_size=7)
    model = dc.nn.Sequential(dc.nn.Linear(IN, 16, dtype=np.float64), dc.nn.Dropout(0.2),
                             dc.nn.ReLU(), dc.nn.Linear(16, OUT, dtype=np.float64))
    dc.manual_seed(100 + D.rank())       # each rank its own dropout masks
    opt = dc.optim.Adam(model.parameters(), lr=1e-2)
    hist = dc.train.fit(model, F.cross_entropy, opt, train, val=val, epochs=epochs,
                        checkpoint_dir=out_dir, resume=resume, progress=False, distributed=True,
                        callbacks=callbacks)
    return hist, flat(model)


def check_fit(out, tmp):
    steps = StepLosses()
    straight, straight_params = fit_run(os.path.join(tmp, "straight"), 3, callbacks=[steps])
    out["fit_step_losses"] = steps.losses
    fit_run(os.path.join(tmp, "resumed"), 2)
    resumed, resumed_params = fit_run(os.path.join(tmp, "resumed"), 3, resume=True)
    out["fit_history"] = straight.epochs
    out["fit_resume_gap"] = gap(straight_params, resumed_params)
    out["fit_resume_history_equal"] = [
        {k: v for k, v in e.items() if k != "time"} for e in resumed.epochs] == [
        {k: v for k, v in e.items() if k != "time"} for e in straight.epochs]
    out["fit_params_across_ranks"] = gap(*D.all_gather(straight_params))
    out["fit_files"] = sorted(os.listdir(os.path.join(tmp, "straight")))


def main():
    D.init()
    path, tmp = sys.argv[1], sys.argv[2]
    out = {}
    check_collectives(out)
    check_sampler(out)
    check_equivalence(out)
    check_buckets(out)
    check_fit(out, tmp)
    results = D.all_gather(np.frombuffer(json.dumps(out).encode().ljust(1 << 16), np.uint8))
    if D.rank() == 0:
        per_rank = [json.loads(bytes(a).decode().rstrip()) for a in results]
        with open(path + ".tmp", "w") as f:
            json.dump(per_rank, f)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
