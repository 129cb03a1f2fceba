"""What BatchNorm does, after Santurkar et al. (2018, "How Does Batch Normalization Help
Optimization?"): one deep ReLU MLP (Linear -> [BatchNorm] -> ReLU, 10 weight layers or more)
trained by plain SGD as a standard network, with BatchNorm, and with noisy BatchNorm (the
library's ``BatchNorm1d(noise=True)``: noise of random mean and scale after each BatchNorm,
redrawn every step, i.e. internal covariate shift injected on purpose; at the library's default
noise level and at a milder one), at a small and a large
learning rate, on the digits and on a synthetic task that needs depth (a checkerboard of the
iterated tent map, Telgarsky 2016).  Recorded: training curves; at regular steps on a fixed
batch, internal covariate shift of every Linear layer by both measures of their Definition 2.1
(||G - G'|| and cos(G, G')); the loss-landscape range, gradient predictiveness and effective
beta-smoothness along the gradient (their figures 4, 5 and 7 in spirit).  The paper's claims
are then checked one by one against the numbers (results.md says which hold here)."""
from __future__ import annotations

import math
import os
import time

import numpy as np

DESCRIPTION = ("Santurkar et al.: standard vs BatchNorm vs noisy BatchNorm - training curves, "
               "internal covariate shift, loss landscape, gradient predictiveness, beta-smoothness")

VARIANTS = ("standard", "batchnorm", "noisy_batchnorm", "noisy_batchnorm_mild")
# BatchNorm1d(noise=True) parameters: the library's defaults (noise as large as the normalized
# signal) and a milder shift (mostly a per-feature mean that moves every step)
NOISE = {"noisy_batchnorm": {}, "noisy_batchnorm_mild": {"noise_mean": 0.5, "noise_std_min": 0.1,
                                                          "noise_std_max": 0.3}}
ETA_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)   # steps along the gradient, in units of the lr


def add_arguments(parser):
    parser.add_argument("--depth", type=int, default=None, help="weight layers (>= 10)")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--measure-every", type=int, default=None)
    parser.add_argument("--lrs", type=str, default=None, help="small,large learning rates")
    parser.add_argument("--threads", type=int, default=1,
                        help="kernel threads (1: small matrices gain nothing from more, and a "
                             "busy machine stalls multi-threaded kernels)")


# --- data -----------------------------------------------------------------------------------------

def tent_checkerboard(n, k=3, seed=0, dtype=np.float32):
    """x ~ U[0, 1]^2, label [g^k(x_1) > 1/2] xor [g^k(x_2) > 1/2] with the tent map
    g(t) = 1 - |2t - 1|: a 2^k x 2^k checkerboard, whose pieces a ReLU network makes with
    O(k) layers but needs exponentially many units to make with few (Telgarsky 2016)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 2))
    t = x.copy()
    for _ in range(k):
        t = 1 - np.abs(2 * t - 1)
    y = ((t[:, 0] > 0.5) ^ (t[:, 1] > 0.5)).astype(np.int64)
    return ((x - 0.5) * np.sqrt(12)).astype(dtype), y      # zero mean, unit variance


def _datasets(quick, seed):
    import deepcalc as dc
    train, _ = dc.data.load_digits(seed=seed)
    x, y = (np.asarray(a) for a in train.arrays)
    x = ((x - x.mean(0)) / (x.std(0) + 1e-2)).astype(np.float32)
    xs, ys = tent_checkerboard(2000 if quick else 4000, k=2, seed=seed)
    return {"digits": (x, y.astype(np.int64), 10), "checkerboard": (xs, ys, 2)}


# --- model ------------------------------------------------------------------------------------------

def make_model(variant, depth, width, in_dim, out_dim, seed):
    """Linear -> [BatchNorm1d] -> ReLU for every hidden layer, a Linear out; He initialization
    (the standard network trains at the small learning rate), the same weights for every
    variant of one seed."""
    import deepcalc as dc
    dc.manual_seed(seed)
    mlp = dc.nn.MLP([in_dim] + [width] * (depth - 1) + [out_dim], activation="relu", init="he")
    mods = []
    for i, layer in enumerate(mlp.layers):
        if i == len(mlp.layers) - 1:
            mods.append(layer)
            break
        layer.activation = None
        mods.append(layer)
        if variant != "standard":
            mods.append(dc.nn.BatchNorm1d(width, noise=variant in NOISE, **NOISE.get(variant, {}),
                                          generator=np.random.default_rng(seed + 1 + i)))
        mods.append(dc.nn.ReLU())
    model = dc.nn.Sequential(*mods)
    linear = [name for name, m in model.named_modules() if isinstance(m, dc.nn.Linear)]
    return model, linear


# --- one run ------------------------------------------------------------------------------------------

def measure(model, linear, x, y, lr):
    """ICS of every Linear layer and the landscape measures, on one batch."""
    from deepcalc.diagnose import along_gradient, internal_covariate_shift
    from deepcalc.nn import functional as F
    ics = internal_covariate_shift(model, F.cross_entropy, x, y, step=lr, layers=linear)
    along = along_gradient(model, F.cross_entropy, x, y, [lr * f for f in ETA_FACTORS])
    return {"ics_l2": [ics[n]["l2"] for n in linear],
            "ics_cosine": [ics[n]["cosine"] for n in linear],
            "ics_relative": [ics[n]["l2"] / ics[n]["grad_norm"] if ics[n]["grad_norm"] > 0
                             else float("nan") for n in linear],
            "loss_range": along["loss_range"], "losses_along": along["losses"],
            "gradient_change": along["gradient_change"], "grad_norm": along["grad_norm"],
            "beta_smoothness": along["beta_smoothness"]}


def train_run(variant, data, depth, width, lr, steps, measure_every, seed, batch=64):
    import deepcalc as dc
    from deepcalc.nn import functional as F
    x_all, y_all, classes = data
    model, linear = make_model(variant, depth, width, x_all.shape[1], classes, seed)
    opt = dc.optim.SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed + 7)
    probe = rng.choice(len(x_all), 256, replace=False)
    xm, ym = dc.tensor(x_all[probe]), y_all[probe]
    losses, points, diverged = [], [], False
    t_train = t_measure = 0.0
    for step in range(steps):
        if step % measure_every == 0:
            t0 = time.perf_counter()
            m = measure(model, linear, xm, ym, lr)
            t_measure += time.perf_counter() - t0
            m["step"] = step
            points.append(m)
        t0 = time.perf_counter()
        idx = rng.integers(0, len(x_all), batch)
        loss = F.cross_entropy(model(dc.tensor(x_all[idx])), y_all[idx])
        value = float(loss.item())
        if not math.isfinite(value) or value > 1e4:
            diverged = True
            break
        losses.append(value)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t_train += time.perf_counter() - t0
    model.eval()
    with dc.no_grad():
        out = model(dc.tensor(x_all)).data
    acc = float((out.argmax(1) == y_all).mean()) if np.isfinite(out).all() else 0.0
    return {"variant": variant, "lr": lr, "classes": classes, "losses": losses,
            "diverged": diverged,
            "final_loss": float(np.mean(losses[-20:])) if losses and not diverged
            else float("nan"), "train_accuracy": 0.0 if diverged else acc, "points": points,
            "layers": linear, "seconds_training": t_train, "seconds_measuring": t_measure,
            "steps_done": len(losses)}


# --- claims ---------------------------------------------------------------------------------------

def _median(points, key, reduce_layers=True):
    vals = []
    for p in points:
        v = p[key]
        vals.extend(np.asarray(v, dtype=np.float64).ravel().tolist() if reduce_layers
                    else [v])
    vals = np.asarray(vals)
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if vals.size else float("nan")


def _trains(r) -> bool:
    """Training accuracy at least halfway from chance (1 / classes) to 1."""
    chance = 1.0 / r["classes"]
    return not r["diverged"] and r["train_accuracy"] >= chance + 0.5 * (1 - chance)


def check_claims(runs) -> list[dict]:
    """Each claim of the paper against the runs: per (dataset, lr) setting, whether it holds.
    ``runs``: {dataset: {lr: {variant: run}}}."""
    settings = [(d, lr) for d in runs for lr in runs[d]]
    small, large = {}, {}
    for d in runs:
        lrs = sorted(runs[d])
        small[d], large[d] = lrs[0], lrs[-1]

    def loss_of(r):
        return r["final_loss"] if not r["diverged"] else float("inf")

    def per_setting(fn):
        return {f"{d} lr={lr:g}": fn(runs[d][lr]) for d, lr in settings}

    claims = []

    def add(name, paper, held, detail):
        n_hold = sum(bool(v) for v in held.values())
        verdict = "reproduced" if n_hold == len(held) else \
            "partly reproduced" if n_hold else "not reproduced"
        claims.append({"claim": name, "paper": paper, "holds": held, "verdict": verdict,
                       "detail": detail})

    add("BatchNorm trains faster", "Fig. 1: BN reaches a lower training loss sooner",
        per_setting(lambda v: loss_of(v["batchnorm"]) < loss_of(v["standard"])),
        per_setting(lambda v: f"final loss BN {loss_of(v['batchnorm']):.3g} vs standard "
                              f"{loss_of(v['standard']):.3g}"))
    add("BatchNorm tolerates the large learning rate",
        "Fig. 1: the standard network suffers at a large lr, BN does not",
        {f"{d}": (loss_of(runs[d][large[d]]["batchnorm"]) < loss_of(runs[d][large[d]]["standard"])
                  and loss_of(runs[d][large[d]]["batchnorm"])
                  <= 1.5 * loss_of(runs[d][small[d]]["batchnorm"]) + 0.05) for d in runs},
        {f"{d}": f"large lr {large[d]:g}: BN {loss_of(runs[d][large[d]]['batchnorm']):.3g}, "
                 f"standard {loss_of(runs[d][large[d]]['standard']):.3g}; small lr: BN "
                 f"{loss_of(runs[d][small[d]]['batchnorm']):.3g}" for d in runs})
    for variant, what in (("noisy_batchnorm", "the library's default noise, std 1-2"),
                          ("noisy_batchnorm_mild", "mild noise, std 0.1-0.3")):
        add(f"noisy BatchNorm ({what}) still trains better than standard",
            "Fig. 2: injected covariate shift barely hurts; noisy BN still beats standard "
            "(here: it trains, i.e. accuracy at least halfway from chance to 1, and ends below "
            "the standard network's loss)",
            per_setting(lambda v, variant=variant: _trains(v[variant])
                        and loss_of(v[variant]) < loss_of(v["standard"])),
            per_setting(lambda v, variant=variant: f"final loss noisy {loss_of(v[variant]):.3g}, "
                                                   f"BN {loss_of(v['batchnorm']):.3g}, standard "
                                                   f"{loss_of(v['standard']):.3g}"))
    add("BatchNorm does not reduce internal covariate shift",
        "Fig. 3: ||G - G'|| with BN is as large or larger, cos(G, G') no closer to 1",
        per_setting(lambda v: _median(v["batchnorm"]["points"], "ics_l2")
                    >= _median(v["standard"]["points"], "ics_l2")
                    or _median(v["batchnorm"]["points"], "ics_cosine")
                    <= _median(v["standard"]["points"], "ics_cosine")),
        per_setting(lambda v: "median ICS l2 BN {:.3g} vs standard {:.3g}; cosine BN {:.3f} vs "
                              "standard {:.3f}".format(
                                  _median(v["batchnorm"]["points"], "ics_l2"),
                                  _median(v["standard"]["points"], "ics_l2"),
                                  _median(v["batchnorm"]["points"], "ics_cosine"),
                                  _median(v["standard"]["points"], "ics_cosine"))))
    for key, name, fig in (("loss_range", "BatchNorm smooths the loss landscape",
                            "Fig. 4a: smaller range of L along the gradient"),
                           ("gradient_change", "BatchNorm makes gradients more predictive",
                            "Fig. 4b: smaller ||g(w) - g(w - eta g)||"),
                           ("beta_smoothness", "BatchNorm lowers the effective beta-smoothness",
                            "Fig. 4c: smaller max gradient change per distance")):
        add(name, fig,
            per_setting(lambda v, key=key: _median(v["batchnorm"]["points"], key)
                        < _median(v["standard"]["points"], key)),
            per_setting(lambda v, key=key: f"median BN {_median(v['batchnorm']['points'], key):.3g}"
                                           f" vs standard {_median(v['standard']['points'], key):.3g}"
                                           f" (noisy BN "
                                           f"{_median(v['noisy_batchnorm']['points'], key):.3g})"))
    return claims


# --- figures, entry point ------------------------------------------------------------------------

def _figures(out, runs):
    from deepcalc.diagnose.plot import _pyplot, save_figure
    plt = _pyplot()
    colors = {"standard": "C3", "batchnorm": "C0", "noisy_batchnorm": "C2",
              "noisy_batchnorm_mild": "C1"}
    paths = []
    settings = [(d, lr) for d in runs for lr in sorted(runs[d])]
    panels = [("training loss", None), ("ICS ||G - G'|| (median over layers)", "ics_l2"),
              ("ICS cos(G, G') (median over layers)", "ics_cosine"),
              ("loss range along the gradient", "loss_range"),
              ("max ||g(w) - g(w - eta g)||", "gradient_change"),
              ("effective beta-smoothness", "beta_smoothness")]
    fig, axes = plt.subplots(len(settings), len(panels),
                             figsize=(3.6 * len(panels), 2.9 * len(settings)), squeeze=False)
    for row, (d, lr) in enumerate(settings):
        for col, (title, key) in enumerate(panels):
            ax = axes[row][col]
            for variant, r in runs[d][lr].items():
                if key is None:
                    ys = np.asarray(r["losses"])
                    k = min(20, max(len(ys), 1))
                    ax.plot(np.convolve(ys, np.ones(k) / k, mode="valid") if len(ys) >= k
                            else ys, color=colors[variant], label=variant, lw=1)
                    continue
                steps = [p["step"] for p in r["points"]]
                if key == "gradient_change":
                    vals = [float(np.max(p[key])) for p in r["points"]]
                else:
                    vals = [float(np.nanmedian(p[key])) for p in r["points"]]
                ax.plot(steps, vals, "o-", ms=2, color=colors[variant], label=variant, lw=1)
            if key not in ("ics_cosine",):
                ax.set_yscale("log")
            ax.set_title(f"{title}\n{d}, lr {lr:g}", fontsize=8)
            ax.set_xlabel("step", fontsize=7)
    axes[0][0].legend(fontsize=7)
    paths.append(save_figure(fig, os.path.join(out, "batchnorm_overview.png")))
    # ICS per layer, at the first and last measurement (paper Fig. 3 style)
    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings), 6), squeeze=False)
    for col, (d, lr) in enumerate(settings):
        for variant, r in runs[d][lr].items():
            if not r["points"]:
                continue
            last = r["points"][-1]
            layers = np.arange(1, len(last["ics_l2"]) + 1)
            axes[0][col].plot(layers, np.maximum(last["ics_l2"], 1e-30), "o-",
                              color=colors[variant], label=variant)
            axes[1][col].plot(layers, last["ics_cosine"], "o-", color=colors[variant])
        axes[0][col].set_yscale("log")
        axes[0][col].set_title(f"{d}, lr {lr:g}: ||G - G'|| per layer (last)", fontsize=8)
        axes[1][col].set_title("cos(G, G') per layer (last)", fontsize=8)
        axes[1][col].set_xlabel("Linear layer")
    axes[0][0].legend(fontsize=7)
    paths.append(save_figure(fig, os.path.join(out, "ics_per_layer.png")))
    return paths


def run(out, quick=False, seed=0, depth=None, width=None, steps=None, measure_every=None,
        lrs=None, datasets=None, threads=1):
    """Every (dataset, lr, variant) run, the claims, figures, results.md and results.json."""
    from . import num_threads
    with num_threads(threads):
        return _run(out, quick, seed, depth, width, steps, measure_every, lrs, datasets)


def _run(out, quick, seed, depth, width, steps, measure_every, lrs, datasets):
    from deepcalc.results import markdown_table, write_json, write_text
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    depth = depth or 10
    if depth < 2:
        raise ValueError(f"batchnorm experiment: depth must be >= 2, got {depth}")
    width = width or (32 if quick else 64)
    steps = steps or (120 if quick else 1500)
    measure_every = measure_every or (30 if quick else 50)
    lrs = tuple(lrs or (0.02, 0.5))
    data = _datasets(quick, seed)
    if datasets is not None:
        data = {k: data[k] for k in datasets}
    runs = {d: {lr: {v: train_run(v, data[d], depth, width, lr, steps, measure_every, seed)
                     for v in VARIANTS} for lr in lrs} for d in data}
    claims = check_claims(runs)
    figures = _figures(out, runs)
    rows = []
    for d in runs:
        for lr in runs[d]:
            for v, r in runs[d][lr].items():
                pts = r["points"]
                rows.append([d, f"{lr:g}", v, "yes" if r["diverged"] else "no", r["final_loss"],
                             r["train_accuracy"], _median(pts, "ics_l2"),
                             _median(pts, "ics_relative"),
                             _median(pts, "ics_cosine"), _median(pts, "loss_range"),
                             _median(pts, "gradient_change"), _median(pts, "beta_smoothness")])
    t_train = sum(r["seconds_training"] for d in runs for lr in runs[d]
                  for r in runs[d][lr].values())
    t_meas = sum(r["seconds_measuring"] for d in runs for lr in runs[d]
                 for r in runs[d][lr].values())
    n_steps = sum(r["steps_done"] for d in runs for lr in runs[d] for r in runs[d][lr].values())
    n_meas = sum(len(r["points"]) for d in runs for lr in runs[d] for r in runs[d][lr].values())
    cost = {"seconds_per_training_step": t_train / max(n_steps, 1),
            "seconds_per_measurement": t_meas / max(n_meas, 1),
            "gradient_evaluations_per_measurement": depth + 1 + len(ETA_FACTORS)}
    cost["measurement_over_step"] = cost["seconds_per_measurement"] / \
        max(cost["seconds_per_training_step"], 1e-12)
    cost["per_gradient_evaluation_over_step"] = cost["measurement_over_step"] / \
        cost["gradient_evaluations_per_measurement"]
    md = ["# BatchNorm: training, internal covariate shift, landscape smoothness", "",
          f"{depth} weight layers of width {width}, ReLU, He init, plain SGD (batch 64, "
          f"{steps} steps), learning rates {', '.join(f'{lr:g}' for lr in lrs)}; measures every "
          f"{measure_every} steps on a fixed batch of 256 (ICS with the SGD step of the run's lr; "
          f"steps along the gradient eta = lr x {list(ETA_FACTORS)}). Medians over the "
          "measurements (and over layers for ICS).", "",
          markdown_table(["data", "lr", "variant", "diverged", "final loss", "train acc",
                          "ICS l2", "ICS l2 / ||G||", "ICS cos", "loss range", "grad change",
                          "beta"], rows),
          "A diverged run's medians cover its measurements before it diverged.", "",
          "## The paper's claims here", ""]
    for c in claims:
        md.append(f"- **{c['claim']}** ({c['paper']}): **{c['verdict']}** "
                  f"({sum(map(bool, c['holds'].values()))}/{len(c['holds'])} settings). " +
                  "; ".join(f"{k}: {v}" for k, v in c["detail"].items()))
    md += ["", f"Cost: a measurement (ICS of {depth} layers + {len(ETA_FACTORS)} steps along the "
           f"gradient = {cost['gradient_evaluations_per_measurement']} gradient evaluations) "
           f"took {cost['measurement_over_step']:.1f} training steps' time, "
           f"{cost['per_gradient_evaluation_over_step']:.2f} steps per gradient evaluation.", ""]
    results = {"experiment": "batchnorm", "quick": bool(quick), "seed": seed,
               "config": {"depth": depth, "width": width, "steps": steps,
                          "measure_every": measure_every, "lrs": list(lrs),
                          "eta_factors": list(ETA_FACTORS), "datasets": list(runs)},
               "runs": {d: {f"{lr:g}": runs[d][lr] for lr in runs[d]} for d in runs},
               "claims": claims, "cost": cost,
               "figures": [os.path.basename(p) for p in figures],
               "seconds": time.perf_counter() - t0}
    write_text(os.path.join(out, "results.md"), "\n".join(md))
    write_json(os.path.join(out, "results.json"), results)
    return results


def main(args) -> int:
    lrs = tuple(float(v) for v in args.lrs.split(",")) if args.lrs else None
    res = run(args.out, quick=args.quick, seed=args.seed, depth=args.depth, width=args.width,
              steps=args.steps, measure_every=args.measure_every, lrs=lrs, threads=args.threads)
    for c in res["claims"]:
        print(f"{c['claim']}: {c['verdict']}")
    print(f"wrote {args.out}/results.md, results.json and {len(res['figures'])} figures "
          f"in {res['seconds']:.0f} s")
    return 0
