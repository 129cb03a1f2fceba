"""Figures of the diagnostics (matplotlib with the Agg backend, imported inside each function so
that importing deepcalc.diagnose never needs it).  Every function writes a PNG atomically and
returns its path."""
from __future__ import annotations


import numpy as np

from .. import results


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("deepcalc.diagnose plots need matplotlib: pip install "
                          "deepcalc[plot]") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path) -> str:
    """Write ``fig`` to ``path`` (PNG) through a temporary file and a rename, then close it."""
    _pyplot()  # the Agg backend
    return results.save_figure(fig, path, dpi=110, bbox_inches="tight")


def plot_monitor(monitor, path, metrics=("grad_norm", "weight_norm", "update_ratio", "act_std",
                                         "dead_fraction"), max_lines: int = 12) -> str:
    """One panel per metric of a ``GradientMonitor``, one line per layer (at most ``max_lines``,
    spread over the layers), against the training step; norms and ratios on a log scale."""
    plt = _pyplot()
    metrics = [m for m in metrics if monitor.layers(m)]
    if not metrics:
        raise ValueError("plot_monitor: the monitor has recorded nothing to plot")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    steps = np.asarray(monitor.steps)
    for ax, metric in zip(axes[0], metrics):
        names = monitor.layers(metric)
        if len(names) > max_lines:
            names = [names[i] for i in np.linspace(0, len(names) - 1, max_lines).astype(int)]
        cmap = plt.get_cmap("viridis")
        for j, name in enumerate(names):
            ax.plot(steps, monitor[f"{metric}/{name}"], color=cmap(j / max(len(names) - 1, 1)),
                    label=name, lw=1.2)
        if metric in ("grad_norm", "weight_norm", "update_ratio", "act_std"):
            ax.set_yscale("log")
        ax.set_title(metric)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=6, loc="best")
    return save_figure(fig, path)


def plot_layer_profile(values: dict, path, ylabel="gradient norm", title=None,
                       logy: bool = True, theory: dict | None = None) -> str:
    """Lines of a per-layer quantity (label -> sequence over layers, or (x, y) pairs), with
    optional dashed theory lines (label -> (x, y))."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, v in values.items():
        x, y = v if isinstance(v, tuple) else (np.arange(1, len(v) + 1), v)
        ax.plot(x, y, marker="o", ms=3, label=label)
    for label, (x, y) in (theory or {}).items():
        ax.plot(x, y, ls="--", color="k", lw=1, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_singular_values(spectra: dict, path, title="Jacobian singular values") -> str:
    """Sorted singular values (label -> 1-D array, or the dict ``jacobian_spectrum`` returns:
    its first example's) on a log scale; 1 (an isometry) dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, s in spectra.items():
        s = s["singular_values"][0] if isinstance(s, dict) else np.asarray(s)
        ax.plot(np.arange(1, len(s) + 1), np.maximum(s, 1e-300), label=label)
    ax.axhline(1.0, ls="--", color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("index")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_rnn_gradient_norms(curves: dict, path, predicted: dict | None = None) -> str:
    """||d h_T / d h_t|| against T - t (label -> array over t = 0 .. T as ``rnn_gradient_norms``
    returns), with optional predicted curves (label -> array, same layout) dashed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, v in curves.items():
        v = np.asarray(v)
        ax.plot(np.arange(len(v))[::-1], v, label=label)
    for label, v in (predicted or {}).items():
        v = np.asarray(v)
        ax.plot(np.arange(len(v))[::-1], v, ls="--", color="k", lw=0.9, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("T - t")
    ax.set_ylabel("||d h_T / d h_t||")
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_curves(curves: dict, path, xlabel="step", ylabel="loss", title=None,
                logy: bool = False) -> str:
    """Lines of (x, y) pairs or y sequences, label -> curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, v in curves.items():
        x, y = v if isinstance(v, tuple) else (np.arange(len(v)), v)
        ax.plot(x, y, label=label, lw=1.2)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
