"""Hessian spectra and trace: deepcalc.curvature against PyHessian 0.1 (power iteration with
deflation, Hutchinson) and torch's double-backprop HVP, in the same run, on the same weights.

Model: the 784-256-256-10 tanh MLP (torch's default init), one batch of 128 random inputs
with random labels, cross-entropy, float32, 2 threads.

* reference: top-5 eigenvalues by ARPACK (scipy eigsh, tol 1e-6) on deepcalc's HVP; the
  exact trace, layer by layer (``trace(method='exact')``: one HVP per hidden and output unit,
  tested against dense traces in tests/test_curvature.py);
* eigenvalues: ``top_eigenvalues`` (thick-restart Lanczos) vs PyHessian ``eigenvalues`` at its
  defaults (maxIter 100, tol 1e-3), k = 1 and 5: time (median of rounds, taking turns),
  HVPs, largest relative error;
* trace: HVPs each estimator needs for a 1% RMS error, from the measured per-probe spread
  (Hutchinson: (sd / 0.01 T)^2; Hutch++ with sketch k: 2k + (sd_residual / 0.01 T)^2), the
  time that takes at each library's measured HVP cost against the exact method's time, and
  PyHessian ``trace`` (defaults);
* one HVP: deepcalc (HessianOperator.matvec, flat float64 in and out) vs torch double backprop.

    python bench/python/compare_hessian.py [--threads 2] [--rounds 3] [--probes 300]

PyHessian is used when installed (pip install pyhessian==0.1; it needs torch); its
``density`` calls torch.eig, removed from torch, and is not timed.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings

import numpy as np
from _timing import alternate, ratio

import deepcalc as dc
import deepcalc.curvature as cv
from deepcalc.nn import functional as F

try:
    import torch
except ImportError:
    torch = None
try:
    from pyhessian import hessian as pyhessian_hessian
    # PyHessian calls loss.backward(create_graph=True); torch warns about the cycle it makes
    warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
except ImportError:
    pyhessian_hessian = None

SIZES = [784, 256, 256, 10]
BATCH = 128


def build(seed=0):
    dc.manual_seed(seed)
    model = dc.nn.MLP(SIZES, activation="tanh")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    return model, x, y


def torch_copy(model):
    layers = []
    for i, lin in enumerate(model.layers):
        t = torch.nn.Linear(lin.in_features, lin.out_features)
        with torch.no_grad():
            t.weight.copy_(torch.tensor(lin.weight.data))
            t.bias.copy_(torch.tensor(lin.bias.data))
        layers.append(t)
        if i < len(model.layers) - 1:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def rel_err(vals, ref):
    vals = np.sort(np.asarray(vals, np.float64))[::-1]
    return float(np.max(np.abs(vals - ref[:len(vals)]) / np.abs(ref[:len(vals)])))


def eigen_section(H, ref, tm, x, y, rounds):
    print("\ntop eigenvalues (error: largest relative error against ARPACK)")
    print(f"{'method':<34}{'k':>3}{'seconds':>10}{'HVPs':>7}{'rel. error':>12}{'speed-up':>10}")
    for k in (1, 5):
        times, res = {"dc": [], "pyhessian": []}, {}
        for r in range(rounds):
            time.sleep(0.3)
            H.n_matvecs = 0
            (vals, _), t = timed(lambda: cv.top_eigenvalues(H, k=k, tol=1e-3, generator=r))
            times["dc"].append(t)
            res["dc"] = (vals, H.n_matvecs)
            if pyhessian_hessian is not None:
                time.sleep(0.3)
                counter = {"n": 0}

                def run():
                    hc = pyhessian_hessian(tm, torch.nn.CrossEntropyLoss(), data=(x, y),
                                           cuda=False)
                    ph = sys.modules["pyhessian.hessian"]   # the package's name is the class
                    orig = ph.hessian_vector_product

                    def counted(*a):
                        counter["n"] += 1
                        return orig(*a)
                    ph.hessian_vector_product = counted
                    try:
                        return hc.eigenvalues(top_n=k)[0]
                    finally:
                        ph.hessian_vector_product = orig
                vals_p, t = timed(run)
                times["pyhessian"].append(t)
                res["pyhessian"] = (vals_p, counter["n"])
        t_dc = statistics.median(times["dc"])
        print(f"{'deepcalc top_eigenvalues (Lanczos)':<34}{k:>3}{t_dc:>10.3f}"
              f"{res['dc'][1]:>7}{rel_err(res['dc'][0], ref):>12.2e}")
        if times["pyhessian"]:
            t_p = statistics.median(times["pyhessian"])
            print(f"{'PyHessian eigenvalues (defaults)':<34}{k:>3}{t_p:>10.3f}"
                  f"{res['pyhessian'][1]:>7}{rel_err(res['pyhessian'][0], ref):>12.2e}"
                  f"{t_p / t_dc:>9.2f}x")


def trace_section(H, model, tm, x, y, probes, gen):
    time.sleep(0.3)
    H.n_matvecs = 0
    ex, t_exact = timed(lambda: cv.trace(H, method="exact"))
    T = ex.value
    print(f"\ntrace, exact layer by layer (trace(method='exact'): {ex.matvecs} HVPs of the "
          f"layers above each unit, {t_exact:.2f} s): {T:.4f}")
    est = cv.trace(H, tol=1e-12, method="hutchinson", max_probes=probes, min_probes=probes,
                   generator=gen)
    sd = float(np.std(est.samples, ddof=1))
    need_h = math.ceil((sd / (0.01 * abs(T))) ** 2)
    print(f"\nHVPs for a 1% RMS error (per-probe spread from {probes} probes each)")
    print(f"  Hutchinson: sd {sd:.3f} -> {need_h} HVPs (its estimate {est.value:.3f}, 95% "
          f"interval [{est.ci[0]:.3f}, {est.ci[1]:.3f}])")
    best = None
    for k in (10, 20, 40, 80):
        est = cv.trace(H, tol=1e-12, method="hutch++", sketch=k, max_probes=2 * k + probes,
                       min_probes=probes, generator=gen + k)
        sd_r = float(np.std(est.samples, ddof=1))
        need = 2 * k + math.ceil((sd_r / (0.01 * abs(T))) ** 2)
        best = need if best is None else min(best, need)
        print(f"  Hutch++ sketch {k:>3}: residual sd {sd_r:.3f}, exact part "
              f"{est.exact_part:.3f} of {T:.3f} -> {need} HVPs")
    print(f"  Hutchinson / fewest Hutch++: {need_h} / {best} = {need_h / best:.2f}x")
    time.sleep(0.3)
    H.n_matvecs = 0
    _, t = timed(lambda: [H.matvec(np.ones(H.shape[0])) for _ in range(50)])
    per_dc = t / 50
    line = (f"  time to a 1% error: deepcalc exact {t_exact:.2f} s (0%), Hutch++ {best} x "
            f"{per_dc * 1e3:.2f} ms = {best * per_dc:.1f} s")
    if pyhessian_hessian is not None:
        time.sleep(0.3)

        def run():
            hc = pyhessian_hessian(tm, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
            return hc.trace()
        samples, t = timed(run)
        v = float(np.mean(samples))
        per = t / len(samples)
        print(f"  PyHessian trace (defaults): {v:.4f} ({abs(v - T) / abs(T) * 100:.1f}% off) "
              f"from {len(samples)} HVPs in {t:.3f} s")
        line += f"; PyHessian (Hutchinson) {need_h} x {per * 1e3:.2f} ms = {need_h * per:.1f} s"
    print(line)
    return T


def hvp_section(H, tm, x, y, rounds):
    rng = np.random.default_rng(1)
    v = rng.standard_normal(H.shape[0])
    fns = {"dc": lambda: H.matvec(v)}
    if torch is not None:
        xt, yt = torch.tensor(x), torch.tensor(y)
        params = list(tm.parameters())
        vt, off = [], 0
        for p in params:
            vt.append(torch.tensor(v[off:off + p.numel()].reshape(p.shape), dtype=torch.float32))
            off += p.numel()
        ce = torch.nn.functional.cross_entropy

        def torch_hvp():
            gs = torch.autograd.grad(ce(tm(xt), yt), params, create_graph=True)
            return torch.autograd.grad(gs, params, grad_outputs=vt)
        fns["torch"] = torch_hvp
        hv_t = np.concatenate([g.detach().numpy().ravel() for g in torch_hvp()])
        hv_d = H.matvec(v)
        print(f"\none HVP (deepcalc vs torch: relative difference "
              f"{np.linalg.norm(hv_t - hv_d) / np.linalg.norm(hv_t):.1e})")
    times = alternate(fns, rounds * 5, 5)
    t_dc = statistics.median(times["dc"]) * 1e3
    line = f"  deepcalc {t_dc:.2f} ms"
    if "torch" in times:
        r, best = ratio(times["torch"], times["dc"])
        line += f", torch {statistics.median(times['torch']) * 1e3:.2f} ms: " \
                f"torch/deepcalc {r:.2f}x [{best:.2f}x]"
    print(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--probes", type=int, default=300,
                    help="probes per estimator for the per-probe spread")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    dc.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    model, x, y = build(args.seed)
    H = cv.HessianOperator(model, F.cross_entropy, (dc.tensor(x), y))
    tm = torch_copy(model) if torch is not None else None
    xt = torch.tensor(x) if torch is not None else None
    yt = torch.tensor(y) if torch is not None else None
    print(f"MLP {'-'.join(map(str, SIZES))} tanh, batch {BATCH}, float32, {args.threads} "
          f"threads, {H.shape[0]} parameters; PyHessian "
          f"{'present' if pyhessian_hessian else 'absent'}, torch "
          f"{'present' if torch else 'absent'}")
    from scipy.sparse.linalg import LinearOperator, eigsh
    t0 = time.perf_counter()
    H.n_matvecs = 0
    ref = eigsh(LinearOperator(H.shape, matvec=H.matvec, dtype=np.float64), k=5, which="LA",
                tol=1e-6)[0][::-1]
    print(f"reference top-5 (ARPACK, tol 1e-6, {H.n_matvecs} HVPs, "
          f"{time.perf_counter() - t0:.1f} s): {np.round(ref, 5).tolist()}")
    hvp_section(H, tm, x, y, args.rounds)
    eigen_section(H, ref, tm, xt, yt, args.rounds)
    trace_section(H, model, tm, xt, yt, args.probes, args.seed)


if __name__ == "__main__":
    main()
