"""dc.nn.RNN against torch.nn.RNN on the CPU: forward + backward of a one-layer Elman RNN
(sequence-first input (T, N, in), loss = sum of every output), same weights, same threads,
the libraries taking turns in every round with a 0.3 s pause before each turn (their worker
threads spin after a call).  Prints milliseconds (median of rounds) and torch/deepcalc ratios
(median of per-round ratios; ratio of the best rounds in brackets).

    python bench/python/compare_rnn.py [--threads 2] [--rounds 10] [--inner 5]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
from _timing import alternate, ratio

import deepcalc as dc

try:
    import torch
except ImportError:
    torch = None

# (name, T, N, input_size, hidden, nonlinearity, with backward)
CASES = [("fwd+bwd tanh  B64 T100 H128", 100, 64, 128, 128, "tanh", True),
         ("fwd+bwd relu  B64 T100 H128", 100, 64, 128, 128, "relu", True),
         ("forward tanh  B64 T100 H128", 100, 64, 128, 128, "tanh", False),
         ("fwd+bwd tanh  B32 T50  H256", 50, 32, 64, 256, "tanh", True)]


def make_pair(T, N, I, H, nonlinearity, backward, rng):
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    ours = dc.nn.RNN(I, H, nonlinearity=nonlinearity)
    xd = dc.tensor(x, requires_grad=True)

    def run_dc():
        out, _ = ours(xd)
        if backward:
            ours.zero_grad()
            out.sum().backward()
    if torch is None:
        return run_dc, None
    ref = torch.nn.RNN(I, H, nonlinearity=nonlinearity)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.tensor(getattr(ours, name).data))
    xt = torch.tensor(x, requires_grad=True)

    def run_torch():
        if backward:
            ref.zero_grad()
            out, _ = ref(xt)
            out.sum().backward()
        else:
            with torch.no_grad():
                ref(xt)
    if not backward:
        def run_dc():   # noqa: F811  (inference: no graph, as torch.no_grad)
            with dc.no_grad():
                ours(xd)
    return run_dc, run_torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--inner", type=int, default=5)
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"RNN float32, {args.threads} threads, median of {args.rounds} rounds x {args.inner}")
    print(f"{'case':<30}{'deepcalc ms':>13}{'torch ms':>11}{'torch/deepcalc':>24}")
    for name, T, N, I, H, act, backward in CASES:
        run_dc, run_torch = make_pair(T, N, I, H, act, backward, rng)
        fns = {"dc": run_dc} if run_torch is None else {"dc": run_dc, "torch": run_torch}
        times = alternate(fns, args.rounds, args.inner, pause=0.3)
        t_dc = statistics.median(times["dc"]) * 1e3
        if run_torch is None:
            print(f"{name:<30}{t_dc:>13.3f}{'-':>11}{'-':>24}")
            continue
        t_th = statistics.median(times["torch"]) * 1e3
        med, best = ratio(times["torch"], times["dc"])
        print(f"{name:<30}{t_dc:>13.3f}{t_th:>11.3f}{med:>15.2f}x [{best:.2f}x]")


if __name__ == "__main__":
    main()
