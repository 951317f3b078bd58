#!/usr/bin/env bash
# GPU checks, in one script for a lent GPU machine:
#   1. the test and property suites with the CuPy backend (the `xp` fixture adds cupy when a GPU is visible,
#      and the gpu-marked tests run),
#   2. a scaling verification on CuPy, d up to 256 with d1 = d², written under reports/gpu/.
# Settings through the environment; the NumPy path at small d checks the script itself on a CPU machine:
#   BACKEND=numpy DS=6,8 SEEDS=1 D1=scaled EXTRA="--set steps=40" bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${BACKEND:-cupy}
DS=${DS:-64,128,256}
SEEDS=${SEEDS:-2}
D1=${D1:-square}
OUT=${OUT:-reports/gpu}
PY=${PY:-python}
# shellcheck disable=SC2086
$PY -m pytest -q -m "not slow" ${PYTEST_ARGS:-}
echo "== scaling verify: backend=$BACKEND d=$DS seeds=$SEEDS d1=$D1 -> $OUT"
set +e
# shellcheck disable=SC2086
$PY -m fdcheck.cli verify --backend "$BACKEND" --d "$DS" --seeds "$SEEDS" --d1 "$D1" --out "$OUT" --no-progress ${EXTRA:-}
code=$?
set -e
# verify exits 1 when a claim fails: that is a result, not a broken script; 2 is bad usage.
[ "$code" -le 1 ] || exit "$code"
echo "wrote $OUT/report.md (verify exit $code)"
