"""Writing what an experiment or a tool measured: text, ``results.json``, markdown tables and
figures, each written to a temporary file and renamed, so a reader never sees half a file and a
failed write never destroys the previous one."""
from __future__ import annotations

import json
import math
import os

import numpy as np


def _plain(v):
    """JSON-ready: arrays to lists, NumPy scalars to Python numbers, NaN/Inf to strings (JSON
    has no NaN; "nan" / "inf" / "-inf" say what was measured)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return _plain(v.tolist())
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else ("nan" if f != f else ("inf" if f > 0 else "-inf"))
    return v


def write_text(path, text: str) -> str:
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_json(path, obj, indent: int = 1) -> str:
    return write_text(path, json.dumps(_plain(obj), indent=indent) + "\n")


def markdown_table(header, rows, floatfmt: str = ".3g") -> str:
    """A markdown table; floats formatted with ``floatfmt``."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v)
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, path, dpi: int = 100, close: bool = True, **savefig_kw) -> str:
    """Lay out ``fig`` and write it to ``path`` (PNG) through a temporary file and a rename;
    ``close`` releases it from pyplot afterwards."""
    path = os.fspath(path)
    tmp = f"{path}.tmp.png"
    fig.tight_layout()
    fig.savefig(tmp, dpi=dpi, **savefig_kw)
    if close:
        import matplotlib.pyplot as plt
        plt.close(fig)
    os.replace(tmp, path)
    return path
