"""vmap against torch.func, float32, 2 threads (issue 11's figures):

1. per-sample gradients of a 784-256-256-10 ReLU MLP, batch 128:
   ``dc.vmap(dc.grad(loss), in_axes=(None, 0, 0))`` vs ``torch.func.vmap(torch.func.grad(...))``
   and vs a per-sample Python loop in deepcalc;
2. per-sample input Jacobians (10 x 784) of that MLP for a batch of 64: ``vmap(jacrev(f))``;
3. ``hessian`` of a scalar function of 200 inputs (a 200-64-64-1 tanh MLP);
4. ``jacrev`` of a 2000-output function with ``chunk_size=100``: peak memory (tracemalloc, which
   sees NumPy's allocations) against ``chunk_size=None``, and the same result.

Calls of a few milliseconds are timed 10 in a row per turn (after the pause between libraries,
the first call wakes the thread pool). Run: python bench/python/compare_vmap.py [--rounds N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _timing import alternate, ratio  # noqa: E402

import deepcalc as dc  # noqa: E402
from deepcalc.nn import functional as F  # noqa: E402


def _report(name, times, base, others):
    print(f"\n{name}")
    for k, v in times.items():
        print(f"  {k:28s} median {statistics.median(v) * 1e3:8.3f} ms   best {min(v) * 1e3:8.3f} ms")
    for other in others:
        med, best = ratio(times[other], times[base])
        per = sorted(o / b for o, b in zip(times[other], times[base]))
        print(f"  {other} / {base}: median {med:.2f}x (range {per[0]:.2f}-{per[-1]:.2f}, "
              f"best rounds {best:.2f}x)")


def _torch_mlp(torch, sizes, act, net):
    """torch's Sequential MLP with ``net``'s weights (dc.nn.MLP: the same parameter order)."""
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(act())
    tnet = torch.nn.Sequential(*mods)
    with torch.no_grad():
        for tp, p in zip(tnet.parameters(), net.parameters()):
            tp.copy_(torch.from_numpy(p.data))
    return tnet


def per_sample_gradients(torch, rounds):
    rng = np.random.default_rng(0)
    sizes = [784, 256, 256, 10]
    net = dc.nn.MLP(sizes, activation="relu")
    params = {k: v.detach() for k, v in net.named_parameters()}
    x = rng.standard_normal((128, 784)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    xd, yd = dc.tensor(x), dc.tensor(y)

    def loss(p, xi, yi):
        return F.cross_entropy(dc.func.functional_call(net, p, xi[None]), yi[None])
    ps = dc.vmap(dc.grad(loss), in_axes=(None, 0, 0))
    grad1 = dc.grad(loss)
    fns = {"deepcalc vmap(grad)": lambda: ps(params, xd, yd)}
    if torch is not None:
        tnet = _torch_mlp(torch, sizes, torch.nn.ReLU, net)
        tparams = {k: v.detach() for k, v in tnet.named_parameters()}
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def tloss(p, xi, yi):
            return torch.nn.functional.cross_entropy(
                torch.func.functional_call(tnet, p, (xi[None],)), yi[None])
        tps = torch.func.vmap(torch.func.grad(tloss), in_dims=(None, 0, 0))
        fns["torch.func vmap(grad)"] = lambda: tps(tparams, tx, ty)
        g, tg = ps(params, xd, yd), tps(tparams, tx, ty)
        err = max(float(np.max(np.abs(g[k].data - tg[tk].numpy())))
                  for k, tk in zip(params, tparams))
        print(f"per-sample gradients: max |deepcalc - torch| = {err:.2e}")
    rows = [(xd[i], yd[i]) for i in range(128)]
    fns["deepcalc per-sample loop"] = lambda: [grad1(params, a, b) for a, b in rows]
    times = alternate(fns, rounds, pause=0.3)
    _report("per-sample gradients, 784-256-256-10 ReLU MLP, batch 128", times,
            "deepcalc vmap(grad)", [k for k in fns if k != "deepcalc vmap(grad)"])


def per_sample_jacobians(torch, rounds):
    rng = np.random.default_rng(1)
    net = dc.nn.MLP([784, 256, 256, 10], activation="relu")
    x = rng.standard_normal((64, 784)).astype(np.float32)
    xd = dc.tensor(x)
    f = lambda v: net(v[None])[0]  # noqa: E731
    vj = dc.vmap(dc.jacrev(f))
    fns = {"deepcalc vmap(jacrev)": lambda: vj(xd)}
    if torch is not None:
        tnet = _torch_mlp(torch, [784, 256, 256, 10], torch.nn.ReLU, net)
        tf = lambda v: tnet(v[None])[0]  # noqa: E731
        tvj = torch.func.vmap(torch.func.jacrev(tf))
        tx = torch.from_numpy(x)
        fns["torch.func vmap(jacrev)"] = lambda: tvj(tx)
        err = float(np.max(np.abs(vj(xd).data - tvj(tx).detach().numpy())))
        print(f"per-sample Jacobians: max |deepcalc - torch| = {err:.2e}")
    times = alternate(fns, rounds, inner=10, pause=0.3)
    _report("per-sample input Jacobians (10 x 784), batch 64", times, "deepcalc vmap(jacrev)",
            [k for k in fns if k != "deepcalc vmap(jacrev)"])


def hessian_200(torch, rounds):
    rng = np.random.default_rng(2)
    net = dc.nn.MLP([200, 64, 64, 1], activation="tanh")
    x = dc.tensor(rng.standard_normal(200).astype(np.float32))
    f = lambda v: net(v[None]).sum()  # noqa: E731
    h = dc.hessian(f)
    fns = {"deepcalc hessian": lambda: h(x)}
    if torch is not None:
        tnet = _torch_mlp(torch, [200, 64, 64, 1], torch.nn.Tanh, net)
        tf = lambda v: tnet(v[None]).sum()  # noqa: E731
        th = torch.func.hessian(tf)
        tx = torch.from_numpy(x.data)
        fns["torch.func hessian"] = lambda: th(tx)
        err = float(np.max(np.abs(h(x).data - th(tx).detach().numpy())))
        print(f"hessian: max |deepcalc - torch| = {err:.2e}")
    times = alternate(fns, rounds, inner=10, pause=0.3)
    _report("hessian of a 200-64-64-1 tanh MLP (200 x 200)", times, "deepcalc hessian",
            [k for k in fns if k != "deepcalc hessian"])


def chunked_jacrev_memory():
    rng = np.random.default_rng(3)
    W1 = dc.tensor(rng.standard_normal((2000, 50)).astype(np.float32) / 7)
    W2 = dc.tensor(rng.standard_normal((2000, 2000)).astype(np.float32) / 45)
    f = lambda v: W2 @ dc.tanh(W1 @ v)  # noqa: E731  R^50 -> R^2000
    x = dc.tensor(rng.standard_normal(50).astype(np.float32))
    peaks, results = {}, {}
    for chunk in (None, 100):
        tracemalloc.start()
        tracemalloc.reset_peak()
        results[chunk] = dc.jacrev(f, chunk_size=chunk)(x).data
        peaks[chunk] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    jac_bytes = results[None].nbytes
    print("\njacrev of R^50 -> R^2000 (the Jacobian itself is "
          f"{jac_bytes / 2**20:.2f} MiB)")
    for chunk, peak in peaks.items():
        print(f"  chunk_size={chunk!s:5s} peak traced memory {peak / 2**20:8.2f} MiB")
    print(f"  chunk_size=100 / None: {peaks[100] / peaks[None]:.3f} (target <= 0.2); "
          f"same result: {np.array_equal(results[None], results[100])} "
          f"(max diff {np.max(np.abs(results[None] - results[100])):.1e})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args()
    dc.set_num_threads(2)
    try:
        import torch
        torch.set_num_threads(2)
    except ImportError:
        torch = None
        print("torch not installed: deepcalc figures only")
    per_sample_gradients(torch, args.rounds)
    per_sample_jacobians(torch, args.rounds)
    hessian_200(torch, args.rounds)
    chunked_jacrev_memory()


if __name__ == "__main__":
    main()
