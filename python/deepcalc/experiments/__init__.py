"""The experiments behind ``deepcalc experiment NAME --out DIR [--quick]``.

Each public module here is one experiment, found by name (no list to keep in step).  A module
defines:

- ``DESCRIPTION``: one line for ``deepcalc experiment --help``;
- ``add_arguments(parser)`` (optional): its own flags, beyond the common ``--out``, ``--quick``
  and ``--seed``;
- ``main(args) -> int``: runs it, writes its figures (PNG), a markdown table and
  ``results.json`` into ``args.out``, and returns the exit status.

Modules keep their top-level imports light (matplotlib and the like inside functions): the
command line imports every experiment to build its help.
"""
from __future__ import annotations

import contextlib
import importlib
import pkgutil


def names() -> list[str]:
    """The experiments available, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load(name: str):
    """The module of experiment ``name``."""
    if name not in names():
        raise ValueError(f"experiment: unknown experiment {name!r}; available: {names()}")
    return importlib.import_module(f"{__name__}.{name}")


@contextlib.contextmanager
def num_threads(n: int):
    """Run the body with ``n`` kernel threads, restoring the previous count after."""
    import deepcalc as dc
    previous = dc.get_num_threads()
    dc.set_num_threads(n)
    try:
        yield
    finally:
        dc.set_num_threads(previous)
