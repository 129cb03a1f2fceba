"""Kernel-level timings of deepcalc._core BatchNorm / LayerNorm (forward + backward) against
torch.nn.BatchNorm1d / torch.nn.LayerNorm with the same thread count, plus achieved GB/s next to
a plain np.copyto of the same size measured in the same run. Medians of repeats; prints ratios.

    PYTHONPATH=python python bench/python/compare_norm_kernels.py [--threads 2] [--repeats 30]
"""
import argparse
import statistics
import time

import numpy as np
import torch

from deepcalc import _core


def median_time(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_gbs(nbytes_array, src, repeats):
    dst = np.empty_like(src)
    t = median_time(lambda: np.copyto(dst, src), repeats)
    return 2 * nbytes_array / t / 1e9  # read src + write dst


def bench_batchnorm(N, C, repeats, rng):
    x = rng.standard_normal((N, C)).astype(np.float32)
    dy = rng.standard_normal((N, C)).astype(np.float32)
    gamma = rng.standard_normal(C).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    state = {}

    def ours_fwd():
        state["out"] = _core.batchnorm_forward_train(x, gamma, beta, 1e-5)

    ours_fwd()
    _, mean, invstd = state["out"]
    t_fwd = median_time(ours_fwd, repeats)
    t_bwd = median_time(lambda: _core.batchnorm_backward(dy, x, mean, invstd, gamma), repeats)

    bn = torch.nn.BatchNorm1d(C)
    xt = torch.from_numpy(x).requires_grad_()
    dyt = torch.from_numpy(dy)

    def torch_fwd_bwd():
        xt.grad = None
        bn.zero_grad(set_to_none=True)
        bn(xt).backward(dyt)

    t_torch = median_time(torch_fwd_bwd, repeats)
    S = x.nbytes
    gbs_fwd, gbs_bwd = 2 * S / t_fwd / 1e9, 3 * S / t_bwd / 1e9
    gbs_copy = copy_gbs(S, x, repeats)
    ours = t_fwd + t_bwd
    print(f"BatchNorm1d ({N}, {C}) f32: ours fwd {t_fwd * 1e3:.3f} ms ({gbs_fwd:.1f} GB/s), "
          f"bwd {t_bwd * 1e3:.3f} ms ({gbs_bwd:.1f} GB/s), fwd+bwd {ours * 1e3:.3f} ms "
          f"({5 * S / ours / 1e9:.1f} GB/s)")
    print(f"    torch fwd+bwd {t_torch * 1e3:.3f} ms -> speedup {t_torch / ours:.2f}x; "
          f"np.copyto {gbs_copy:.1f} GB/s -> ours at {5 * S / ours / 1e9 / gbs_copy:.2f} of copy bandwidth")


def bench_layernorm(R, C, repeats, rng):
    x = rng.standard_normal((R, C)).astype(np.float32)
    dy = rng.standard_normal((R, C)).astype(np.float32)
    gamma = rng.standard_normal(C).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    y, mean, invstd = _core.layernorm_forward(x, gamma, beta, 1e-5)
    t_fwd = median_time(lambda: _core.layernorm_forward(x, gamma, beta, 1e-5), repeats)
    t_bwd = median_time(lambda: _core.layernorm_backward(dy, x, mean, invstd, gamma), repeats)

    ln = torch.nn.LayerNorm(C)
    xt = torch.from_numpy(x).requires_grad_()
    dyt = torch.from_numpy(dy)

    def torch_fwd_bwd():
        xt.grad = None
        ln.zero_grad(set_to_none=True)
        ln(xt).backward(dyt)

    t_torch = median_time(torch_fwd_bwd, repeats)
    S = x.nbytes
    ours = t_fwd + t_bwd
    gbs_copy = copy_gbs(S, x, repeats)
    print(f"LayerNorm ({R}, {C}) f32: ours fwd {t_fwd * 1e3:.3f} ms, bwd {t_bwd * 1e3:.3f} ms, "
          f"fwd+bwd {ours * 1e3:.3f} ms ({5 * S / ours / 1e9:.1f} GB/s, copy {gbs_copy:.1f} GB/s)")
    print(f"    torch fwd+bwd {t_torch * 1e3:.3f} ms -> speedup {t_torch / ours:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    _core.set_num_threads(args.threads)
    print(f"threads {args.threads}, deepcalc path {_core.cpu_capability()}, torch {torch.__version__}")
    print("bytes counted: forward reads x, writes y; backward reads dy and x, writes dx")
    rng = np.random.default_rng(0)
    bench_batchnorm(4096, 1024, args.repeats, rng)
    bench_batchnorm(256, 1024, args.repeats * 4, rng)
    bench_layernorm(8192, 512, args.repeats, rng)


if __name__ == "__main__":
    main()
