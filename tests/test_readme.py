"""The README's Python examples run as written (each block in a fresh namespace)."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
# tools/wheel_smoke.sh runs a copy of tests/ against the installed wheel, with no README beside
HAVE_README = os.path.exists(README)
BLOCKS = re.findall(r"```python\n(.*?)```", open(README).read(), re.S) if HAVE_README else []


@pytest.mark.skipif(not HAVE_README, reason="no README.md beside tests/ (a copied test tree)")
def test_the_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs(i, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    exec(compile(BLOCKS[i], f"README.md python block {i}", "exec"), {"__name__": "__readme__"})
