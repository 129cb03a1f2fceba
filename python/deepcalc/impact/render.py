"""Drawing an episode: ASCII frames side by side, or a PNG strip of frames (matplotlib, Agg)."""
from __future__ import annotations


from .agents import Episode
from .gridworld import ACTIONS, Environment

# PNG colours per map character
_COLOURS = {"#": "#404040", " ": "#f4f4f4", ">": "#c8d8f0", "G": "#7fd07f", "H": "#d9a066",
            "B": "#e06060", "b": "#f0b0b0", "O": "#8b5a2b", ".": "#e8d8c8", "A": "#3060d0",
            "a": "#9aa8c8", "X": "#c09040", "V": "#a040c0", "S": "#f08080", "D": "#905020",
            "d": "#d03030"}


def frames(env: Environment, episode: Episode) -> list[list[str]]:
    """One list of map rows per state of the episode."""
    return [["".join(row) for row in env.world.draw(env.states[i])] for i in episode.states]


def render_ascii(env: Environment, episode: Episode, per_line: int = 8) -> str:
    """The episode's frames side by side, ``per_line`` to a band, each headed by its step and
    the action that led to it."""
    fr = frames(env, episode)
    heads = ["t=0 start"] + [f"t={t + 1} {ACTIONS[a]}" for t, a in enumerate(episode.actions)]
    width = max(len(fr[0][0]), max(len(h) for h in heads)) + 2
    bands = []
    for i in range(0, len(fr), per_line):
        chunk = range(i, min(i + per_line, len(fr)))
        lines = ["".join(heads[j].ljust(width) for j in chunk)]
        for r in range(len(fr[0])):
            lines.append("".join(fr[j][r].ljust(width) for j in chunk))
        bands.append("\n".join(line.rstrip() for line in lines))
    return "\n\n".join(bands)


def render_png(env: Environment, episode: Episode, path: str, title: str | None = None) -> str:
    """Write the episode as a strip of coloured frames to ``path`` (atomically); returns path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    fr = frames(env, episode)
    n = len(fr)
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n + 0.5, 1.6), squeeze=False)
    for t, (ax, rows) in enumerate(zip(axes[0], fr)):
        ax.imshow([[to_rgb(_COLOURS.get(ch, "#ffffff")) for ch in row] for row in rows],
                  interpolation="nearest")
        ax.set_title("start" if t == 0 else ACTIONS[episode.actions[t - 1]], fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    from ..results import save_figure
    return save_figure(fig, path, dpi=90)
