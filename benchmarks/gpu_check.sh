#!/usr/bin/env bash
# Refreshes every speed number and runs the tests in one call, when an accelerator is lent:
# the loss benchmark, the training-step benchmark, the evaluation benchmark (PROPEL I = 8 vs
# MSE) and the test suite, each under a time limit (about 8 minutes in all on one GPU), then
# prints one summary (device, versions, every ratio, the test result).
#
#   benchmarks/gpu_check.sh          # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --cpu    # CPU-sized: small problems, the fast tests
#
# Logs and the summary go to $OUT (the device machine's returned folder) or /tmp/gpu_check.
# Environment: PYTHON (default python); PYTEST_ARGS replaces the test arguments (split on
# spaces), e.g. PYTEST_ARGS="-n 2 tests/layers_test.py".
set -u -o pipefail
cd "$(dirname "$0")/.."

CPU=0
if [[ "${1:-}" == "--cpu" ]]; then CPU=1; fi
PYTHON=${PYTHON:-python}
LOGS=${OUT:-/tmp/gpu_check}
mkdir -p "$LOGS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if (( CPU )); then
  LOSS_ARGS=(--reps 5 --no-scaling)
  STEP_ARGS=(--reps 3 --batch 16 --image_size 64)
  EVAL_ARGS=(--small --train_steps 30 --reps 2)
  TEST_ARGS=(-n 2 -m "not slow" tests)
  LIMITS=(600 600 600 1800)
else
  LOSS_ARGS=(--reps 30)
  STEP_ARGS=(--reps 30 --variants torch,pure_jit,nnx_jit)
  EVAL_ARGS=(--reps 5 --train_steps 300)
  TEST_ARGS=(-n 8 tests)
  LIMITS=(90 90 120 180)
fi
if [[ -n "${PYTEST_ARGS:-}" ]]; then read -r -a TEST_ARGS <<< "$PYTEST_ARGS"; fi

START=$SECONDS
STATUS=()
# run NAME LIMIT COMMAND...: runs it with a time limit, its output in $LOGS/NAME.log.
run() {
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  echo "== $name: $* (limit ${limit}s)"
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  local result="ok"
  if (( rc == 124 )); then
    result="TIMED OUT"
  elif (( rc != 0 )); then
    result="FAILED (exit $rc)"
  fi
  STATUS+=("$name: $result in $((SECONDS - start)) s")
  echo "   $result in $((SECONDS - start)) s; log: $LOGS/$name.log"
}

run loss "${LIMITS[0]}" "$PYTHON" benchmarks/loss_benchmark.py "${LOSS_ARGS[@]}"
run train_step "${LIMITS[1]}" "$PYTHON" benchmarks/train_step_benchmark.py "${STEP_ARGS[@]}"
run evaluation "${LIMITS[2]}" "$PYTHON" benchmarks/eval_benchmark.py "${EVAL_ARGS[@]}"
run tests "${LIMITS[3]}" "$PYTHON" -m pytest -q "${TEST_ARGS[@]}"

{
  echo
  echo "===== GPU check summary ($(date -u +%Y-%m-%dT%H:%MZ), $((SECONDS - START)) s) ====="
  "$PYTHON" -c 'import jax; d = jax.devices()[0]
print(f"device: {d.device_kind} ({jax.device_count()} x {d.platform}), jax {jax.__version__}")'
  "$PYTHON" -c 'import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")' 2>/dev/null
  git log -1 --format='commit: %h %s' 2>/dev/null
  echo
  echo "-- loss, value + gradient (ratio = torchpropel / propel_jax; wall, then CPU):"
  sed -n '/^ *B *I *n |/,/^$/p' "$LOGS/loss.log" | sed '/^$/d' | head -6
  echo
  echo "-- training step (ratio = PyTorch / JAX):"
  grep -E '^Training step|^\|' "$LOGS/train_step.log"
  echo
  echo "-- evaluation (ratio = PROPEL I = 8 / MSE):"
  grep -E '^Evaluation|^\|' "$LOGS/evaluation.log"
  echo
  echo "-- tests:"
  grep -E '(passed|failed|error)' "$LOGS/tests.log" | tail -1 \
      || echo "(no pytest summary line: see $LOGS/tests.log)"
  echo
  printf '%s\n' "${STATUS[@]}"
} | tee "$LOGS/summary.txt"
