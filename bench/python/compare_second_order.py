"""Second-order speed: Hessian-vector products of the loss w.r.t. all parameters and a
gradient-penalty training step, deepcalc vs torch eager in the same run, deepcalc and torch
taking turns in every round (bench/python/_timing.py).

Model: the 784-256-256-10 MLP, batch 128, float32, cross-entropy, in three variants: tanh;
ReLU with BatchNorm1d (training mode) after each hidden Linear; ReLU with LayerNorm.

* grad: d loss / d params (deepcalc's own gradient, the yardstick for the HVP's cost);
* HVP: deepcalc's ``dc.hvp`` (forward over reverse) against torch's double-backprop HVP
  (``autograd.grad(create_graph=True)``, then ``autograd.grad`` with ``grad_outputs=v``);
* gradient penalty: loss + lambda ||d loss / d x||^2 (one ``create_graph`` backward, then
  backward and an SGD step).

Also prints the split of one deepcalc HVP: forward, first backward (grad - forward) and the
second pass (hvp - grad).  Ratios are torch/deepcalc: median of per-round ratios, best rounds'
ratio in brackets.

    python bench/python/compare_second_order.py [--threads 2] [--repeats 15] [--inner 5]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
from _timing import alternate, ratio

import deepcalc as dc
from deepcalc.nn import functional as F

try:
    import torch
except ImportError:
    torch = None

SIZES = [784, 256, 256, 10]
BATCH = 128
LAM = 0.1
VARIANTS = ("tanh", "relu+batchnorm", "relu+layernorm")


def dc_model(variant):
    nn = dc.nn
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        last = i == len(SIZES) - 2
        if variant == "tanh":
            layers.append(nn.Linear(a, b, activation=None if last else "tanh"))
            continue
        layers.append(nn.Linear(a, b))
        if not last:
            layers.append(nn.BatchNorm1d(b) if variant == "relu+batchnorm" else nn.LayerNorm(b))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def torch_model(variant):
    nn = torch.nn
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(a, b))
        if i == len(SIZES) - 2:
            break
        if variant == "tanh":
            layers.append(nn.Tanh())
            continue
        layers.append(nn.BatchNorm1d(b) if variant == "relu+batchnorm" else nn.LayerNorm(b))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def dc_cases(variant, x, y, v):
    model = dc_model(variant)
    names = [n for n, _ in model.named_parameters()]
    params = dict(model.named_parameters())
    xt = dc.tensor(x)
    vt = {n: dc.tensor(v[i].reshape(params[n].shape)) for i, n in enumerate(names)}

    def loss_of(p):
        return F.cross_entropy(dc.func.functional_call(model, p, xt), y)

    def forward():
        with dc.no_grad():
            loss_of(params)

    def grad():
        dc.grad(loss_of)(params)

    def hvp():
        dc.hvp(loss_of, (params,), (vt,))

    xg = dc.tensor(x, requires_grad=True)
    opt = dc.optim.SGD(model.parameters(), lr=1e-3)

    def penalty_step():
        loss = F.cross_entropy(model(xg), y)
        (gx,) = dc.autograd_grad(loss, [xg], create_graph=True)
        total = loss + LAM * (gx * gx).sum()
        opt.zero_grad()
        total.backward()
        opt.step()
    return {"forward": forward, "grad": grad, "HVP": hvp, "grad penalty step": penalty_step}


def torch_cases(variant, x, y, v):
    model = torch_model(variant)
    params = list(model.parameters())
    xt, yt = torch.tensor(x), torch.tensor(y)
    vt = [torch.tensor(v[i].reshape(p.shape)) for i, p in enumerate(params)]
    ce = torch.nn.functional.cross_entropy

    def forward():
        with torch.no_grad():
            ce(model(xt), yt)

    def grad():
        torch.autograd.grad(ce(model(xt), yt), params)

    def hvp():
        gs = torch.autograd.grad(ce(model(xt), yt), params, create_graph=True)
        torch.autograd.grad(gs, params, grad_outputs=vt)

    xg = xt.clone().requires_grad_(True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def penalty_step():
        loss = ce(model(xg), yt)
        (gx,) = torch.autograd.grad(loss, [xg], create_graph=True)
        total = loss + LAM * (gx * gx).sum()
        opt.zero_grad()
        total.backward()
        opt.step()
    return {"forward": forward, "grad": grad, "HVP": hvp, "grad penalty step": penalty_step}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float32, {args.threads} threads, "
          f"median of {args.repeats} x {args.inner}")
    for variant in args.variants.split(","):
        dc.manual_seed(0)
        shapes = [p.shape for p in dc_model(variant).parameters()]
        v = [rng.standard_normal(int(np.prod(s))).astype(np.float32) for s in shapes]
        ours = dc_cases(variant, x, y, v)
        theirs = torch_cases(variant, x, y, v) if torch is not None else {}
        print(f"\n{variant}")
        print(f"{'case':<20}{'deepcalc ms':>13}{'torch ms':>11}{'torch/deepcalc':>24}")
        med = {}
        for name, fn in ours.items():
            fns = {"dc": fn}
            if name in theirs:
                fns["torch"] = theirs[name]
            times = alternate(fns, args.repeats, args.inner)
            med[name] = statistics.median(times["dc"]) * 1e3
            if "torch" in fns:
                t_th = statistics.median(times["torch"]) * 1e3
                r, best = ratio(times["torch"], times["dc"])
                print(f"{name:<20}{med[name]:>13.3f}{t_th:>11.3f}{r:>15.2f}x [{best:.2f}x]")
            else:
                print(f"{name:<20}{med[name]:>13.3f}")
        f, g, h = med["forward"], med["grad"], med["HVP"]
        print(f"HVP / grad: {h / g:.2f}x; HVP split: forward {f:.3f} ms, first backward "
              f"{g - f:.3f} ms, second pass {h - g:.3f} ms")


if __name__ == "__main__":
    main()
