#!/usr/bin/env bash
# Development build without pip: compile deepcalc._core into BUILD_DIR (default build/dev) and
# copy it into python/deepcalc so that `PYTHONPATH=python python -c "import deepcalc"` works.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build/dev}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDEEPCALC_BUILD_PYTHON=ON \
  -DPython_EXECUTABLE="$(command -v python)" -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD_DIR" -j 2
# copy then rename: a process that has the old module mapped keeps a whole file (cp over it in
# place would change the pages under its feet)
for so in "$BUILD_DIR"/_core*.so; do
  cp "$so" "python/deepcalc/.$(basename "$so").tmp"
  mv -f "python/deepcalc/.$(basename "$so").tmp" "python/deepcalc/$(basename "$so")"
done
