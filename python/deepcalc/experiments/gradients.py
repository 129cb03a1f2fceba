"""Vanishing and exploding gradients in deep MLPs: for depth x width x activation (sigmoid, tanh,
ReLU) x initialization (standard normal, Xavier, He, NTK, muP) x with / without BatchNorm, on
the digits (standardized): the gradient norm of every layer's weight at initialization and
during training, the singular values of the input-output Jacobian at initialization, and which
configurations train (SGD with momentum, the same learning rate for all).

And the theory for deep linear networks f(x) = W_L ... W_1 x with W_l ~ N(0, sigma^2 / fan_in):
with L = <c, f(x)>, dL/dW_l = (W_L..W_{l+1})^T c (W_{l-1}..W_1 x)^T and, since
||W^T v||^2 / ||v||^2 for a Gaussian W does not depend on v's direction, E ||dL/dW_l||^2 =
sigma^(2(L-1)) ||c||^2 ||x||^2 exactly for every layer: the gradient norm scales like
sigma^depth.  The measured root-mean-square over draws is set against it."""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np

DESCRIPTION = ("gradient norms per layer, Jacobian singular values and trainability of deep MLPs "
               "(activations x inits x BatchNorm); deep linear nets against sigma^depth")

ACTIVATIONS = ("sigmoid", "tanh", "relu")
INITS = ("standard_normal", "xavier", "he", "ntk", "mup")


def add_arguments(parser):
    parser.add_argument("--threads", type=int, default=1,
                        help="kernel threads (1: small matrices gain nothing from more, and a "
                             "busy machine stalls multi-threaded kernels)")
    parser.add_argument("--depths", type=str, default=None,
                        help="comma-separated depths (number of weight layers)")
    parser.add_argument("--widths", type=str, default=None, help="comma-separated widths")
    parser.add_argument("--steps", type=int, default=None, help="SGD steps per configuration")
    parser.add_argument("--lr", type=float, default=0.01)


def make_mlp(depth, width, activation, init, batchnorm, in_dim, out_dim, dtype=np.float32):
    """``depth`` weight layers of ``width`` with ``init``; with BatchNorm every hidden
    Linear is followed by BatchNorm1d and then the activation (Linear -> BN -> act)."""
    import deepcalc as dc
    sizes = [in_dim] + [width] * (depth - 1) + [out_dim]
    mlp = dc.nn.MLP(sizes, activation=activation, init=init, dtype=dtype)
    if not batchnorm:
        return mlp
    act = {"sigmoid": dc.nn.Sigmoid, "tanh": dc.nn.Tanh, "relu": dc.nn.ReLU}[activation]
    mods = []
    for i, layer in enumerate(mlp.layers):
        if i < len(mlp.layers) - 1:
            layer.activation = None
            mods += [layer, dc.nn.BatchNorm1d(layer.out_features, dtype=dtype), act()]
        else:
            mods.append(layer)
    return dc.nn.Sequential(*mods)


def _linear_layers(model):
    import deepcalc as dc
    return [m for m in model.modules() if isinstance(m, dc.nn.Linear)]


def _norm(a) -> float:
    """||a|| in float64 (a float32 gradient of 1e20 has a norm; its square overflows)."""
    return float(np.linalg.norm(np.asarray(a, np.float64).ravel()))


def _weight_grad_norms(model, loss_fn, x, y):
    import deepcalc as dc
    model.zero_grad()
    loss = loss_fn(model(dc.tensor(x)), y)
    loss.backward()
    return float(loss.item()), [_norm(l.weight.grad.data)
                                if l.weight.grad is not None else 0.0
                                for l in _linear_layers(model)]


def _accuracy(model, x, y):
    import deepcalc as dc
    model.eval()
    with dc.no_grad():
        out = model(dc.tensor(x)).data
    model.train()
    return float((out.argmax(axis=1) == y).mean()) if np.isfinite(out).all() else 0.0


def run_config(depth, width, activation, init, batchnorm, data, steps, lr, seed, snapshots=3,
               spectrum_examples=2):
    """One configuration: gradient norms at init and at ``snapshots`` points of training, the
    Jacobian's singular values at init, the training curve, final accuracy."""
    import deepcalc as dc
    from deepcalc.diagnose import jacobian_spectrum
    from deepcalc.nn import functional as F
    xtr, ytr = data
    dc.manual_seed(seed)
    model = make_mlp(depth, width, activation, init, batchnorm, xtr.shape[1], 10)
    rng = np.random.default_rng(seed)
    probe = rng.choice(len(xtr), 128, replace=False)
    loss0, g0 = _weight_grad_norms(model, F.cross_entropy, xtr[probe], ytr[probe])
    spec = jacobian_spectrum(model, xtr[probe[:16]], layers=[], examples=spectrum_examples)
    opt = dc.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    at = set(np.linspace(0, steps - 1, snapshots).astype(int).tolist()) if steps else set()
    during, losses, diverged = {}, [], False
    for step in range(steps):
        idx = rng.integers(0, len(xtr), 64)
        loss = F.cross_entropy(model(dc.tensor(xtr[idx])), ytr[idx])
        value = float(loss.item())
        if not math.isfinite(value):
            diverged = True
            break
        losses.append(value)
        opt.zero_grad()
        loss.backward()
        if step in at:
            during[step] = [_norm(l.weight.grad.data)
                            for l in _linear_layers(model)]
        opt.step()
    acc = 0.0 if diverged else _accuracy(model, xtr, ytr)
    final = float(np.mean(losses[-20:])) if losses and not diverged else float("nan")
    s = spec["singular_values"][0]
    return {"depth": depth, "width": width, "activation": activation, "init": init,
            "batchnorm": batchnorm, "loss_init": loss0, "grad_norms_init": g0,
            "grad_norms_training": {str(k): v for k, v in during.items()},
            "jacobian_singular_values": s, "jacobian_log10_max": float(np.log10(s[0])),
            "jacobian_log10_min": float(np.log10(max(s[-1], 1e-300))),
            "isometry_gap": spec["isometry_gap"], "losses": losses, "diverged": diverged,
            "final_loss": final, "train_accuracy": acc,
            "trains": bool(not diverged and acc >= 0.5)}


def deep_linear_theory(depths, width, sigmas, draws, seed, out_dim=10):
    """Root-mean-square over ``draws`` of ||dL/dW_l|| (averaged over layers l) for
    L = <c, f(x)>, unit c and x, against sigma^(L-1).  The input has ``width`` features, so
    every forward factor E||W a||^2 / ||a||^2 = sigma^2 fan_out / fan_in is sigma^2 (the
    backward factors E||W^T v||^2 / ||v||^2 are sigma^2 for any shape)."""
    import deepcalc as dc
    rng = np.random.default_rng(seed)
    in_dim = width
    x = rng.standard_normal((1, in_dim))
    x /= np.linalg.norm(x)
    c = rng.standard_normal((1, out_dim))
    c /= np.linalg.norm(c)
    out = {}
    for sigma in sigmas:
        measured, per_layer_deepest = [], None
        for L in depths:
            sizes = [in_dim] + [width] * (L - 1) + [out_dim]
            sq = np.zeros(L)
            for _ in range(draws):
                net = dc.nn.MLP(sizes, activation=None, bias=False, dtype=np.float64)
                for layer in net.layers:
                    layer.weight.data[...] = rng.standard_normal(layer.weight.shape) * \
                        (sigma / math.sqrt(layer.in_features))
                loss = (net(dc.tensor(x)) * dc.tensor(c)).sum()
                loss.backward()
                sq += [float(np.vdot(l.weight.grad.data, l.weight.grad.data))
                       for l in net.layers]
            rms = np.sqrt(sq / draws)
            measured.append(float(np.sqrt(np.mean(rms ** 2))))
            if L == max(depths):
                per_layer_deepest = rms.tolist()
        theory = [sigma ** (L - 1) for L in depths]
        out[f"{sigma:g}"] = {"depths": list(depths), "measured_rms": measured, "theory": theory,
                             "rel_error": [abs(m / t - 1) for m, t in zip(measured, theory)],
                             "per_layer_rms_at_max_depth": per_layer_deepest}
    return out


def _load_data():
    import deepcalc as dc
    train, _ = dc.data.load_digits()
    x, y = (np.asarray(a) for a in train.arrays)
    x = ((x - x.mean(0)) / (x.std(0) + 1e-2)).astype(np.float32)
    return x, y.astype(np.int64)


def _figures(out, rows, linear, depths, widths):
    from deepcalc.diagnose.plot import _pyplot, save_figure
    plt = _pyplot()
    paths = []
    D, Wd = max(depths), max(widths)
    # 1. per-layer gradient norm at init, deepest x widest, one panel per activation
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, act in zip(axes, ACTIVATIONS):
        for j, init in enumerate(INITS):
            for bn in (False, True):
                r = _find(rows, D, Wd, act, init, bn)
                if r:
                    ax.plot(np.arange(1, D + 1), np.maximum(r["grad_norms_init"], 1e-30),
                            color=f"C{j}", ls="--" if bn else "-",
                            label=f"{init}{' +BN' if bn else ''}")
        ax.set_yscale("log")
        ax.set_xlabel("layer (1 = input side)")
        ax.set_title(f"{act}, depth {D}, width {Wd}: ||dL/dW_l|| at init")
    axes[0].legend(fontsize=6, ncol=2)
    paths.append(save_figure(fig, os.path.join(out, "grad_norms_init.png")))
    # 2. during training, for a few configurations
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    picks = [("tanh", "xavier"), ("relu", "he"), ("sigmoid", "standard_normal")]
    for ax, (act, init) in zip(axes, picks):
        for bn, ls in ((False, "-"), (True, "--")):
            r = _find(rows, D, min(widths), act, init, bn)
            if not r:
                continue
            for k, (step, g) in enumerate(sorted(r["grad_norms_training"].items(),
                                                 key=lambda kv: int(kv[0]))):
                ax.plot(np.arange(1, len(g) + 1), np.maximum(g, 1e-30), color=f"C{k}", ls=ls,
                        label=f"step {step}{' +BN' if bn else ''}")
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(f"{act}/{init}, depth {D}, width {min(widths)}: during training")
        ax.legend(fontsize=6)
    paths.append(save_figure(fig, os.path.join(out, "grad_norms_training.png")))
    # 3. Jacobian singular values at init
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, act in zip(axes, ACTIVATIONS):
        for j, init in enumerate(INITS):
            for bn in (False, True):
                r = _find(rows, D, Wd, act, init, bn)
                if r:
                    s = np.maximum(np.asarray(r["jacobian_singular_values"]), 1e-300)
                    ax.plot(np.arange(1, len(s) + 1), s, color=f"C{j}", ls="--" if bn else "-",
                            label=f"{init}{' +BN' if bn else ''}")
        ax.axhline(1, color="k", lw=0.7, ls=":")
        ax.set_yscale("log")
        ax.set_title(f"{act}: input-output Jacobian singular values")
    axes[0].legend(fontsize=6, ncol=2)
    paths.append(save_figure(fig, os.path.join(out, "jacobian_singular_values.png")))
    # 4. trainability: final accuracy for every configuration
    configs = [(a, i) for a in ACTIVATIONS for i in INITS]
    cols = [(d, w, bn) for bn in (False, True) for d in depths for w in widths]
    grid = np.full((len(configs), len(cols)), np.nan)
    for r in rows:
        grid[configs.index((r["activation"], r["init"])),
             cols.index((r["depth"], r["width"], r["batchnorm"]))] = r["train_accuracy"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(cols), 0.9 + 0.32 * len(configs)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(configs)), [f"{a}/{i}" for a, i in configs], fontsize=7)
    ax.set_xticks(range(len(cols)), [f"d{d} w{w}{' BN' if bn else ''}" for d, w, bn in cols],
                  rotation=70, fontsize=7)
    fig.colorbar(im, ax=ax, label="train accuracy after training")
    paths.append(save_figure(fig, os.path.join(out, "trainability.png")))
    # 5. deep linear networks against the theory
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for j, (sigma, e) in enumerate(linear.items()):
        axes[0].plot(e["depths"], e["measured_rms"], "o-", color=f"C{j}",
                     label=f"sigma={sigma} measured")
        axes[0].plot(e["depths"], e["theory"], "--", color=f"C{j}", label="sigma^(L-1)")
        axes[1].plot(np.arange(1, len(e["per_layer_rms_at_max_depth"]) + 1),
                     e["per_layer_rms_at_max_depth"], color=f"C{j}", label=f"sigma={sigma}")
        axes[1].axhline(e["theory"][-1], color=f"C{j}", ls="--", lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("depth L")
    axes[0].set_ylabel("rms ||dL/dW_l||")
    axes[0].set_title("deep linear: gradient norm vs depth")
    axes[0].legend(fontsize=7)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("layer")
    axes[1].set_title(f"deep linear, depth {e['depths'][-1]}: per layer (dashed: theory)")
    axes[1].legend(fontsize=7)
    paths.append(save_figure(fig, os.path.join(out, "deep_linear.png")))
    return paths


def _find(rows, depth, width, act, init, bn):
    for r in rows:
        if (r["depth"], r["width"], r["activation"], r["init"], r["batchnorm"]) == \
                (depth, width, act, init, bn):
            return r
    return None


def run(out, quick=False, seed=0, depths=None, widths=None, steps=None, lr=0.01,
        activations=ACTIVATIONS, inits=INITS, linear_depths=None, linear_width=None,
        linear_draws=None, threads=1, progress=False):
    """The grid and the deep linear theory; writes the figures, results.md and results.json."""
    from . import num_threads
    with num_threads(threads):
        return _run(out, quick, seed, depths, widths, steps, lr, activations, inits,
                    linear_depths, linear_width, linear_draws, progress)


def _run(out, quick, seed, depths, widths, steps, lr, activations, inits, linear_depths,
         linear_width, linear_draws, progress):
    from deepcalc.results import markdown_table, write_json, write_text
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    depths = list(depths or ((2, 10) if quick else (2, 10, 20, 50)))
    widths = list(widths or ((64,) if quick else (64, 256)))
    steps = 40 if quick and steps is None else (steps if steps is not None else 150)
    data = _load_data()
    rows = []
    # configurations that explode overflow float32 on purpose: their inf / NaN are recorded
    # (as "inf" / "nan" in results.json), NumPy's overflow warnings are not printed
    with np.errstate(over="ignore", invalid="ignore"):
        for depth in depths:
            for width in widths:
                for act in activations:
                    for init in inits:
                        for bn in (False, True):
                            rows.append(run_config(depth, width, act, init, bn, data, steps,
                                                   lr, seed))
                            if progress:
                                r = rows[-1]
                                print(f"depth {depth} width {width} {act}/{init}"
                                      f"{' +BN' if bn else ''}: train accuracy "
                                      f"{r['train_accuracy']:.2f}", file=sys.stderr, flush=True)
    linear_depths = list(linear_depths or ((1, 2, 5, 10, 20) if quick else
                                           (1, 2, 5, 10, 20, 30, 40, 50)))
    linear = deep_linear_theory(linear_depths, linear_width or (64 if quick else 128),
                                (0.8, 1.0, 1.2), linear_draws or (10 if quick else 50), seed)
    figures = _figures(out, rows, linear, depths, widths)
    findings = _findings(rows, linear, depths)
    table = markdown_table(
        ["depth", "width", "act", "init", "BN", "||g_1|| at init", "||g_L|| at init",
         "log10 s_max(J)", "log10 s_min(J)", "final loss", "train acc", "trains"],
        [[r["depth"], r["width"], r["activation"], r["init"], "yes" if r["batchnorm"] else "no",
          r["grad_norms_init"][0], r["grad_norms_init"][-1],
          r["jacobian_log10_max"], r["jacobian_log10_min"], r["final_loss"],
          r["train_accuracy"], "yes" if r["trains"] else "no"] for r in rows])
    ltable = markdown_table(["sigma"] + [f"L={d}" for d in linear_depths],
                            [[s] + [f"{m:.3g} ({t:.3g})" for m, t in zip(e["measured_rms"],
                                                                        e["theory"])]
                             for s, e in linear.items()])
    md = ["# Gradients in deep MLPs", "",
          f"Digits (standardized), SGD lr {lr} momentum 0.9, batch 64, {steps} steps; "
          "'trains' = training accuracy >= 0.5 after training (chance 0.1). g_l = dL/dW_l at "
          "initialization (layer 1 next to the input); J = input-output Jacobian at init.", "",
          table, "## Deep linear networks: measured rms ||dL/dW_l|| (theory sigma^(L-1))", "",
          ltable, "## Findings", ""] + [f"- {f}" for f in findings] + [""]
    slim = [{k: v for k, v in r.items() if k != "losses"} | {"losses_every_10": r["losses"][::10]}
            for r in rows]
    results = {"experiment": "gradients", "quick": bool(quick), "seed": seed,
               "config": {"depths": depths, "widths": widths, "steps": steps, "lr": lr,
                          "activations": list(activations), "inits": list(inits)},
               "configs": slim, "deep_linear": linear, "findings": findings,
               "figures": [os.path.basename(p) for p in figures],
               "seconds": time.perf_counter() - t0}
    write_text(os.path.join(out, "results.md"), "\n".join(md))
    write_json(os.path.join(out, "results.json"), results)
    return results


def _findings(rows, linear, depths):
    f = []
    D = max(depths)
    for bn in (False, True):
        tr = [r for r in rows if r["batchnorm"] == bn]
        ok = sum(r["trains"] for r in tr)
        deep = [r for r in tr if r["depth"] == D]
        f.append(f"{'with' if bn else 'without'} BatchNorm: {ok}/{len(tr)} configurations train; "
                 f"at depth {D}: {sum(r['trains'] for r in deep)}/{len(deep)} (act/init that "
                 "train at some width: "
                 + ", ".join(sorted({f"{r['activation']}/{r['init']}" for r in deep
                                     if r["trains"]})) + ")")
    for act in ACTIVATIONS:
        for init in INITS:
            r = next((r for r in rows if (r["depth"], r["activation"], r["init"],
                                          r["batchnorm"]) == (D, act, init, False)), None)
            if r is None:
                continue
            g = np.asarray(r["grad_norms_init"], dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = g[0] / g[-1]
            kind = "overflow (NaN/Inf)" if not np.isfinite(g).all() else \
                "vanish toward the input" if ratio < 1e-2 else \
                "explode toward the input" if ratio > 1e2 else \
                "are below 1e-4 in every layer" if g.max() < 1e-4 else \
                "stay within 100x across layers"
            f.append(f"{act}/{init}, depth {D}, no BN: ||g_1|| = {g[0]:.2g}, ||g_L|| = "
                     f"{g[-1]:.2g}, ratio {ratio:.2g} (gradients {kind}); Jacobian log10 s in [{r['jacobian_log10_min']:.2g}, "
                     f"{r['jacobian_log10_max']:.2g}]; {'trains' if r['trains'] else 'does not train'}")
    for sigma, e in linear.items():
        f.append(f"deep linear, sigma = {sigma}: measured rms gradient norm within "
                 f"{100 * max(e['rel_error']):.0f}% of sigma^(L-1) at every depth up to "
                 f"{e['depths'][-1]} (the theory: {e['theory'][-1]:.3g} at the deepest)")
    return f


def main(args) -> int:
    parse = (lambda s: [int(v) for v in s.split(",")] if s else None)
    res = run(args.out, quick=args.quick, seed=args.seed, depths=parse(args.depths),
              widths=parse(args.widths), steps=args.steps, lr=args.lr, threads=args.threads,
              progress=True)
    for line in res["findings"]:
        print(line)
    print(f"wrote {args.out}/results.md, results.json and {len(res['figures'])} figures "
          f"in {res['seconds']:.0f} s")
    return 0
