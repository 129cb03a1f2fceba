#!/usr/bin/env bash
# The native core under AddressSanitizer + UBSan: build deepcalc._core with -DDEEPCALC_SANITIZE=ON
# into build/asan, stage an importable copy of the package there (python/deepcalc is left alone:
# other processes import it), and run the kernel and binding tests with the sanitizer runtime
# preloaded. Exits nonzero on a failing test or on any sanitizer report, a test's subprocess's too.
# Usage: tools/sanitize.sh [PYTEST_ARGS...]   (GCC; run after `pip install ".[test]"`)
# PYTHONMALLOC=malloc tools/sanitize.sh also puts CPython's own objects under ASan (twice as slow).
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
BUILD_DIR=build/asan
STAGE=$PWD/$BUILD_DIR/pkg          # PYTHONPATH root: deepcalc/ with the sanitized _core
REPORTS=$PWD/$BUILD_DIR/reports    # one file per process that reported (log_path below)
PY=$(python -c 'import sys; print(sys.executable)')

# pybind11, cmake and ninja are build requirements: `pip install .` keeps them in its isolated
# build env, so a clean clone's environment may lack them.
missing=()
"$PY" -c 'import pybind11' 2>/dev/null || missing+=("pybind11>=2.12")
command -v cmake >/dev/null || "$PY" -c 'import cmake' 2>/dev/null || missing+=(cmake)
command -v ninja >/dev/null || "$PY" -c 'import ninja' 2>/dev/null || missing+=(ninja)
if ((${#missing[@]})); then "$PY" -m pip install -q "${missing[@]}"; fi
CMAKE=$(command -v cmake || "$PY" -c 'import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, "cmake"))')
NINJA=$(command -v ninja || "$PY" -c 'import ninja, os; print(os.path.join(ninja.BIN_DIR, "ninja"))')

"$CMAKE" -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_MAKE_PROGRAM="$NINJA" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDEEPCALC_SANITIZE=ON -DDEEPCALC_BUILD_PYTHON=ON \
  -DPython_EXECUTABLE="$PY" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
"$CMAKE" --build "$BUILD_DIR" -j "${JOBS:-2}"
cores=("$PWD/$BUILD_DIR"/_core*.so)
CORE=${cores[0]:?sanitize.sh: no _core module in $BUILD_DIR}

rm -rf "$STAGE" "$REPORTS" && mkdir -p "$STAGE" "$REPORTS"
cp -r python/deepcalc "$STAGE/"
find "$STAGE" \( -name '_core*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
cp "$CORE" "$STAGE/deepcalc/"

# The ASan runtime must come first in the process; take the runtimes _core was linked against.
# The C++ runtime is preloaded too: ASan looks up the real __cxa_throw when it starts, and python
# itself does not load libstdc++, so the first exception a binding threw would abort ASan.
lib() { ldd "$CORE" | awk -v pat="$1" '$0 ~ pat {print $3}'; }
ASAN_RT=$(lib 'libasan[.]so'); UBSAN_RT=$(lib 'libubsan[.]so'); CXX_RT=$(lib 'libstdc[+][+][.]so')
[[ -f $ASAN_RT && -f $UBSAN_RT && -f $CXX_RT ]] || { echo "sanitize.sh: $CORE lacks a runtime" >&2; exit 1; }
export LD_PRELOAD="$ASAN_RT $UBSAN_RT $CXX_RT"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:check_initialization_order=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1"
# GCC's UBSan ignores log_path beside ASan (ASan's exported __sanitizer_set_report_path shadows
# its own), and a report on a test subprocess's stderr is lost in what the test captures. So
# every Python process on this PYTHONPATH points UBSan's own copy of that function at $REPORTS.
cat >"$STAGE/sitecustomize.py" <<PY
# Written by tools/sanitize.sh: UBSan reports of this process go to $REPORTS/ubsan.<pid>.
import ctypes
ctypes.CDLL("$UBSAN_RT").__sanitizer_set_report_path(b"$REPORTS/ubsan")
PY
export PYTHONPATH=$STAGE           # children: conftest.cpu_path_env puts this same root first
export PYTHONDONTWRITEBYTECODE=1

"$PY" -c "
import deepcalc._core as c, sys
assert 'sitecustomize' in sys.modules and c.__file__.startswith('$STAGE/'), c.__file__
print('sanitized', c.__file__, 'capability', c.cpu_capability())"

tests=(tests/test_gemm_kernels.py tests/test_gemm_direct.py tests/test_norm_kernels.py
       tests/test_norm_jvp_kernels.py tests/test_optim_kernels.py tests/test_memory.py
       tests/test_regularize_kernel.py tests/test_impact.py tests/test_attention_kernels.py)
tests+=(tests/test_kernel*.py)   # nullglob: none yet is fine
rc=0
"$PY" -m pytest -p no:cacheprovider "${tests[@]}" "$@" || rc=$?

reports=("$REPORTS"/*)
for f in "${reports[@]}"; do echo "==== sanitizer report $f" >&2; cat "$f" >&2; done
if ((${#reports[@]})); then
  echo "sanitize.sh: ${#reports[@]} sanitizer report(s)" >&2
  exit 1
fi
if ((rc)); then echo "sanitize.sh: pytest exited $rc" >&2; exit "$rc"; fi
echo "sanitize.sh: no sanitizer reports"
