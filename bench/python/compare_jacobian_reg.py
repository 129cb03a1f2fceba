"""Training step with the Jacobian penalty (Hoffman et al. 2019): a 784-256-256-10 ReLU MLP at
batch 128, float32, cross-entropy + lam/2 * mean ||J||_F^2 estimated with random projections,
one SGD (momentum) step; deepcalc (fused kernel, n_proj 1 and 4; the generic double-backprop
path; 'forward' mode) against its own plain step and against torch's double backprop
(autograd.grad(out, x, v, create_graph=True)) in the same run, same threads.  Libraries take
turns in every round with a 0.3 s pause before each turn (their worker threads spin after a
call).  Prints milliseconds (median of rounds) and ratios (median of per-round ratios; ratio of
the best rounds in brackets).  Also prints the unbiasedness figure: the mean of 10,000
single-projection estimates against the exact ||J||_F^2.

    python bench/python/compare_jacobian_reg.py [--threads 2] [--repeats 9] [--inner 10]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _timing import ratio

import deepcalc as dc
from deepcalc.nn import functional as F
from deepcalc.ops.jacobian import jacobian_projection
from deepcalc.regularize import JacobianRegularizer, jacobian_norm_sq, mlp_chain
from deepcalc.regularize.jacobian import sphere_projections

try:
    import torch
except ImportError:
    torch = None

SIZES = [784, 256, 256, 10]
BATCH = 128
LAM = 0.01


def deepcalc_cases(x, y):
    xt = dc.tensor(x)
    cases = {}

    def make(reg):
        model = dc.nn.MLP(SIZES, activation="relu")
        opt = dc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def run():  # as fit runs it: the penalty reuses the step's forward (out)
            out = model(xt)
            loss = F.cross_entropy(out, y)
            if reg is not None:
                loss = loss + reg(model, xt, out=out)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run
    cases["plain step"] = make(None)
    cases["JR n_proj=1"] = make(JacobianRegularizer(LAM, n_proj=1))
    cases["JR n_proj=4"] = make(JacobianRegularizer(LAM, n_proj=4))
    cases["JR generic n_proj=1"] = make(JacobianRegularizer(LAM, n_proj=1, fused=False))
    cases["JR forward n_proj=1"] = make(JacobianRegularizer(LAM, n_proj=1, mode="forward"))
    return cases


def torch_cases(x, y):
    def make(n_proj):
        layers = []
        for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(SIZES) - 2:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        xt, yt = torch.tensor(x), torch.tensor(y)

        def run():
            xg = xt.clone().requires_grad_(n_proj > 0)
            out = model(xg)
            loss = torch.nn.functional.cross_entropy(out, yt)
            # the loop of the reference code (facebookresearch/jacobian_regularizer)
            for _ in range(n_proj):
                v = torch.randn_like(out)
                v = v / v.norm(dim=1, keepdim=True)
                (jv,) = torch.autograd.grad(out, xg, v, create_graph=True, retain_graph=True)
                loss = loss + LAM / 2 * out.shape[1] / n_proj * (jv * jv).sum() / out.shape[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run
    return {"plain step": make(0), "JR n_proj=1": make(1), "JR n_proj=4": make(4)}


def alternate_paused(fns, rounds, inner, pause=0.3, warmup=3):
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            time.sleep(pause)
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[k].append((time.perf_counter() - t0) / inner)
    return times


def unbiasedness(samples=10_000):
    """Mean of single-projection 'reverse' estimates vs the exact ||J||_F^2 (random MLP)."""
    dc.manual_seed(1)
    model = dc.nn.MLP([20, 32, 32, 10], activation="tanh", dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((4, 20))
    with dc.no_grad():
        exact = jacobian_norm_sq(model, dc.tensor(x), mode="exact").data
    ws, bs, acts = mlp_chain(model)
    v = sphere_projections(np.random.default_rng(3), samples, 4, 10, np.float64)
    _, sq = jacobian_projection(x, v.reshape(-1, 10), ws, bs, acts, samples)  # one kernel call
    return exact, sq * 10 / samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--inner", type=int, default=10)
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    ours = deepcalc_cases(x, y)
    theirs = torch_cases(x, y) if torch is not None else {}
    fns = {f"dc {k}": f for k, f in ours.items()}
    fns.update({f"torch {k}": f for k, f in theirs.items()})
    times = alternate_paused(fns, args.repeats, args.inner)
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float32, {args.threads} threads, "
          f"lam {LAM}, median of {args.repeats} x {args.inner}")
    print(f"{'case':<28}{'ms':>9}{'/ dc plain':>18}{'torch / dc':>18}")
    plain = times["dc plain step"]
    for name in fns:
        ms = statistics.median(times[name]) * 1e3
        med, best = ratio(times[name], plain)
        line = f"{name:<28}{ms:>9.3f}{med:>11.2f}x [{best:.2f}]"
        key = name[3:] if name.startswith("dc ") else None
        if key and f"torch {key}" in times:
            tm, tb = ratio(times[f"torch {key}"], times[name])
            line += f"{tm:>11.2f}x [{tb:.2f}]"
        print(line)
    if torch is not None:
        tm, tb = ratio(times["torch JR n_proj=1"], times["torch plain step"])
        print(f"torch JR n_proj=1 / torch plain step: {tm:.2f}x [{tb:.2f}]")
    exact, est = unbiasedness()
    print("unbiasedness (10,000 single projections, 4 samples of a random tanh MLP 20-32-32-10): "
          "mean estimate / exact = " + ", ".join(f"{e / x:.4f}" for e, x in zip(est, exact)))


if __name__ == "__main__":
    main()
