"""Alpha and beta of the ring-allreduce cost model, measured on this machine, and the scaling
efficiency they predict for 1 to 1024 ranks (docs/distributed.md explains the model).

    python bench/python/allreduce_cost.py [--json out.json]      # launches mpirun -n 2 itself
    python bench/python/allreduce_cost.py --alpha-us 5 --beta-ns 0.08   # a network's figures
                                                                        # instead of measuring

Step 1 (two ranks over MPI's shared-memory loopback): the median time of a float32 allreduce of
n bytes, n from 8 B to 16 MiB, through the path DistributedDataParallel takes (Iallreduce and
dc.distributed's polling wait); alpha and beta from a least-squares fit of
T(n, 2) = 2 alpha + n beta.  Step 2: one training step of the 784-256-256-10 MLP at batch 128
(forward, backward, Adam), timed on one rank and one thread here.  Step 3: the simulation of
deepcalc.distributed.cost for the MLP and for the Transformer (base) of Vaswani et al. (2017),
both with 25 MiB buckets, weak scaling (per-rank batch fixed).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

SIZES_BYTES = [8, 64, 512, 4096, 32768, 262144, 1048576, 4194304, 16777216]
# Transformer base (Vaswani et al. 2017, Table 3): d_model 512, 6 + 6 layers, d_ff 2048,
# 8 heads, shared 37000-token vocabulary: about 63 M parameters (the paper rounds to 65 M).
# Per rank: 25 k tokens per step over 8 GPUs in the paper; here 4096 tokens per rank.
D_MODEL, D_FF, LAYERS, VOCAB, TOKENS = 512, 2048, 6, 37000, 4096


def transformer_base_parameters() -> int:
    attn = 4 * (D_MODEL * D_MODEL + D_MODEL)                 # q, k, v, out projections
    ffn = D_MODEL * D_FF + D_FF + D_FF * D_MODEL + D_MODEL
    norm = 2 * D_MODEL
    encoder = LAYERS * (attn + ffn + 2 * norm)
    decoder = LAYERS * (2 * attn + ffn + 3 * norm)           # self- and cross-attention
    return VOCAB * D_MODEL + encoder + decoder               # embeddings shared with the output


def mlp_parameters() -> int:
    return 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10


def measure_worker():
    """Under mpirun -n 2: the best of 5 repetitions' mean allreduce time per size, printed by
    rank 0 as JSON."""
    import numpy as np
    from deepcalc import distributed as D
    w = D.init()
    out = {}
    for nbytes in SIZES_BYTES:
        buf = np.ones(max(nbytes // 4, 2), np.float32)
        reps = max(10, min(400, int(2e8 / max(nbytes, 1) / 50)))
        times = []
        for _ in range(5):
            D.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                w.wait([w.iallreduce(buf, "sum")])
            times.append((time.perf_counter() - t0) / reps)
        out[nbytes] = min(times)      # other work on the machine only ever adds time
    if w.rank == 0:
        print(json.dumps(out))


def mlp_step_seconds(steps=100):
    """(forward, backward + optimizer) seconds of one MLP step at batch 128, one thread."""
    import numpy as np
    import deepcalc as dc
    from deepcalc.nn import functional as F
    dc.set_num_threads(1)
    dc.manual_seed(0)
    model = dc.nn.MLP([784, 256, 256, 10], activation="relu")
    opt = dc.optim.Adam(model.parameters(), lr=1e-3)
    x = dc.tensor(np.random.default_rng(0).standard_normal((128, 784)).astype(np.float32))
    y = dc.tensor(np.random.default_rng(1).integers(0, 10, 128))
    fw, bw = [], []
    for i in range(steps + 10):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= 10:
            fw.append(t1 - t0)
            bw.append(t2 - t1)
    return statistics.median(fw), statistics.median(bw)


def predict(alpha, beta, fw, bw, bucket_mb=25.0, rate=None):
    """Per model, ranks -> simulate_step's result.  ``rate`` (FLOP/s) rescales both models'
    compute; by default the rate the MLP step reached here."""
    from deepcalc.distributed import cost
    cap = bucket_mb * 2**20
    mlp_flops = 6 * 128 * mlp_parameters()            # forward 2 N B, backward 4 N B
    if rate is not None:
        fw, bw = fw * mlp_flops / (fw + bw) / rate, bw * mlp_flops / (fw + bw) / rate
    rate = mlp_flops / (fw + bw)
    n_tf = transformer_base_parameters()
    tf_flops = 6 * TOKENS * n_tf                      # attention's own FLOPs left out (small)
    tf_time = tf_flops / rate
    models = {
        "MLP 784-256-256-10, batch 128/rank": (fw, bw, [4.0 * mlp_parameters()]),
        f"Transformer base ({n_tf / 1e6:.0f} M), {TOKENS} tokens/rank":
            (tf_time / 3, 2 * tf_time / 3, [4.0 * n_tf]),
    }
    table = {}
    for name, (f, b, total) in models.items():
        # gradients of equal-size layers fill 25 MiB buckets evenly through the backward
        buckets = cost.bucket_bytes([total[0] / 64] * 64, cap)
        table[name] = {p: cost.simulate_step(f, b, buckets, p, alpha, beta)
                       for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)}
    return table, rate


def _mpirun():
    beside = os.path.join(os.path.dirname(sys.executable), "mpirun")
    return beside if os.access(beside, os.X_OK) else shutil.which("mpirun")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--alpha-us", type=float, default=None, help="skip the measurement: use "
                   "this latency per message (microseconds) ...")
    p.add_argument("--beta-ns", type=float, default=None, help="... and this time per byte "
                   "(nanoseconds)")
    p.add_argument("--tflops", type=float, default=None, help="per-rank compute rate to "
                   "assume (TFLOP/s; default: what the MLP step reaches on this machine)")
    args = p.parse_args()
    if args.worker:
        return measure_worker()
    if (args.alpha_us is None) != (args.beta_ns is None):
        raise SystemExit("allreduce_cost: give both --alpha-us and --beta-ns, or neither")
    if args.alpha_us is not None:
        measured, alpha, beta = None, args.alpha_us * 1e-6, args.beta_ns * 1e-9
        print(f"alpha = {args.alpha_us} us, beta = {args.beta_ns} ns/B (given, not measured)")
    else:
        measured, alpha, beta = measure()
    report(args, measured, alpha, beta)


def measure():
    from deepcalc.distributed import cost
    out = subprocess.run([_mpirun(), "-n", "2", sys.executable, os.path.abspath(__file__),
                          "--worker"], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    measured = {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    print("allreduce on 2 ranks (MPI shared-memory loopback), best of 5 repetitions:")
    for n, t in measured.items():
        print(f"  {n:>9d} B  {t * 1e6:10.1f} us  {n / t / 1e9:7.2f} GB/s")
    alpha, _ = cost.fit_alpha_beta([n for n in measured if n <= 4096],
                                   [measured[n] for n in measured if n <= 4096], 2)
    # T(n, 2) = 2 alpha + n beta: beta from each large size, the median of them (a least-squares
    # fit would let the largest size, the one a burst of other work hits hardest, decide)
    beta = statistics.median((t - 2 * alpha) / n for n, t in measured.items() if n >= 32768)
    print(f"alpha = {alpha * 1e6:.2f} us (least squares over n <= 4 KiB), beta = "
          f"{beta * 1e9:.4f} ns/B = {1 / beta / 1e9:.2f} GB/s (median over n >= 32 KiB)")
    return measured, alpha, beta


def report(args, measured, alpha, beta):
    fw, bw = mlp_step_seconds()
    table, rate = predict(alpha, beta, fw, bw,
                          rate=args.tflops * 1e12 if args.tflops is not None else None)
    print(f"MLP step on 1 thread here: forward {fw * 1e3:.3f} ms, backward + Adam "
          f"{bw * 1e3:.3f} ms; compute modelled at {rate / 1e9:.1f} GFLOP/s per rank")
    for name, rows in table.items():
        print(f"\npredicted weak-scaling efficiency, {name}, 25 MiB buckets, overlap:")
        print("  ranks " + " ".join(f"{p:>6d}" for p in rows))
        print("  eff.  " + " ".join(f"{r['efficiency']:6.3f}" for r in rows.values()))
        print("  comm exposed, ms " + " ".join(f"{r['exposed_s'] * 1e3:.3g}" for r in rows.values()))
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"allreduce_seconds": measured, "alpha": alpha, "beta": beta,
                       "mlp_forward_s": fw, "mlp_backward_s": bw,
                       "prediction": {k: {str(p): r for p, r in v.items()}
                                      for k, v in table.items()}}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
