"""The ``deepcalc`` command.

    deepcalc train mlp --dataset digits --hidden 128,64 --activation relu --optimizer adam \\
        --lr 1e-3 --epochs 30 --out runs/digits
    deepcalc calculus        # a tour of the matrix-calculus tools on a small network
    deepcalc experiment NAME --out DIR [--quick]   # see deepcalc.experiments
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _build_parser():
    p = argparse.ArgumentParser(prog="deepcalc", description="deepcalc command line")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model")
    t.add_argument("model", choices=["mlp"])
    t.add_argument("--dataset", default="digits", choices=["digits", "mnist", "teacher"])
    t.add_argument("--data-dir", default=None, help="directory with MNIST IDX files (--dataset mnist)")
    t.add_argument("--hidden", default="128,64", help="comma-separated hidden sizes")
    t.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid", "gelu"])
    t.add_argument("--init", default="torch",
                   choices=["torch", "standard_normal", "xavier", "he", "ntk", "mup"])
    t.add_argument("--optimizer", default="adam", choices=["sgd", "adam", "adamw", "rmsprop"])
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--momentum", type=float, default=0.9, help="for sgd / rmsprop")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--jacobian-reg", type=float, default=0.0, metavar="LAMBDA",
                   help="Jacobian regularization: add LAMBDA/2 * mean ||J(x)||_F^2 (one random "
                        "projection per sample, dc.regularize.JacobianRegularizer)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--label-smoothing", type=float, default=0.1,
                   help="cross-entropy label smoothing (classification)")
    t.add_argument("--no-standardize", action="store_true",
                   help="feed raw features instead of standardizing with training statistics")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--schedule", default="none", choices=["none", "cosine", "step"])
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--out", default="runs/digits", help="output directory")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--distributed", default="auto", choices=["auto", "on", "off"],
                   help="data parallel over MPI ('auto': on when mpirun started several "
                   "processes); --batch-size is then per rank")
    sub.add_parser("calculus", help="demonstrate Jacobians, Hessians, JVPs and VJPs")
    _experiment_parsers(sub)
    _diagnose_parsers(sub)
    return p


def _experiment_parsers(sub):
    """``deepcalc experiment NAME``: one sub-command per module of deepcalc.experiments."""
    from . import experiments
    e = sub.add_parser("experiment", help="run an experiment: figures, a markdown table and "
                       "results.json in --out")
    names = e.add_subparsers(dest="experiment", required=True)
    for name in experiments.names():
        mod = experiments.load(name)
        x = names.add_parser(name, help=getattr(mod, "DESCRIPTION", None))
        x.add_argument("--out", default=os.path.join("runs", "experiments", name),
                       help="output directory (created)")
        x.add_argument("--quick", action="store_true", help="a small version, under a minute")
        x.add_argument("--seed", type=int, default=0)
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(x)


def _diagnose_parsers(sub):
    """``deepcalc diagnose hessian``: curvature of a trained checkpoint's training loss."""
    d = sub.add_parser("diagnose", help="diagnose a trained model")
    kinds = d.add_subparsers(dest="diagnosis", required=True)
    h = kinds.add_parser("hessian", help="top Hessian eigenvalues, trace, effective dimension "
                         "and the spectral density (PNG) of a checkpoint's training loss")
    h.add_argument("--checkpoint", required=True, help="a last.safetensors written by train")
    h.add_argument("--dataset", default="digits", choices=["digits", "mnist", "teacher"])
    h.add_argument("--data-dir", default=None, help="directory with MNIST IDX files")
    h.add_argument("--samples", type=int, default=1024,
                   help="training samples the loss averages over (the first ones)")
    h.add_argument("--batch-size", type=int, default=512)
    h.add_argument("--k", type=int, default=5, help="number of top eigenvalues")
    h.add_argument("--z", type=float, default=None,
                   help="curvature scale of the effective dimension (default: 1%% of the top "
                        "eigenvalue)")
    h.add_argument("--slq-steps", type=int, default=80)
    h.add_argument("--slq-vectors", type=int, default=2)
    h.add_argument("--activation", default=None, help="default: from metrics.json beside the "
                   "checkpoint, else relu")
    h.add_argument("--label-smoothing", type=float, default=None,
                   help="default: from metrics.json beside the checkpoint, else 0")
    h.add_argument("--batch-norm", default="eval", choices=["train", "eval"])
    h.add_argument("--out", default=None, help="directory for hessian_density.png and "
                   "hessian.json (default: the checkpoint's directory)")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--threads", type=int, default=None)


def _model_from_checkpoint(path, activation):
    """An MLP (behind Standardize when the checkpoint has one) rebuilt from a checkpoint's
    weight shapes, with its weights loaded."""
    from . import load
    from .nn import MLP, Sequential, Standardize
    state = load(path)["model"]
    prefix = "1." if "0.mean" in state else ""
    sizes, i = [], 0
    while f"{prefix}layer{i}.weight" in state:
        out_f, in_f = state[f"{prefix}layer{i}.weight"].shape
        sizes = sizes or [int(in_f)]
        sizes.append(int(out_f))
        i += 1
    if not sizes:
        raise SystemExit(f"deepcalc diagnose hessian: {path} holds no MLP written by "
                         f"'deepcalc train mlp' (no {prefix}layer0.weight)")
    model = MLP(sizes, activation=activation)
    if prefix:
        model = Sequential(Standardize(state["0.mean"], state["0.std"]), model)
    model.load_state_dict(state)
    return model


def diagnose_hessian_command(args) -> int:
    import deepcalc as dc
    from . import curvature as cv
    from . import data
    from .nn import functional as F
    if args.threads:
        dc.set_num_threads(args.threads)
    cfg_path = os.path.join(os.path.dirname(args.checkpoint), "metrics.json")
    config = json.load(open(cfg_path)).get("config", {}) if os.path.exists(cfg_path) else {}
    activation = args.activation or config.get("activation", "relu")
    smoothing = args.label_smoothing if args.label_smoothing is not None else \
        float(config.get("label_smoothing", 0.0))
    model = _model_from_checkpoint(args.checkpoint, activation)
    args.seed = int(config.get("seed", args.seed))
    train_set, _, task = _datasets(args)
    x, y = train_set.arrays
    n = min(args.samples, len(x))
    subset = data.TensorDataset(x[:n].reshape(n, -1), y[:n])
    loader = data.DataLoader(subset, batch_size=args.batch_size)
    if task == "classification":
        def loss_fn(out, t, reduction="mean"):
            return F.cross_entropy(out, t, label_smoothing=smoothing, reduction=reduction)
    else:
        loss_fn = F.mse_loss
    H = cv.HessianOperator(model, loss_fn, loader, batch_norm=args.batch_norm)
    t0 = time.perf_counter()
    vals, _ = cv.top_eigenvalues(H, k=min(args.k, H.shape[0]), generator=args.seed)
    try:       # exact for an MLP whose samples do not interact (eval-mode BatchNorm)
        tr = cv.trace(H, method="exact")
    except ValueError:
        tr = cv.trace(H, tol=1e-2, max_probes=400, generator=args.seed)
    dens = cv.density(H, n_iter=args.slq_steps, n_vec=args.slq_vectors, generator=args.seed)
    z = args.z if args.z is not None else 0.01 * float(vals[0])
    neff = cv.effective_dimension(dens, z=z) if z > 0 else float("nan")
    logv = cv.log_volume(dens, z=z) if z > 0 else float("nan")
    seconds = time.perf_counter() - t0
    out = args.out or os.path.dirname(os.path.abspath(args.checkpoint))
    os.makedirs(out, exist_ok=True)
    print(f"deepcalc diagnose hessian: {H.shape[0]} parameters, {n} {args.dataset} training "
          f"samples, {activation} MLP, batch_norm={args.batch_norm}, {H.n_matvecs} HVPs in "
          f"{seconds:.1f} s")
    print("top eigenvalues: " + ", ".join(f"{v:.5g}" for v in vals))
    print(f"trace: {tr.value:.5g}  (95% interval [{tr.ci[0]:.5g}, {tr.ci[1]:.5g}], "
          f"{tr.method}, {tr.matvecs} HVPs)")
    print(f"effective dimension sum l/(l+z), z={z:.3g}: {neff:.2f}   log-volume vs flat: "
          f"{logv:.3f}")
    result = {"parameters": H.shape[0], "samples": n, "top_eigenvalues": [float(v) for v in vals],
              "trace": tr.value, "trace_ci": list(tr.ci), "z": z, "effective_dimension": neff,
              "log_volume": logv, "hvps": H.n_matvecs, "seconds": seconds}
    _write_json(os.path.join(out, "hessian.json"), result)
    try:
        png = dens.plot(os.path.join(out, "hessian_density.png"))
        print(f"wrote {png}, {os.path.join(out, 'hessian.json')}")
    except ImportError:
        print(f"wrote {os.path.join(out, 'hessian.json')} (install deepcalc[plot] for the "
              "density PNG)")
    return 0


def _datasets(args):
    from . import data
    if args.dataset == "digits":
        train, test = data.load_digits(seed=args.seed)
        return train, test, "classification"
    if args.dataset == "mnist":
        if not args.data_dir:
            raise SystemExit("deepcalc train: --dataset mnist needs --data-dir DIR with the IDX files")
        train, test = data.load_mnist(args.data_dir)
        return train, test, "classification"
    full = data.teacher_regression(2560, 16, 4, seed=args.seed)
    x, y = full.arrays
    return data.TensorDataset(x[:2048], y[:2048]), data.TensorDataset(x[2048:], y[2048:]), "regression"


def _optimizer(args, params):
    from . import optim
    if args.optimizer == "sgd":
        return optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    if args.optimizer == "adam":
        return optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adamw":
        return optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay or 1e-2)
    return optim.RMSprop(params, lr=args.lr, momentum=args.momentum if args.momentum < 1 else 0,
                         weight_decay=args.weight_decay)


def train_command(args) -> int:
    import deepcalc as dc
    from . import data, optim
    from .nn import MLP, Sequential, Standardize
    from .nn import functional as F
    from .train import evaluate, fit

    dc.manual_seed(args.seed)
    if args.threads:
        dc.set_num_threads(args.threads)
    train_set, test_set, task = _datasets(args)
    x0, y0 = train_set[0]
    in_dim = int(np.prod(np.shape(x0)))
    if task == "classification":
        n_classes = int(np.max(train_set.arrays[1])) + 1
        out_dim = n_classes

        def loss_fn(out, y):
            return F.cross_entropy(out, y, label_smoothing=args.label_smoothing)
    else:
        out_dim, loss_fn = int(np.shape(y0)[-1]), F.mse_loss
    hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    model = MLP([in_dim, *hidden, out_dim], activation=args.activation, init=args.init)
    if not args.no_standardize:
        model = Sequential(Standardize.fit(train_set.arrays[0].reshape(len(train_set), -1)), model)
    opt = _optimizer(args, model.parameters())
    sched = None
    if args.schedule == "cosine":
        sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    elif args.schedule == "step":
        sched = optim.lr_scheduler.StepLR(opt, step_size=max(args.epochs // 3, 1), gamma=0.1)
    distributed, main_rank, ranks = _distributed(args)
    if distributed:   # each rank its shard, reshuffled every epoch; rank 0 prints and writes
        from .distributed import DistributedSampler
        train_loader = data.DataLoader(DistributedSampler(train_set, seed=args.seed),
                                       batch_size=args.batch_size)
    else:
        train_loader = data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                       seed=args.seed)
    test_loader = data.DataLoader(test_set, batch_size=512)
    if main_rank:
        os.makedirs(args.out, exist_ok=True)
        print(f"deepcalc: {model.num_parameters()} parameters, {len(train_set)} training and "
              f"{len(test_set)} test samples, {ranks} rank(s) x {dc.get_num_threads()} "
              f"threads, {dc.cpu_capability()} kernels")
    t0 = time.perf_counter()
    history = fit(model, loss_fn, opt, train_loader, val=test_loader, epochs=args.epochs,
                  checkpoint_dir=args.out, resume=args.resume, scheduler=sched,
                  progress=not args.no_progress, distributed=distributed,
                  regularizer=_jacobian_regularizer(args))
    seconds = time.perf_counter() - t0
    final = evaluate(model, loss_fn, test_loader)
    if not main_rank:
        return 0
    metrics = {"final_test": final, "train_seconds": seconds, "epochs": history.epochs,
               "config": vars(args)}
    _write_json(os.path.join(args.out, "metrics.json"), metrics)
    if "accuracy" in final:
        print(f"test accuracy {final['accuracy'] * 100:.2f}%  test loss {final['loss']:.4f}  "
              f"({seconds:.1f} s)")
    else:
        print(f"test loss {final['loss']:.5f}  ({seconds:.1f} s)")
    png = _plot(history, os.path.join(args.out, "curves.png"))
    print(f"wrote {args.out}/last.safetensors, {args.out}/metrics.json" +
          (f", {png}" if png else " (install deepcalc[plot] for curves.png)"))
    return 0


def _jacobian_regularizer(args):
    """The --jacobian-reg penalty (None when 0)."""
    if not args.jacobian_reg:
        return None
    from .regularize import JacobianRegularizer
    return JacobianRegularizer(args.jacobian_reg)


def _distributed(args):
    """(train distributed?, is this the rank that prints and writes?, number of ranks)."""
    if args.distributed == "off":
        return False, True, 1
    from .distributed import init, launcher_world_size
    if args.distributed == "auto" and (launcher_world_size() or 1) < 2:
        return False, True, 1
    w = init()
    local = os.environ.get("MPI_LOCALNRANKS") or os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    if not args.threads and local and local.isdigit():   # the cores shared among this node's ranks
        import deepcalc as dc
        dc.set_num_threads(max(1, (os.cpu_count() or 1) // int(local)))
    return True, w.rank == 0, w.size


def _write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=float)
    os.replace(tmp, path)


def _plot(history, path):
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in ("loss", "val_loss", "accuracy", "val_accuracy") if history[k]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for k in keys:
        ax = axes[0] if "loss" in k else axes[1]
        ax.plot(range(1, len(history[k]) + 1), history[k], label=k)
    for ax, title in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    from .results import save_figure
    return save_figure(fig, path)


def calculus_command(args) -> int:
    import deepcalc as dc
    dc.manual_seed(0)
    net = dc.nn.MLP([3, 4, 2], activation="tanh", dtype=np.float64)
    x = dc.tensor(np.array([0.5, -1.0, 2.0]))
    print("f: R^3 -> R^2, a 3-4-2 tanh network")
    J = dc.jacrev(net)(x)
    print("Jacobian df/dx (reverse mode), shape", J.shape, "\n", np.round(J.data, 4))
    print("matches forward mode:", np.allclose(J.data, dc.jacfwd(net)(x).data))
    loss = lambda x: (net(x) ** 2).sum()
    H = dc.hessian(loss)(x)
    print("Hessian of ||f(x)||^2, shape", H.shape, "symmetric:", np.allclose(H.data, H.data.T))
    print("eigenvalues:", np.round(np.linalg.eigvalsh(H.data), 4))
    v = dc.tensor(np.array([1.0, 0.0, 0.0]))
    _, Hv = dc.hvp(loss, (x,), (v,))
    print("Hessian-vector product H e1 (forward-over-reverse):", np.round(Hv.data, 4))
    sq = dc.nn.MLP([3, 3], activation="tanh", dtype=np.float64)
    sign, logdet = dc.jacobian_logdet(sq, x)
    print(f"log|det J| of a 3-3 tanh layer at x: {logdet.item():.4f} (sign {sign.item():+.0f})")
    return 0


def main(argv=None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "train":
        return train_command(args)
    if args.command == "experiment":
        from . import experiments
        os.makedirs(args.out, exist_ok=True)
        return experiments.load(args.experiment).main(args)
    if args.command == "diagnose":
        return diagnose_hessian_command(args)
    return calculus_command(args)


if __name__ == "__main__":
    sys.exit(main())
