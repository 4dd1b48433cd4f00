#!/usr/bin/env bash
# One command for a machine with a CUDA GPU (H100/H200 with its own torch + cu130 and nvcc 13.0, no internet):
# builds the extension for the device's architecture, runs the CUDA tests, compute-sanitizer memcheck and
# racecheck on a small case, and the GPU benchmark against its copy-bandwidth floor.
#
#   bash bench/gpu_check.sh
#
# Writes one result file: $OUT/gpu_check_results.txt when OUT is set, else bench/gpu_check_results.txt.
# Every step has its own time limit (together under 10 minutes) and a failing step does not stop the next;
# the file ends with one status line per step. Exit status: 0 when every step passed, 1 when one did not,
# 2 when there is no CUDA device (nothing else is run).
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
RESULTS=${OUT:+$OUT/gpu_check_results.txt}
RESULTS=${RESULTS:-bench/gpu_check_results.txt}
# Seconds per step (each overridable from the environment); they sum to 560 s, leaving room under a
# 10-minute command for start-up. compute-sanitizer needs about half a minute to bring up torch's CUDA context.
T_DETECT=${T_DETECT:-30}
T_BUILD=${T_BUILD:-180}
T_REGISTERED=${T_REGISTERED:-20}
T_TESTS=${T_TESTS:-160}
T_MEMCHECK=${T_MEMCHECK:-60}
T_RACECHECK=${T_RACECHECK:-60}
T_BENCH=${T_BENCH:-50}
TAIL_LINES=60  # lines of each step's output kept in the result file

STATUS_LINES=()
FAILED=0

log() { echo "$*" | tee -a "$RESULTS"; }

# run_step NAME LIMIT_S COMMAND...: runs COMMAND under a time limit, appends its status and the tail of its
# output to the result file, and records the status; never exits the script.
run_step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS out rc status
  out=$(mktemp)
  echo ">> $name (limit ${limit} s)"
  timeout --kill-after=10 "$limit" "$@" >"$out" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    status="ok"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    status="TIMEOUT after ${limit} s"
  else
    status="FAILED (exit $rc)"
  fi
  [ "$status" = "ok" ] || FAILED=1
  {
    echo "== $name: $status, $((SECONDS - start)) s"
    tail -n "$TAIL_LINES" "$out"
    echo
  } >>"$RESULTS"
  rm -f "$out"
  STATUS_LINES+=("$(printf '%-22s %s, %d s' "$name" "$status" $((SECONDS - start)))")
  echo "   $status"
}

skip_step() {
  log "== $1: SKIPPED ($2)"
  STATUS_LINES+=("$(printf '%-22s SKIPPED (%s)' "$1" "$2")")
  FAILED=1
}

# The device's compute capability as TORCH_CUDA_ARCH_LIST wants it ("9.0"); empty without a device.
device_arch() {
  timeout "$T_DETECT" "$PY" -c 'import torch
if torch.cuda.is_available():
    print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null ||
    true
}

find_sanitizer() {
  local c
  for c in "$(command -v compute-sanitizer 2>/dev/null)" "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" \
    "${CUDA_HOME:-/usr/local/cuda}/compute-sanitizer/compute-sanitizer"; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return
    fi
  done
}

# A small case through every CUDA op: float32 and bfloat16, grouped and ungrouped B/C, every optional input,
# the short kernel (L = 300) and two chunks of the long one (L = 2100), then the streaming state update.
write_sanitizer_case() {
  cat >"$1" <<'EOF'
import torch
import hamburg_mamba  # noqa: F401  (loads the ops)

ops = torch.ops.hamburg_mamba
dev = "cuda"
for dtype in (torch.float32, torch.bfloat16):
    for L, G in ((300, 2), (2100, 0)):
        Bsz, D, N = 2, 4, 16
        g = torch.Generator().manual_seed(L)
        r = lambda *s: torch.randn(*s, generator=g)
        bc = (Bsz, G, N, L) if G else (Bsz, N, L)
        u, delta, z = (r(Bsz, D, L).to(dev, dtype) for _ in range(3))
        A = -(torch.rand(D, N, generator=g) + 0.1).to(dev)
        B, C = r(*bc).to(dev, dtype), r(*bc).to(dev, dtype)
        Dv, bias, init = r(D).to(dev), r(D).to(dev), r(Bsz, D, N).to(dev)
        scale = torch.rand(Bsz, L, generator=g).to(dev)
        out, last, chk = ops.selective_scan_fwd(u, delta, A, B, C, Dv, z, bias, init, scale, True, True)
        grads = ops.selective_scan_bwd(torch.ones_like(out), torch.ones_like(last), u, delta, A, B, C, Dv, z,
                                       bias, init, scale, chk, True)
        state = init.clone()
        x = ops.selective_state_update(state, u[..., 0], delta[..., 0], A, B[..., 0], C[..., 0], Dv, z[..., 0],
                                       bias, scale[:, 0], True)
        torch.cuda.synchronize()
        bad = [n for n, t in zip(("out", "last", "chk", "update"), (out, last, chk, x)) if not t.isfinite().all()]
        assert not bad, f"non-finite {bad} ({dtype}, L={L})"
        print(f"{dtype} L={L} G={G}: fwd, bwd, update ran")
EOF
}

main() {
  mkdir -p "$(dirname "$RESULTS")"
  : >"$RESULTS"
  log "hamburg-mamba GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  log "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi: not available')"

  local arch
  arch=$(device_arch)
  if [ -z "$arch" ]; then
    log "No CUDA device: torch.cuda.is_available() is false (or $PY has no torch). Nothing was built or run;"
    log "run this script on a machine with an NVIDIA GPU and a CUDA build of torch."
    echo "results: $RESULTS"
    exit 2
  fi
  log "device compute capability $arch; $("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)')"
  log ""

  export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=${MAX_JOBS:-16}
  run_step "build" "$T_BUILD" "$PY" -m pip install -q --no-build-isolation --no-deps -e .
  # Without CUDA kernels the CUDA tests skip rather than fail; this step makes that a failure.
  run_step "cuda kernels present" "$T_REGISTERED" "$PY" -c 'import torch, hamburg_mamba
ok = torch._C._dispatch_has_kernel_for_dispatch_key("hamburg_mamba::selective_scan_fwd", "CUDA")
print("CUDA kernels registered:", ok)
raise SystemExit(0 if ok else 1)'
  run_step "cuda tests" "$T_TESTS" "$PY" -m pytest -q -rs -p no:cacheprovider --durations=5 -m cuda tests

  local sanitizer case
  sanitizer=$(find_sanitizer)
  case=$(mktemp --suffix=.py)
  write_sanitizer_case "$case"
  if [ -n "$sanitizer" ]; then
    # Without the caching allocator every tensor is its own allocation, so memcheck sees an overrun past a
    # tensor's end instead of it landing in a cached neighbour.
    run_step "memcheck" "$T_MEMCHECK" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      "$sanitizer" --tool memcheck --error-exitcode 1 --print-limit 20 "$PY" "$case"
    run_step "racecheck" "$T_RACECHECK" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      "$sanitizer" --tool racecheck --error-exitcode 1 --print-limit 20 "$PY" "$case"
  else
    skip_step "memcheck" "compute-sanitizer not found on PATH or under $CUDA_HOME"
    skip_step "racecheck" "compute-sanitizer not found on PATH or under $CUDA_HOME"
  fi
  rm -f "$case"

  run_step "benchmark" "$T_BENCH" "$PY" bench/bench_scan_gpu.py --reps 10

  log "== summary"
  local line
  for line in "${STATUS_LINES[@]}"; do
    log "$line"
  done
  echo "results: $RESULTS"
  exit "$FAILED"
}

main "$@"
