"""Does the Hessian at an optimum count the features a network uses?  Overparametrized tanh
MLPs are trained to (near) zero loss on a teacher-student regression (the teacher has 4
hidden units) and on a subset of the digits, over widths, data sizes and weight decay.  At the
end of training, for each network:

* the dense Hessian H (one HVP per column), the generalized Gauss-Newton G = J^T H_out J and
  the empirical NTK Gram K = J J^T (J: per-sample output gradients, one VJP per output);
* how many eigenvalues stand above the bulk (> REL * lambda_max) for H, G and K, against the
  numerical rank (same REL on squared singular values) of the hidden features Phi (N x width)
  and the effective dimension sum lambda / (lambda + z), z = REL_Z * lambda_max;
* checks of the library on the way: Lanczos top-5 against the dense eigenvalues, SLQ's
  trace estimate against the exact trace;
* one filter-normalized loss slice per width.

For MSE, G = (2 / N C) J^T J, so G's nonzero eigenvalues are K's scaled: their counts agree
by construction; H differs from G by the residual term sum_i r_i d^2 f_i, which vanishes at
zero loss.  What the experiment measures is how the count moves with width, N and weight
decay, and whether it follows the rank of the features."""
from __future__ import annotations

import os
import time

import numpy as np

DESCRIPTION = ("Hessian vs GGN vs NTK-Gram spectra of MLPs trained to ~zero loss: outliers above "
               "the bulk against feature rank, over width, data size and weight decay")

REL = 1e-3       # "above the bulk": eigenvalue > REL * lambda_max
REL_Z = 1e-2     # effective dimension scale z = REL_Z * lambda_max


def add_arguments(parser):
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="full-batch Adam steps")


def _configs(quick):
    if quick:
        reg = [("teacher", w, n, wd) for w, n, wd in
               [(16, 32, 0.0), (64, 32, 0.0), (64, 96, 0.0), (64, 32, 1e-3)]]
        dig = [("digits", 16, 60, 0.0)]
        return reg + dig, 400
    reg = [("teacher", w, n, 0.0) for w in (16, 64, 192) for n in (32, 128, 384)]
    reg += [("teacher", 64, n, wd) for n in (32, 128) for wd in (1e-3, 1e-2)]
    dig = [("digits", w, n, wd) for w, n, wd in
           [(16, 100, 0.0), (32, 100, 0.0), (32, 200, 0.0), (32, 100, 1e-3)]]
    return reg + dig, 2000


def _data(task, n, seed):
    import deepcalc as dc
    if task == "teacher":
        ds = dc.data.teacher_regression(n, 8, 1, hidden=(4,), seed=seed, dtype=np.float64)
        x, y = ds.arrays
        return x, y, 1
    train, _ = dc.data.load_digits(seed=seed, dtype=np.float64)
    x, y = train.arrays
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[:n]
    x = (x[idx] - x.mean(0)) / (x.std(0) + 0.1)
    return x, y[idx], 10


def _loss(task):
    from deepcalc.nn import functional as F
    return F.mse_loss if task == "teacher" else F.cross_entropy


def _train(model, loss_fn, x, y, wd, steps):
    """Full-batch Adam with L2 weight decay added to the loss (so the optimum is the one the
    Hessian of loss + wd/2 ||theta||^2 describes; the spectra are of the data loss)."""
    import deepcalc as dc
    opt = dc.optim.Adam(model.parameters(), lr=1e-2)
    xt = dc.tensor(x)
    loss = None
    for s in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(xt), y)
        total = loss
        if wd:
            total = loss + 0.5 * wd * sum((p * p).sum() for p in model.parameters())
        total.backward()
        opt.step()
    return float(loss_fn(model(xt), y).item())


def _ggn_dense(task, model, x, J, c):
    """G = J^T blockdiag(H_out,i) J for the loss's mean over N (and C for MSE)."""
    import deepcalc as dc
    n = len(x)
    if task == "teacher":
        return 2.0 / (n * c) * J.T @ J
    with dc.no_grad():
        logits = model(dc.tensor(x)).data
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    G = np.zeros((J.shape[1], J.shape[1]))
    for i in range(n):
        Ji = J[i * c:(i + 1) * c]
        Hi = np.diag(p[i]) - np.outer(p[i], p[i])
        G += Ji.T @ Hi @ Ji
    return G / n


def _count(eigs, lam_max):
    return int(np.sum(eigs > REL * lam_max))


def _features(model, x):
    """Hidden activations Phi (N, width) of the first layer."""
    import deepcalc as dc
    layer = model.layers[0]
    with dc.no_grad():
        return np.tanh(x @ layer.weight.data.T + layer.bias.data)


def run_one(task, width, n, wd, steps, seed):
    """Train one network and measure its spectra; returns a dict of results (and arrays)."""
    import deepcalc as dc
    import deepcalc.curvature as cv
    x, y, c = _data(task, n, seed)
    dc.manual_seed(seed)
    model = dc.nn.MLP([x.shape[1], width, c], activation="tanh", dtype=np.float64)
    loss_fn = _loss(task)
    t0 = time.perf_counter()
    final = _train(model, loss_fn, x, y, wd, steps)
    xt = dc.tensor(x)
    H_op = cv.HessianOperator(model, loss_fn, (xt, y))
    H = H_op.to_dense()
    lam_h = np.linalg.eigvalsh((H + H.T) / 2)[::-1]
    J = cv.output_jacobian(model, xt)
    G = _ggn_dense(task, model, x, J, c)
    lam_g = np.linalg.eigvalsh((G + G.T) / 2)[::-1]
    lam_k = np.linalg.eigvalsh(J @ J.T)[::-1]
    phi = _features(model, x)
    sv2 = np.linalg.svd(phi, compute_uv=False) ** 2
    top, _ = cv.top_eigenvalues(H_op, k=5, tol=1e-8, generator=seed)
    dens = cv.density(H_op, n_iter=60, n_vec=4, generator=seed)
    lmax = float(lam_h[0])
    z = REL_Z * lmax
    res = {
        "task": task, "width": width, "n": n, "weight_decay": wd, "params": H.shape[0],
        "final_loss": final, "lambda_max_H": lmax, "lambda_max_G": float(lam_g[0]),
        "lambda_min_H": float(lam_h[-1]),
        "count_H": _count(lam_h, lmax), "count_G": _count(lam_g, float(lam_g[0])),
        "count_K": _count(lam_k, float(lam_k[0])), "feature_rank": _count(sv2, sv2[0]),
        "count_H_1e-2": int(np.sum(lam_h > 1e-2 * lmax)),
        "count_G_1e-2": int(np.sum(lam_g > 1e-2 * lam_g[0])),
        "feature_rank_1e-2": int(np.sum(sv2 > 1e-2 * sv2[0])),
        "outputs": n * c, "effective_dim_H": cv.effective_dimension(lam_h, z=z),
        "effective_dim_G": cv.effective_dimension(lam_g, z=z),
        "H_minus_G_rel": float(np.linalg.norm(H - G) / np.linalg.norm(H)),
        "lanczos_top5_rel_err": float(np.max(np.abs(top - lam_h[:5]) / abs(lmax))),
        "slq_trace_rel_err": float(abs(dens.spectral_sum(lambda t: t) - lam_h.sum()) /
                                   np.abs(lam_h).sum()),
        "seconds": time.perf_counter() - t0,
    }
    sl = cv.loss_slice(model, loss_fn, (xt, y), alphas=np.linspace(-1, 1, 31), generator=seed)
    arrays = {"lam_h": lam_h, "lam_g": lam_g, "lam_k_scaled": lam_k * lam_g[0] / lam_k[0],
              "density": dens, "slice": sl}
    return res, arrays


def _plot(out, rows, arrays):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    # 1: spectra of one network: H, G and the (rescaled) Gram
    i = next(j for j, r in enumerate(rows) if r["task"] == "teacher" and r["weight_decay"] == 0)
    fig, ax = plt.subplots(figsize=(6, 4))
    a = arrays[i]
    m = min(len(a["lam_k_scaled"]) + 20, len(a["lam_h"]))
    ax.semilogy(np.abs(a["lam_h"][:m]), ".", label="|Hessian eigenvalue|")
    ax.semilogy(np.maximum(a["lam_g"][:m], 1e-16), "x", ms=3, label="GGN")
    ax.semilogy(a["lam_k_scaled"], "+", ms=3, label="NTK Gram (scaled to GGN's top)")
    ax.axhline(REL * a["lam_h"][0], color="gray", ls="--", lw=0.8, label=f"{REL:g} x lambda_max")
    r = rows[i]
    ax.set_title(f"teacher, width {r['width']}, N {r['n']}")
    ax.set_xlabel("index")
    ax.legend(fontsize=7)
    paths.append(_save(fig, os.path.join(out, "spectra.png")))
    # 2: counts against the feature rank and N
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        mk = {"teacher": "o", "digits": "s"}[r["task"]]
        col = "C0" if r["weight_decay"] == 0 else "C3"
        size = 15 + r["n"] / 4
        ax.scatter(r["feature_rank"], r["count_H"], marker=mk, color=col, s=size)
        ax.scatter(r["feature_rank"], r["count_G"], marker=mk, facecolors="none",
                   edgecolors=col, s=size)
    lim = max(max(r["feature_rank"] for r in rows), max(r["count_H"] for r in rows)) * 1.5
    ax.plot([1, lim], [1, lim], "k:", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"feature rank (hidden activations, {REL:g})")
    ax.set_ylabel(f"eigenvalues > {REL:g} lambda_max (filled H, hollow GGN)")
    ax.set_title("o teacher, s digits; red: weight decay; size ~ N", fontsize=9)
    paths.append(_save(fig, os.path.join(out, "counts.png")))
    # 3: SLQ density against the dense spectrum
    fig, ax = plt.subplots(figsize=(6, 4))
    d = a["density"]
    ax.hist(a["lam_h"], bins=80, density=True, alpha=0.4, label="dense eigenvalues")
    ax.plot(d.grid, d.values, label="SLQ (60 steps, 4 vectors)")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue")
    ax.legend(fontsize=7)
    paths.append(_save(fig, os.path.join(out, "density.png")))
    # 4: filter-normalized slices per width
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, a in zip(rows, arrays):
        if r["task"] == "teacher" and r["n"] == rows[0]["n"]:
            s = a["slice"]
            ax.plot(s.alphas, s.losses, label=f"width {r['width']}, wd {r['weight_decay']:g}")
    ax.set_xlabel("alpha (filter-normalized direction)")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    paths.append(_save(fig, os.path.join(out, "slices.png")))
    return paths


def _save(fig, path):
    from ..results import save_figure
    return save_figure(fig, path)


def main(args) -> int:
    import deepcalc as dc
    from ..results import markdown_table, write_json, write_text
    dc.set_num_threads(getattr(args, "threads", 1) or 1)
    configs, steps = _configs(args.quick)
    steps = getattr(args, "steps", None) or steps
    os.makedirs(args.out, exist_ok=True)
    rows, arrays = [], []
    for task, width, n, wd in configs:
        r, a = run_one(task, width, n, wd, steps, args.seed)
        rows.append(r)
        arrays.append(a)
        print(f"{task:8} width {width:4} N {n:4} wd {wd:<6g} loss {r['final_loss']:.2e}  "
              f"count H {r['count_H']:4} G {r['count_G']:4} K {r['count_K']:4} features "
              f"{r['feature_rank']:4}  ({r['seconds']:.1f} s)")
    keys = ["task", "width", "n", "weight_decay", "params", "final_loss", "lambda_max_H",
            "count_H", "count_G", "count_K", "feature_rank", "count_H_1e-2", "count_G_1e-2",
            "feature_rank_1e-2", "outputs", "effective_dim_H",
            "H_minus_G_rel", "lanczos_top5_rel_err", "slq_trace_rel_err"]
    table = markdown_table(keys, [[r[k] for k in keys] for r in rows])
    try:
        figures = _plot(args.out, rows, arrays)
    except ImportError:
        figures = []
    write_text(os.path.join(args.out, "results.md"),
               f"# Curvature: Hessian / GGN / NTK-Gram counts\n\nAbove the bulk: eigenvalue > "
               f"{REL:g} lambda_max; feature rank: squared singular values of the hidden "
               f"activations > {REL:g} of the largest; {steps} full-batch Adam steps.\n\n" +
               table)
    write_json(os.path.join(args.out, "results.json"),
               {"rel_threshold": REL, "rel_z": REL_Z, "steps": steps, "quick": args.quick,
                "runs": rows, "figures": [os.path.basename(p) for p in figures]})
    print(f"wrote {args.out}/results.md, results.json" +
          (", " + ", ".join(os.path.basename(p) for p in figures) if figures else ""))
    return 0
