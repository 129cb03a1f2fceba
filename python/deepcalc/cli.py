"""The ``deepcalc`` command.

    deepcalc train mlp --dataset digits --hidden 128,64 --activation relu --optimizer adam \\
        --lr 1e-3 --epochs 30 --out runs/digits
    deepcalc train transformer --task reverse --time-limit 180 --out runs/reverse
    deepcalc train lm --time-limit 300 --out runs/lm
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
    t.add_argument("model", choices=["mlp", "transformer", "lm"])
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
    t.add_argument("--out", default=None, help="output directory (default runs/digits for "
                   "mlp, runs/transformer, runs/lm)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--distributed", default="auto", choices=["auto", "on", "off"],
                   help="data parallel over MPI ('auto': on when mpirun started several "
                   "processes); --batch-size is then per rank")
    _sequence_arguments(t)
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


def _sequence_arguments(t):
    """Options of ``train transformer`` (a seq2seq task) and ``train lm`` (the character LM)."""
    g = t.add_argument_group("transformer and lm")
    g.add_argument("--task", default="reverse", choices=["copy", "reverse", "sort", "phrase"],
                   help="seq2seq task (train transformer)")
    g.add_argument("--min-len", type=int, default=10, help="shortest source (copy/reverse/sort)")
    g.add_argument("--max-len", type=int, default=20, help="longest source (copy/reverse/sort)")
    g.add_argument("--vocab", type=int, default=10, help="symbols of copy/reverse/sort")
    g.add_argument("--train-size", type=int, default=50000, help="training pairs")
    g.add_argument("--test-size", type=int, default=500,
                   help="held-out pairs (phrase: held-out phrase pairs, at most 69)")
    g.add_argument("--d-model", type=int, default=64)
    g.add_argument("--nhead", type=int, default=4)
    g.add_argument("--layers", type=int, default=2,
                   help="encoder and decoder layers each (transformer), layers (lm)")
    g.add_argument("--ffn", type=int, default=256, help="feed-forward width")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--norm-first", action="store_true", help="pre-norm layers (transformer)")
    g.add_argument("--steps", type=int, default=4000, help="optimizer steps at most")
    g.add_argument("--time-limit", type=float, default=0.0, metavar="SECONDS",
                   help="stop training after this many seconds (0: no limit)")
    g.add_argument("--warmup", type=int, default=100, help="linear learning-rate warmup steps")
    g.add_argument("--eval-every", type=int, default=250, help="steps between evaluations")
    g.add_argument("--target-exact-match", type=float, default=None,
                   help="stop once the held-out exact match reaches this fraction (transformer)")
    g.add_argument("--seq-len", type=int, default=128, help="context length (lm)")
    g.add_argument("--val-windows", type=int, default=256,
                   help="validation windows of --seq-len characters for bits per char (lm)")
    g.add_argument("--sample-len", type=int, default=120,
                   help="characters sampled after a 4-character prompt (lm); beyond --seq-len "
                        "the model sees positions it was not trained on")
    g.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (lm)")
    g.add_argument("--top-k", type=int, default=20, help="sample among the k likeliest (lm)")


def _sequence_training(model, args, batch, evaluate, name, ignore_index=-100):
    """The loop of ``train transformer`` and ``train lm``: Adam with warmup and --schedule,
    gradient clipping at norm 1, a tqdm bar, ``evaluate(step)`` every --eval-every steps and
    at the end (a dict; {'stop': True} ends training), each followed by an atomic checkpoint
    OUT/last.safetensors; --resume continues from it.  ``batch(step)`` returns (logits,
    targets).  Returns (history, steps done, training seconds)."""
    import deepcalc as dc
    from . import optim
    from .nn import functional as F
    opt = optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    path = os.path.join(args.out, "last.safetensors")
    step, history, seconds = 0, [], 0.0
    if args.resume and os.path.exists(path):
        state = dc.load(path)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, history, seconds = int(state["step"]), list(state["history"]), float(state["seconds"])
        print(f"deepcalc: resumed {path} at step {step}")
    t0, loss_value = time.perf_counter() - seconds, float("nan")

    def record():
        logs = {"step": step, "loss": loss_value, "seconds": time.perf_counter() - t0}
        logs.update(evaluate(step))
        stop = logs.pop("stop", False)
        history.append(logs)
        dc.save(path, {"model": dict(model.state_dict()), "optimizer": opt.state_dict(),
                       "step": step, "history": history, "seconds": logs["seconds"]})
        return stop

    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=args.steps, initial=step, unit="step", dynamic_ncols=True, desc=name)
    while step < args.steps:
        if args.time_limit and time.perf_counter() - t0 >= args.time_limit:
            break
        opt.param_groups[0]["lr"] = args.lr * _lr_factor(args, step, time.perf_counter() - t0)
        logits, target = batch(step)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                               ignore_index=ignore_index)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        loss_value = loss.item()
        if not np.isfinite(loss_value):
            raise SystemExit(f"deepcalc train {name}: the loss is {loss_value} at step {step}; "
                             "lower --lr")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
        if step % args.eval_every == 0 and record():
            break
    if bar is not None:
        bar.close()
    if not history or history[-1]["step"] != step:   # stopped between evaluations
        record()
    return history, step, time.perf_counter() - t0


def _check_sequence_args(args):
    for name in ("steps", "eval_every", "batch_size", "d_model", "nhead", "layers", "ffn",
                 "seq_len", "warmup"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            raise SystemExit(f"deepcalc train {args.model}: --{name.replace('_', '-')} must be "
                             f">= {0 if name == 'warmup' else 1}, got {getattr(args, name)}")
    if args.time_limit < 0 or not 0.0 <= args.dropout < 1.0 or not args.lr > 0:
        raise SystemExit(f"deepcalc train {args.model}: expected --time-limit >= 0, 0 <= "
                         f"--dropout < 1 and --lr > 0, got {args.time_limit}, {args.dropout}, "
                         f"{args.lr}")


def _lr_factor(args, step: int, elapsed: float) -> float:
    """Linear warmup over --warmup steps; with --schedule cosine, then a cosine decay to 0 over
    the budget (the larger of step / --steps and elapsed / --time-limit); 'step' divides by 10
    at each third of it."""
    warm = min(1.0, (step + 1) / max(args.warmup, 1))
    progress = step / args.steps
    if args.time_limit:
        progress = max(progress, elapsed / args.time_limit)
    progress = min(progress, 1.0)
    if args.schedule == "cosine":
        return warm * 0.5 * (1 + np.cos(np.pi * progress))
    if args.schedule == "step":
        return warm * 0.1 ** min(int(progress * 3), 2)
    return warm


def _exact_match(pred: np.ndarray, tgt: np.ndarray, end: int):
    """(fraction of rows whose tokens up to and including <end> all match, token accuracy)."""
    width = max(pred.shape[1], tgt.shape[1])
    p = np.zeros((len(pred), width), np.int64)
    p[:, :pred.shape[1]] = pred
    t = np.zeros_like(p)
    t[:, :tgt.shape[1]] = tgt
    valid = t != 0
    same = (p == t) | ~valid
    return float(same.all(axis=1).mean()), float((p == t)[valid].mean())


def transformer_command(args) -> int:
    """``deepcalc train transformer --task reverse``: an encoder-decoder on a synthetic task,
    greedy-decoded held-out exact match, attention maps."""
    import deepcalc as dc
    from .data import seq2seq
    from .nn import Seq2SeqTransformer
    from .nn.decoding import greedy_decode
    _check_sequence_args(args)
    dc.manual_seed(args.seed)
    if args.threads:
        dc.set_num_threads(args.threads)
    train, test = seq2seq.task_splits(args.task, args.train_size, args.test_size, args.min_len,
                                      args.max_len, args.vocab, seed=args.seed)
    v = len(train.vocab)
    model = Seq2SeqTransformer(v, v, args.d_model, args.nhead, args.layers, args.layers,
                               args.ffn, args.dropout, max_len=max(train.tgt.shape[1],
                                                                   test.tgt.shape[1]) + 8,
                               norm_first=args.norm_first)
    os.makedirs(args.out, exist_ok=True)
    print(f"deepcalc: train transformer on {args.task}: {model.num_parameters()} parameters, "
          f"{len(train)} training and {len(test)} held-out pairs, vocabulary {v}, "
          f"{dc.get_num_threads()} threads")
    rng = np.random.default_rng(args.seed)
    tin_all = train.decoder_input()

    def batch(step):
        i = rng.integers(0, len(train), args.batch_size)
        return model(train.src[i], tin_all[i]), train.tgt[i]

    def evaluate(step):
        pred = greedy_decode(model, test.src, test.tgt.shape[1] + 2, seq2seq.START,
                             seq2seq.END)
        em, acc = _exact_match(pred, test.tgt, seq2seq.END)
        stop = args.target_exact_match is not None and em >= args.target_exact_match
        return {"test_exact_match": em, "test_token_accuracy": acc, "stop": stop}

    history, steps, seconds = _sequence_training(model, args, batch, evaluate, "transformer",
                                                 ignore_index=seq2seq.PAD)
    final = history[-1]
    pred = greedy_decode(model, test.src[:3], test.tgt.shape[1] + 2, seq2seq.START, seq2seq.END)
    for s, t, p in zip(test.src[:3], test.tgt[:3], pred):
        print(f"  {' '.join(test.vocab.decode(s))}  ->  {' '.join(test.vocab.decode(p))}"
              f"   (expected {' '.join(test.vocab.decode(t))})")
    print(f"held-out exact match {final['test_exact_match'] * 100:.2f}%  token accuracy "
          f"{final['test_token_accuracy'] * 100:.2f}%  after {steps} steps ({seconds:.1f} s)")
    metrics = {"task": args.task, "test_exact_match": final["test_exact_match"],
               "test_token_accuracy": final["test_token_accuracy"], "steps": steps,
               "train_seconds": seconds, "parameters": model.num_parameters(),
               "vocab": train.vocab.itos, "history": history, "config": vars(args)}
    _write_json(os.path.join(args.out, "metrics.json"), metrics)
    png = _attention_png(model, test, os.path.join(args.out, "attention.png"))
    print(f"wrote {args.out}/last.safetensors, {args.out}/metrics.json" +
          (f", {png}" if png else " (install deepcalc[plot] for attention.png)"))
    return 0


def _attention_png(model, test, path):
    """The last decoder layer's cross-attention (heads averaged) on the first held-out pair:
    which source token each output token looks at."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import deepcalc as dc
    from .results import save_figure
    src, tgt = test.src[:1], test.tgt[:1]
    n_src = int((src[0] != 0).sum())
    n_tgt = int((tgt[0] != 0).sum())
    tin = test.decoder_input()[:1, :n_tgt]
    attn = model.transformer.decoder.layers[-1].multihead_attn
    attn.record_weights, was = True, model.training
    model.eval()
    try:
        with dc.no_grad():
            model(src[:, :n_src], tin)
        w = attn.last_weights[0].mean(axis=0)
    finally:
        attn.record_weights, attn.last_weights = False, None
        model.train(was)
    fig, ax = plt.subplots(figsize=(0.35 * n_src + 2, 0.35 * n_tgt + 1.5))
    ax.imshow(w, cmap="viridis", aspect="auto")
    ax.set_xticks(range(n_src), [test.vocab.itos[i] for i in src[0, :n_src]])
    ax.set_yticks(range(n_tgt), [test.vocab.itos[i] for i in tgt[0, :n_tgt]])
    ax.set_xlabel("source token")
    ax.set_ylabel("output token")
    ax.set_title(f"{test.name}: cross-attention, last decoder layer")
    plt.setp(ax.get_xticklabels(), rotation=90)
    return save_figure(fig, path)


def lm_command(args) -> int:
    """``deepcalc train lm``: a character-level TransformerLM on pydoc_data.topics; bits per
    character on the validation split, samples."""
    import deepcalc as dc
    from .data import load_pydoc_topics
    from .nn import TransformerLM
    from .nn import functional as F
    from .nn.decoding import generate
    _check_sequence_args(args)
    dc.manual_seed(args.seed)
    if args.threads:
        dc.set_num_threads(args.threads)
    corpus = load_pydoc_topics()
    prompt = corpus.encode("The ")[None]
    model = TransformerLM(corpus.vocab_size, args.d_model, args.nhead, args.layers, args.ffn,
                          args.dropout, max_len=max(args.seq_len,
                                                    prompt.shape[1] + args.sample_len))
    os.makedirs(args.out, exist_ok=True)
    print(f"deepcalc: train lm on pydoc_data.topics: {model.num_parameters()} parameters, "
          f"{len(corpus.train)} training and {len(corpus.val)} validation characters, "
          f"{corpus.vocab_size} symbols, {dc.get_num_threads()} threads")
    gen = np.random.default_rng(args.seed)
    vx, vy = corpus.windows("val", args.seq_len, args.val_windows)

    def batch(step):
        x, y = corpus.batch("train", args.batch_size, args.seq_len, gen)
        return model(x), y

    def evaluate(step):
        model.eval()
        total = 0.0
        with dc.no_grad():
            for i in range(0, len(vx), 32):
                logits = model(vx[i:i + 32])
                total += F.cross_entropy(logits.reshape(-1, corpus.vocab_size),
                                         vy[i:i + 32].reshape(-1), reduction="sum").item()
        model.train()
        return {"val_bpc": total / vy.size / np.log(2)}

    history, steps, seconds = _sequence_training(model, args, batch, evaluate, "lm")
    text = corpus.decode(generate(model, prompt, args.sample_len, args.temperature, args.top_k,
                                  generator=np.random.default_rng(args.seed))[0])
    print(f"validation bits per character {history[-1]['val_bpc']:.3f} after {steps} steps "
          f"({seconds:.1f} s); sample:\n{text}")
    metrics = {"val_bpc": history[-1]["val_bpc"], "steps": steps, "train_seconds": seconds,
               "parameters": model.num_parameters(), "sample": text, "history": history,
               "config": vars(args)}
    _write_json(os.path.join(args.out, "metrics.json"), metrics)
    print(f"wrote {args.out}/last.safetensors, {args.out}/metrics.json")
    return 0


def main(argv=None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "train":
        if args.out is None:
            args.out = "runs/digits" if args.model == "mlp" else f"runs/{args.model}"
        if args.model == "transformer":
            return transformer_command(args)
        if args.model == "lm":
            return lm_command(args)
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
