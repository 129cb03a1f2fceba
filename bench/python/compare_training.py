"""Training-step and inference speed: a 784-256-256-10 ReLU MLP at batch 128 with
cross-entropy, one SGD (momentum) step and one Adam step (deepcalc's MLP, and the torch idiom
Sequential(Linear, ReLU, ...) as users port it), deepcalc vs torch eager on the CPU in
the same run, same threads, deepcalc and torch taking turns in every round (bench/python/_timing.py).
Prints milliseconds (median of rounds) and torch/deepcalc ratios (median of per-round ratios;
ratio of the best rounds in brackets).

    python bench/python/compare_training.py [--threads 2] [--repeats 15]
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


def sequential_idiom():
    """The model as users port it from torch: Sequential(Linear, ReLU, ..., Linear)."""
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(dc.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(dc.nn.ReLU())
    return dc.nn.Sequential(*layers)


def deepcalc_cases(x, y):
    model = dc.nn.MLP(SIZES, activation="relu")
    seq = sequential_idiom()
    xt = dc.tensor(x)
    sgd = dc.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    seq_sgd = dc.optim.SGD(seq.parameters(), lr=0.01, momentum=0.9)
    adam = dc.optim.Adam(model.parameters(), lr=1e-3)

    def step(opt, net=model):
        def run():
            loss = F.cross_entropy(net(xt), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    def infer(net=model):
        def run():
            with dc.no_grad():
                net(xt)
        return run
    return {"train step (SGD)": step(sgd), "train step (Adam)": step(adam), "inference": infer(),
            "Sequential SGD step": step(seq_sgd, seq), "Sequential inference": infer(seq)}


def torch_cases(x, y):
    layers = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    xt, yt = torch.tensor(x), torch.tensor(y)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(opt):
        def run():
            loss = torch.nn.functional.cross_entropy(model(xt), yt)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    def infer():
        with torch.no_grad():
            model(xt)
    # torch's model is already the Sequential idiom: the same callables time both rows
    return {"train step (SGD)": step(sgd), "train step (Adam)": step(adam), "inference": infer,
            "Sequential SGD step": step(sgd), "Sequential inference": infer}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=20)
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    ours = deepcalc_cases(x, y)
    theirs = torch_cases(x, y) if torch is not None else {}
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, float32, {args.threads} threads, "
          f"median of {args.repeats} x {args.inner}")
    print(f"{'case':<20}{'deepcalc ms':>13}{'torch ms':>11}{'torch/deepcalc':>24}")
    for name, fn in ours.items():
        fns = {"dc": fn}
        if name in theirs:
            fns["torch"] = theirs[name]
        times = alternate(fns, args.repeats, args.inner)
        t_dc = statistics.median(times["dc"]) * 1e3
        if name in theirs:
            t_th = statistics.median(times["torch"]) * 1e3
            med, best = ratio(times["torch"], times["dc"])
            print(f"{name:<20}{t_dc:>13.3f}{t_th:>11.3f}{med:>15.2f}x [{best:.2f}x]")
        else:
            print(f"{name:<20}{t_dc:>13.3f}{'-':>11}{'-':>24}")


if __name__ == "__main__":
    main()
