"""Exploding and vanishing gradients in recurrent networks, and clipping as the fix.

Part 1: h_t = W h_{t-1} + U x_t (linear) and h_t = tanh(W h_{t-1} + U x_t), with W
diagonalizable (W = V diag(lam) V^-1, a real top eigenvalue rho and the others at most
0.7 rho in modulus) for rho = 0.9, 1.0, 1.1.  For every T the measured ||d h_T / d h_0|| (the
spectral norm, and along a fixed direction u: ||u^T d h_T / d h_0||) is set next to what the
eigenvalues predict: exactly ||V diag(lam^T) V^-1|| for the linear RNN, and asymptotically
rho^T ||v_1|| ||w_1|| (spectral) and rho^T |u.v_1| ||w_1|| (along u), where v_1 is the top right
eigenvector and w_1^T the top row of V^-1 (the left eigenvector).

Part 2: the adding problem (Hochreiter & Schmidhuber 1997; sequences of (value, marker) pairs,
the target the sum of the two marked values) at T = 50 and 100, trained with SGD from the same
initializations and batches without clipping, with clip_grad_norm_ and with clip_grad_value_,
over several seeds: loss curves and how often training diverges (a loss that is NaN/Inf or
above ``--diverge-loss``)."""
from __future__ import annotations

import os
import time

import numpy as np

DESCRIPTION = ("exploding/vanishing gradients in RNNs (||d h_T / d h_0|| vs W's eigenvalues) and "
               "the adding problem with and without gradient clipping")


def add_arguments(parser):
    parser.add_argument("--threads", type=int, default=1,
                        help="kernel threads (1: small matrices gain nothing from more, and a "
                             "busy machine stalls multi-threaded kernels)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden size (part 2)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per setting (part 2)")
    parser.add_argument("--steps", type=int, default=None, help="SGD steps per run (part 2)")
    parser.add_argument("--diverge-loss", type=float, default=1e3,
                        help="a training loss above this counts as diverged")


# --- part 1: gradient norms against the eigenvalues ---------------------------------------------

def _diagonalizable_w(rng, H, rho):
    """W = V diag(lam) V^-1: lam_1 = rho, the rest uniform in [-0.7 rho, 0.7 rho]; V Gaussian
    (not orthogonal, so W is not normal and ||W^k|| != rho^k)."""
    lam = np.concatenate([[rho], rng.uniform(-0.7 * rho, 0.7 * rho, H - 1)])
    V = rng.standard_normal((H, H))
    Vinv = np.linalg.inv(V)
    return V @ np.diag(lam) @ Vinv, lam, V, Vinv


def gradient_norms_vs_eigenvalues(rhos=(0.9, 1.0, 1.1), Ts=(1, 2, 5, 10, 20, 40, 60, 80, 100),
                                  H=16, N=4, seed=0) -> dict:
    """For each rho and each nonlinearity ('identity', 'tanh'): the measured norms for every T
    in Ts, and the eigenvalue predictions."""
    import deepcalc as dc
    from deepcalc.diagnose import rnn_gradient_norms
    rng = np.random.default_rng(seed)
    x_all = rng.standard_normal((max(Ts), N, 2))
    u = rng.standard_normal(H)
    u /= np.linalg.norm(u)
    out = {}
    for rho in rhos:
        W, lam, V, Vinv = _diagonalizable_w(rng, H, rho)
        v1, w1 = V[:, 0], Vinv[0]
        entry = {"T": list(Ts), "eigenvalues": lam,
                 "exact_spectral": [np.linalg.norm(V @ np.diag(lam ** T) @ Vinv, 2) for T in Ts],
                 "exact_along_u": [np.linalg.norm(u @ V @ np.diag(lam ** T) @ Vinv) for T in Ts],
                 "predicted_spectral": [rho ** T * np.linalg.norm(v1) * np.linalg.norm(w1)
                                        for T in Ts],
                 "predicted_along_u": [rho ** T * abs(u @ v1) * np.linalg.norm(w1) for T in Ts]}
        for nonlin in ("identity", "tanh"):
            m = dc.nn.RNN(2, H, nonlinearity=nonlin, dtype=np.float64, generator=rng)
            m.weight_hh_l0.data[...] = W
            spectral, along = [], []
            for T in Ts:
                x = x_all[:T]
                spectral.append(float(rnn_gradient_norms(m, x)[0]))
                along.append(float(rnn_gradient_norms(m, x, cotangent=u)[0]))
            entry[nonlin] = {"spectral": spectral, "along_u": along}
        lin = entry["identity"]
        entry["max_rel_error_vs_exact"] = float(max(
            abs(a / b - 1) for a, b in zip(lin["spectral"] + lin["along_u"],
                                           entry["exact_spectral"] + entry["exact_along_u"])))
        rel = [abs(a / b - 1) for a, b in zip(lin["along_u"], entry["predicted_along_u"])]
        entry["rel_error_vs_prediction_along_u"] = rel
        # the first T from which the measured norm stays within 10% of rho^T * alignment
        within = [T for i, T in enumerate(Ts) if all(r <= 0.10 for r in rel[i:])]
        entry["within_10pct_from_T"] = within[0] if within else None
        out[f"{rho:g}"] = entry
    return out


# --- part 2: the adding problem ----------------------------------------------------------------

def adding_batch(rng, T, N, dtype=np.float32):
    """(x (T, N, 2), y (N, 1)): values U(0, 1), one marker in each half of the sequence."""
    values = rng.uniform(0, 1, (T, N))
    marks = np.zeros((T, N))
    first = rng.integers(0, T // 2, N)
    second = rng.integers(T // 2, T, N)
    marks[first, np.arange(N)] = 1
    marks[second, np.arange(N)] = 1
    x = np.stack([values, marks], axis=-1).astype(dtype)
    return x, (values * marks).sum(axis=0)[:, None].astype(dtype)


def _adding_model(H, seed):
    import deepcalc as dc

    class AddingNet(dc.nn.Module):
        """An RNN (ReLU, W_hh = I and zero biases: Le et al.'s IRNN) read out from h_T."""

        def __init__(self):
            super().__init__()
            gen = np.random.default_rng(seed)
            self.rnn = dc.nn.RNN(2, H, nonlinearity="relu", generator=gen)
            self.rnn.weight_hh_l0.data[...] = np.eye(H, dtype=np.float32)
            self.rnn.bias_ih_l0.data[...] = 0
            self.rnn.bias_hh_l0.data[...] = 0
            self.out = dc.nn.Linear(H, 1)
            self.out.weight.data[...] = gen.uniform(-1, 1, (1, H)) / np.sqrt(H)

        def forward(self, x):
            _, h = self.rnn(x)
            return self.out(h[0])
    return AddingNet()


def train_adding(T, H, steps, seed, clip, lr, clip_norm, clip_value, diverge_loss, batch=32):
    """One run of SGD on fresh adding-problem batches; returns the loss per step (up to the
    divergence, if any), whether it diverged and at which step."""
    import deepcalc as dc
    from deepcalc.nn import functional as F
    net = _adding_model(H, seed)
    opt = dc.optim.SGD(net.parameters(), lr=lr)
    rng = np.random.default_rng(10_000 + seed)     # the same batches for every clipping mode
    losses, grad_norms = [], []
    for step in range(steps):
        x, y = adding_batch(rng, T, batch)
        loss = F.mse_loss(net(dc.tensor(x)), dc.tensor(y))
        value = float(loss.item())
        if not np.isfinite(value) or value > diverge_loss:
            return {"losses": losses, "grad_norms": grad_norms, "diverged": True,
                    "diverged_at": step}
        losses.append(value)
        opt.zero_grad()
        loss.backward()
        params = list(net.parameters())
        grad_norms.append(float(np.sqrt(sum(float(np.vdot(p.grad.data, p.grad.data))
                                            for p in params))))
        if clip == "norm":
            dc.optim.clip_grad_norm_(params, clip_norm)
        elif clip == "value":
            dc.optim.clip_grad_value_(params, clip_value)
        opt.step()
    return {"losses": losses, "grad_norms": grad_norms, "diverged": False, "diverged_at": None}


# --- figures, table, entry point ---------------------------------------------------------------

def _figures(out, part1, part2):
    from deepcalc.diagnose.plot import _pyplot, save_figure
    plt = _pyplot()
    rhos = list(part1)
    fig, axes = plt.subplots(1, len(rhos), figsize=(4.6 * len(rhos), 3.8), squeeze=False)
    for ax, rho in zip(axes[0], rhos):
        e = part1[rho]
        T = e["T"]
        ax.plot(T, e["identity"]["spectral"], "o-", label="linear, measured ||dh_T/dh_0||")
        ax.plot(T, e["predicted_spectral"], "k--", lw=1, label="rho^T ||v1|| ||w1||")
        ax.plot(T, e["identity"]["along_u"], "s-", label="linear, measured ||u^T dh_T/dh_0||")
        ax.plot(T, e["predicted_along_u"], "k:", lw=1, label="rho^T |u.v1| ||w1||")
        ax.plot(T, e["tanh"]["spectral"], "^-", label="tanh, measured ||dh_T/dh_0||")
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_title(f"spectral radius {rho}")
    axes[0][0].legend(fontsize=6)
    paths = [save_figure(fig, os.path.join(out, "rnn_gradient_norms.png"))]
    for T, runs in part2.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        colors = {"none": "C3", "norm": "C0", "value": "C2"}
        for clip, seeds in runs.items():
            for i, r in enumerate(seeds):
                ls = r["losses"]
                ax.plot(np.arange(len(ls)), _smooth(ls), color=colors[clip], alpha=0.7, lw=1,
                        label=f"clip={clip}" if i == 0 else None)
                if r["diverged"]:
                    ax.plot([max(len(ls) - 1, 0)], [ls[-1] if ls else 1.0], "x",
                            color=colors[clip])
        ax.axhline(1 / 6, color="k", ls="--", lw=0.8, label="predict 1 (MSE 1/6)")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("MSE (moving average of 20)")
        ax.set_title(f"adding problem, T = {T} (x: diverged)")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, os.path.join(out, f"adding_T{T}.png")))
    return paths


def _smooth(v, k=20):
    v = np.asarray(v, dtype=np.float64)
    if len(v) < 2:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    w = np.minimum(np.arange(1, len(v) + 1), k)
    return (c[1:] - c[np.arange(1, len(v) + 1) - w]) / w


def run(out, quick=False, seed=0, hidden=None, seeds=None, steps=None, diverge_loss=1e3,
        Ts_adding=None, lr=1e-3, clip_norm=1.0, clip_value=0.1, part1_Ts=None,
        part1_hidden=None, threads=1):
    """Both parts; writes rnn_gradient_norms.png, adding_T*.png, results.md and results.json
    into ``out`` and returns the results."""
    from . import num_threads
    with num_threads(threads):
        return _run(out, quick, seed, hidden, seeds, steps, diverge_loss, Ts_adding, lr,
                    clip_norm, clip_value, part1_Ts, part1_hidden)


def _run(out, quick, seed, hidden, seeds, steps, diverge_loss, Ts_adding, lr, clip_norm,
         clip_value, part1_Ts, part1_hidden):
    from deepcalc.results import markdown_table, write_json, write_text
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    part1_Ts = part1_Ts or ((1, 2, 5, 10, 20, 30, 40, 50) if quick else
                            (1, 2, 5, 10, 20, 30, 40, 60, 80, 100))
    part1 = gradient_norms_vs_eigenvalues(Ts=part1_Ts, H=part1_hidden or (12 if quick else 16),
                                          seed=seed)
    hidden = hidden or (32 if quick else 64)
    seeds = seeds or (3 if quick else 5)
    steps = steps or (150 if quick else 1500)
    Ts_adding = Ts_adding or ((50,) if quick else (50, 100))
    part2 = {}
    for T in Ts_adding:
        part2[T] = {clip: [train_adding(T, hidden, steps, seed + s, clip, lr, clip_norm,
                                        clip_value, diverge_loss) for s in range(seeds)]
                    for clip in ("none", "norm", "value")}
    figures = _figures(out, part1, part2)
    rows1 = []
    for rho, e in part1.items():
        rows1.append([rho, e["max_rel_error_vs_exact"], max(e["rel_error_vs_prediction_along_u"]
                                                            [-3:]),
                      e["within_10pct_from_T"], e["identity"]["spectral"][-1],
                      e["tanh"]["spectral"][-1], e["predicted_spectral"][-1]])
    rows2, summary2 = [], {}
    for T, runs in part2.items():
        for clip, rs in runs.items():
            div = sum(r["diverged"] for r in rs)
            finals = [np.mean(r["losses"][-50:]) for r in rs if not r["diverged"] and r["losses"]]
            final = float(np.median(finals)) if finals else float("nan")
            peak = float(np.median([max(r["grad_norms"]) if r["grad_norms"] else float("nan")
                                    for r in rs]))
            rows2.append([T, clip, f"{div}/{len(rs)}", final, peak])
            summary2[f"T{T}_{clip}"] = {"diverged": div, "runs": len(rs),
                                        "median_final_loss": final,
                                        "median_peak_grad_norm": peak}
    findings = _findings(part1, summary2, Ts_adding)
    Tlast = part1_Ts[-1]
    md = ["# RNN gradients: eigenvalues, and clipping on the adding problem", "",
          f"Part 1 (H = {part1_hidden or (12 if quick else 16)}, T up to {Tlast}, float64): "
          "||d h_T / d h_0|| measured by `dc.diagnose.rnn_gradient_norms`.", "",
          markdown_table(["rho", "linear: max rel. error vs exact V lam^T V^-1",
                          "linear: rel. error vs rho^T alignment (last 3 T)",
                          "within 10% from T", f"linear ||dh/dh0|| at T={Tlast}",
                          f"tanh ||dh/dh0|| at T={Tlast}", f"predicted at T={Tlast}"], rows1),
          f"Part 2: adding problem, IRNN (ReLU, W_hh = I), hidden {hidden}, SGD lr {lr}, "
          f"{steps} steps, batch 32, {seeds} seeds; clip_grad_norm_({clip_norm}), "
          f"clip_grad_value_({clip_value}); baseline MSE (always predict 1) = 1/6.", "",
          markdown_table(["T", "clipping", "diverged", "median final MSE (last 50 steps)",
                          "median peak grad norm"], rows2),
          "## Findings", ""] + [f"- {f}" for f in findings] + [""]
    results = {"experiment": "rnn", "quick": bool(quick), "seed": seed,
               "config": {"hidden": hidden, "seeds": seeds, "steps": steps, "lr": lr,
                          "clip_norm": clip_norm, "clip_value": clip_value,
                          "Ts_adding": list(Ts_adding), "part1_Ts": list(part1_Ts),
                          "diverge_loss": diverge_loss},
               "eigenvalue_prediction": part1,
               "adding": {f"T{T}": {clip: [{"losses": r["losses"], "diverged": r["diverged"],
                                             "diverged_at": r["diverged_at"]} for r in rs]
                                     for clip, rs in runs.items()} for T, runs in part2.items()},
               "adding_summary": summary2, "findings": findings,
               "figures": [os.path.basename(p) for p in figures],
               "seconds": time.perf_counter() - t0}
    write_text(os.path.join(out, "results.md"), "\n".join(md))
    write_json(os.path.join(out, "results.json"), results)
    return results


def _findings(part1, summary2, Ts_adding):
    f = []
    for rho, e in part1.items():
        f.append(f"rho = {rho}: the linear RNN's measured norms equal V diag(lam^T) V^-1's to "
                 f"{e['max_rel_error_vs_exact']:.1e} (relative); they are within 10% of "
                 f"rho^T x alignment from T = {e['within_10pct_from_T']}"
                 + ("" if e["within_10pct_from_T"] is not None else " (never)") +
                 f"; at the largest T the tanh RNN's norm is {e['tanh']['spectral'][-1]:.3g} "
                 f"against the linear one's {e['identity']['spectral'][-1]:.3g}.")
    for T in Ts_adding:
        none, norm, value = (summary2[f"T{T}_{c}"] for c in ("none", "norm", "value"))
        f.append(f"adding problem T = {T}: without clipping {none['diverged']}/{none['runs']} "
                 f"runs diverged, with norm clipping {norm['diverged']}/{norm['runs']}, with value "
                 f"clipping {value['diverged']}/{value['runs']}; median final MSE "
                 f"{none['median_final_loss']:.3g} / {norm['median_final_loss']:.3g} / "
                 f"{value['median_final_loss']:.3g} (baseline 0.167).")
    return f


def main(args) -> int:
    res = run(args.out, quick=args.quick, seed=args.seed, hidden=args.hidden, seeds=args.seeds,
              steps=args.steps, diverge_loss=args.diverge_loss, threads=args.threads)
    for line in res["findings"]:
        print(line)
    print(f"wrote {args.out}/results.md, results.json and {len(res['figures'])} figures "
          f"in {res['seconds']:.0f} s")
    return 0
