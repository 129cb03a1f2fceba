#!/usr/bin/env bash
# Development build without pip: compile deepcalc._core into BUILD_DIR (default build/dev) and
# copy it into python/deepcalc so that `PYTHONPATH=python python -c "import deepcalc"` works.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build/dev}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDEEPCALC_BUILD_PYTHON=ON \
  -DPython_EXECUTABLE="$(command -v python)" -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >/dev/null
cmake --build "$BUILD_DIR" -j 2
cp "$BUILD_DIR"/_core*.so python/deepcalc/
