"""What dc.diagnose costs next to the training step it observes: a deep MLP (Linear -> BatchNorm
-> ReLU, 10 weight layers of 128, batch 128, SGD) and a tanh RNN (T = 100, batch 64, hidden 128).
The callables take turns in every round (bench/python/_timing.py); medians of rounds.

* GradientMonitor: a step with the monitor (hooks on every module, norms of every parameter,
  activation statistics) over a plain step;
* internal_covariate_shift / along_gradient: the call over a step, and per gradient evaluation
  it makes (L for ICS of L layers, 1 + k for k step sizes), the cost a measure adds where it is
  computed;
* rnn_gradient_norms (one cotangent): over an RNN forward + backward.

    python bench/python/diagnose_overhead.py [--threads 1] [--rounds 7]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
from _timing import alternate

import deepcalc as dc
from deepcalc import diagnose as dg
from deepcalc.nn import functional as F

DEPTH, WIDTH, BATCH = 10, 128, 128
ETAS = [0.01, 0.02, 0.05, 0.1, 0.2]


def _mlp():
    dc.manual_seed(0)
    mods = []
    for i in range(DEPTH - 1):
        mods += [dc.nn.Linear(64 if i == 0 else WIDTH, WIDTH), dc.nn.BatchNorm1d(WIDTH),
                 dc.nn.ReLU()]
    return dc.nn.Sequential(*mods, dc.nn.Linear(WIDTH, 10))


def _step(model, x, y):
    opt = dc.optim.SGD(model.parameters(), lr=0.01)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def mlp_cases(rng):
    x = dc.tensor(rng.standard_normal((BATCH, 64)).astype(np.float32))
    y = rng.integers(0, 10, BATCH)
    model, watched = _mlp(), _mlp()
    # the monitored copy is hooked once, as around a training loop (records every step)
    monitor = dg.GradientMonitor(watched).__enter__()
    linear = [n for n, m in model.named_modules() if isinstance(m, dc.nn.Linear)]
    cases = {"step": _step(model, x, y), "monitored step (every step)": _step(watched, x, y),
             "internal_covariate_shift": lambda: dg.internal_covariate_shift(
                 model, F.cross_entropy, x, y, 0.01, layers=linear),
             "along_gradient (5 etas)": lambda: dg.along_gradient(model, F.cross_entropy, x, y,
                                                                  ETAS)}
    return cases, {"internal_covariate_shift": DEPTH, "along_gradient (5 etas)": 1 + len(ETAS)}, \
        monitor


def rnn_cases(rng):
    rnn = dc.nn.RNN(32, 128)
    x = dc.tensor(rng.standard_normal((100, 64, 32)).astype(np.float32))
    u = rng.standard_normal(128).astype(np.float32)

    def step():
        out, _ = rnn(x)
        rnn.zero_grad()
        out.sum().backward()
    return {"rnn step": step,
            "rnn_gradient_norms (cotangent)": lambda: dg.rnn_gradient_norms(rnn, x, cotangent=u)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    cases, evals, monitor = mlp_cases(rng)
    t = {k: statistics.median(v) for k, v in alternate(cases, args.rounds, 3).items()}
    print(f"MLP {DEPTH} x {WIDTH} (Linear-BN-ReLU), batch {BATCH}, {args.threads} thread(s), "
          f"median of {args.rounds} rounds")
    print(f"{'':<30}{'ms':>10}{'x step':>10}{'x step per gradient':>22}")
    for name, sec in t.items():
        per = f"{sec / t['step'] / evals[name]:>22.2f}" if name in evals else f"{'':>22}"
        print(f"{name:<30}{sec * 1e3:>10.3f}{sec / t['step']:>10.2f}{per}")
    monitor.__exit__(None, None, None)
    r = {k: statistics.median(v) for k, v in alternate(rnn_cases(rng), args.rounds, 1).items()}
    print("RNN tanh, T 100, batch 64, hidden 128")
    for name, sec in r.items():
        print(f"{name:<30}{sec * 1e3:>10.3f}{sec / r['rnn step']:>10.2f}")


if __name__ == "__main__":
    main()
