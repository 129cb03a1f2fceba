"""Data-parallel scaling on this machine: the 784-256-256-10 ReLU MLP, cross-entropy, Adam, per-rank
batch 128 (weak scaling: two ranks train on 256 samples a step), float32.

Configurations, each a fresh set of processes, taking turns in every round:
    deepcalc 1 rank x 1 thread (plain model), 1 rank x 2 threads, 2 ranks x 1 thread
    (mpirun -n 2, DistributedDataParallel, default 25 MiB buckets), and 2 ranks x 1 thread with
    0.3 MiB buckets with and without overlap (the time per step spent waiting for allreduce);
    torch 1 rank x 1 thread and torch DDP over gloo, 2 ranks x 1 thread, same model and batch.
Prints samples per second (median of rounds) and per-round ratios (median [min, max]) with the
ratio of the best rounds (other work on the machine only ever slows a round down).

    python bench/python/scaling.py [--rounds 3] [--steps 150]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

SIZES = [784, 256, 256, 10]
BATCH = 128
HERE = os.path.dirname(os.path.abspath(__file__))


# --- workers: one process per rank ----------------------------------------------------------
def deepcalc_worker(args):
    import numpy as np
    import deepcalc as dc
    from deepcalc import distributed as D
    from deepcalc.nn import functional as F
    dc.set_num_threads(args.threads)
    dc.manual_seed(0)
    model = dc.nn.MLP(SIZES, activation="relu")
    if args.ddp:
        model = D.DistributedDataParallel(model, bucket_mb=args.bucket_mb,
                                          overlap=not args.no_overlap)
    rng = np.random.default_rng(D.rank())
    x = dc.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    y = dc.tensor(rng.integers(0, SIZES[-1], BATCH))
    opt = dc.optim.Adam(model.parameters(), lr=1e-3)
    waits = []

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if args.ddp:
            waits.append(model.comm_wait_seconds)
    for _ in range(args.warmup):
        step()
    waits.clear()
    D.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    D.barrier()
    seconds = time.perf_counter() - t0
    if D.rank() == 0:
        print(json.dumps({"samples_per_s": D.world_size() * BATCH * args.steps / seconds,
                          "wait_ms": 1e3 * statistics.mean(waits) if waits else 0.0,
                          "buckets": model.bucket_sizes if args.ddp else None}))


def torch_worker(args):
    import numpy as np
    import torch
    import torch.distributed as dist
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(SIZES) - 2 else [])
    model = torch.nn.Sequential(*layers)
    rank, world = 0, 1
    if args.ddp:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank,
                                world_size=world)
        model = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=args.bucket_mb)
    rng = np.random.default_rng(rank)
    x = torch.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32))
    y = torch.tensor(rng.integers(0, SIZES[-1], BATCH))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for _ in range(args.warmup):
        step()
    if args.ddp:
        dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if args.ddp:
        dist.barrier()
    seconds = time.perf_counter() - t0
    if rank == 0:
        print(json.dumps({"samples_per_s": world * BATCH * args.steps / seconds, "wait_ms": None,
                          "buckets": None}))
    if args.ddp:
        dist.destroy_process_group()


# --- the driver ---------------------------------------------------------------------------
def _mpirun():
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpirun")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(lib, ranks, threads, steps, warmup, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    me = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--threads", str(threads),
          "--steps", str(steps), "--warmup", str(warmup), *extra]
    if lib == "deepcalc":
        cmd = ([_mpirun(), "-n", str(ranks)] if ranks > 1 else []) + me + \
            (["--ddp"] if ranks > 1 else [])
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])
    if ranks == 1:
        out = subprocess.run(me, env=env, capture_output=True, text=True, timeout=600)
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])
    port = str(_free_port())
    procs = [subprocess.Popen(me + ["--ddp", "--port", port], env=dict(env, RANK=str(r),
                              WORLD_SIZE=str(ranks)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(ranks)]
    outs = [p.communicate(timeout=600) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("".join(e for _, e in outs)[-3000:])
    return json.loads(outs[0][0].strip().splitlines()[-1])


CONFIGS = {
    "deepcalc 1x1": ("deepcalc", 1, 1, ()),
    "deepcalc 1x2 threads": ("deepcalc", 1, 2, ()),
    "deepcalc 2x1": ("deepcalc", 2, 1, ()),
    "deepcalc 2x1, 0.3 MiB buckets, overlap": ("deepcalc", 2, 1, ("--bucket-mb", "0.3")),
    "deepcalc 2x1, 0.3 MiB buckets, no overlap": ("deepcalc", 2, 1, ("--bucket-mb", "0.3",
                                                                     "--no-overlap")),
    "torch 1x1": ("torch", 1, 1, ()),
    "torch DDP gloo 2x1": ("torch", 2, 1, ()),
}


def spread(results, a, b):
    """Per-round ratios of samples/s, a over b: median [min, max], and the best rounds' ratio."""
    per_round = [x["samples_per_s"] / y["samples_per_s"] for x, y in zip(results[a], results[b])]
    best = max(x["samples_per_s"] for x in results[a]) / max(y["samples_per_s"]
                                                          for y in results[b])
    return (f"{statistics.median(per_round):.2f}x [{min(per_round):.2f}, {max(per_round):.2f}]"
            f", best rounds {best:.2f}x")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--worker", choices=["deepcalc", "torch"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ddp", action="store_true")
    p.add_argument("--bucket-mb", type=float, default=25.0)
    p.add_argument("--no-overlap", action="store_true")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.worker == "deepcalc":
        return deepcalc_worker(args)
    if args.worker == "torch":
        return torch_worker(args)
    try:
        import torch  # noqa: F401
        configs = CONFIGS
    except ImportError:
        configs = {k: v for k, v in CONFIGS.items() if v[0] != "torch"}
    results = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (lib, ranks, threads, extra) in configs.items():
            time.sleep(0.3)     # the previous processes' threads are gone before this one
            results[name].append(run_config(lib, ranks, threads, args.steps, args.warmup, extra))
    print(f"784-256-256-10 MLP, Adam, float32, per-rank batch {BATCH}, {args.steps} steps, "
          f"{args.rounds} rounds")
    print(f"{'configuration':46s} {'samples/s':>10s} {'allreduce wait/step':>20s}")
    for name, rs in results.items():
        sps = statistics.median(r["samples_per_s"] for r in rs)
        wait = [r["wait_ms"] for r in rs if r["wait_ms"] is not None]
        w = f"{statistics.median(wait):.3f} ms" if wait and "deepcalc 2" in name else ""
        print(f"{name:46s} {sps:10.0f} {w:>20s}")
    print(f"deepcalc 2 ranks x 1 thread / 1 x 1:  "
          f"{spread(results, 'deepcalc 2x1', 'deepcalc 1x1')}  (target >= 1.8x)")
    print(f"deepcalc 1 rank x 2 threads / 1 x 1:  "
          f"{spread(results, 'deepcalc 1x2 threads', 'deepcalc 1x1')}")
    if "torch DDP gloo 2x1" in results:
        print(f"deepcalc 2x1 / torch DDP gloo 2x1:    "
              f"{spread(results, 'deepcalc 2x1', 'torch DDP gloo 2x1')}  (target >= 1x)")
        print(f"torch DDP 2x1 / torch 1x1:            "
              f"{spread(results, 'torch DDP gloo 2x1', 'torch 1x1')}")
        print(f"deepcalc 1x1 / torch 1x1:             "
              f"{spread(results, 'deepcalc 1x1', 'torch 1x1')}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
