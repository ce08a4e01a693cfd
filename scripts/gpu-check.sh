#!/usr/bin/env bash
# The GPU check: one command for a machine with an NVIDIA GPU, sized to finish within 8 minutes on an
# H100. It runs, each step under its own `timeout` so a hang cannot eat the budget:
#
#   1. nvidia-smi: the card's name, memory and driver
#   2. the whole ctest suite (the CUDA cases run live there; none may be skipped)
#   2b. the NCCL gradient all-reduce with a world of one (a build with MPI and NCCL)
#   3. mambagrad gradcheck --device cuda
#   4. mambagrad bench scan --device cuda
#   5. mambagrad bench train --device cuda --precision both --peer (base preset, batch 16 x 256, fp32 then
#      bf16 mixed precision; PyTorch on the same GPU, its faster scan, fp32 and torch.autocast bf16;
#      skipped with a line saying so when python3 cannot import torch with CUDA)
#   6. mambagrad bench generate --device cuda --peer (base preset: prefill of 4096 bytes and decode at
#      batch 1 and 16, against PyTorch's recurrent step on the same GPU)
#   7. mambagrad train --device cuda: the tiny preset on the enwik8 sample, 300 steps
#   8. that run evaluated on the CPU and on CUDA (the checkpoint crosses devices) and sampled on CUDA
#   9. compute-sanitizer memcheck and racecheck over the scan's and conv's small test cases
#  10. scripts/amx-check.sh --quick: bf16 on the machine's processor (AMX where it has it), last
#
# then prints a summary table last. All output also goes to $OUT/gpu-check.log when $OUT is set
# (else build-gpu-check/ in the repository), with $OUT/summary.txt, the training run's
# $OUT/train-metrics.jsonl and the processor's $OUT/amx-summary.txt.
#
# Usage, from anywhere:
#   scripts/gpu-check.sh [BUILD_DIR]          BUILD_DIR defaults to build-cuda (relative to the repo)
#   scripts/gpu-check.sh --pack BUILD_DIR OUT_DIR
#                                             copies only what the check needs from a build (the two
#                                             programs and the CMake/CTest files, ~8 MB instead of the
#                                             whole folder) to OUT_DIR, e.g. build-gpu (git-ignored),
#                                             to carry to the GPU machine and pass as BUILD_DIR there
#
# The build: made on a CPU machine with nvcc and carried, or made here when cmake, nvcc and the
# libraries (fmt, doctest, CLI11, nlohmann-json, zlib) are present:
#   PATH=/usr/local/cuda/bin:$PATH cmake -S . -B build-cuda -DMG_CUDA=ON -DMG_NATIVE=OFF \
#     -DCMAKE_CXX_FLAGS=-march=x86-64-v3 && cmake --build build-cuda -j
# (-DMG_NATIVE=OFF with x86-64-v3: the binaries must run on the GPU machine's processor, not only on
# the one that built them; CUDA code is built for sm_90, H100/H200, by default.) A build folder made
# elsewhere has that machine's paths compiled in (the tests read tests/fixtures/ under the source
# folder); when that folder does not exist here, this script links it to this repository.
#
# Environment: OUT (where logs go), MG_DATA (an enwik8 zip, the whole file or its first megabytes;
# otherwise gpu-data/enwik8-head.zip or gpu-data/enwik8.zip), MG_GPU_CHECK_BUDGET (seconds for everything,
# default 470), MG_CTEST_JOBS (default 8).
set -u -o pipefail

if [ "${1:-}" = --pack ]; then
  src=${2:?usage: $0 --pack BUILD_DIR OUT_DIR} dst=${3:?usage: $0 --pack BUILD_DIR OUT_DIR}
  mkdir -p "$dst" &&
    cp "$src/mambagrad" "$src/mg_tests" "$src/CMakeCache.txt" "$src/CTestTestfile.cmake" "$dst/" &&
    cp "$src"/mg_tests*.cmake "$dst/" || exit 1
  du -sh "$dst"
  exit 0
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
BUILD_ARG=${1:-build-cuda}
case "$BUILD_ARG" in /*) BUILD=$BUILD_ARG ;; *) BUILD=$ROOT/$BUILD_ARG ;; esac
LOG_DIR=${OUT:-$ROOT/build-gpu-check}  # build*/ is git-ignored
mkdir -p "$LOG_DIR"
LOG=$LOG_DIR/gpu-check.log
SUMMARY=$LOG_DIR/summary.txt
: >"$LOG"
STEP_DIR=$(mktemp -d /tmp/gpu-check.XXXXXX)
BUDGET=${MG_GPU_CHECK_BUDGET:-470}
START=$(date +%s)

# say, elapsed and run_step (LAST_RC, LAST_SECS, LAST_OUT, STEPS_FAILED).
# shellcheck source=scripts/check-steps.sh
source "$ROOT/scripts/check-steps.sh"

NAMES=() STATUS=() SECS=() FIGURES=()
record() { NAMES+=("$1"); STATUS+=("$2"); SECS+=("$3"); FIGURES+=("$4"); }

# The figure for the summary: $1 when the step passed; else why not (the first "error:" line, or the
# last line of output).
figure() {
  local why
  case $LAST_RC in
    0) [ -n "$1" ] && printf '%s' "$1" && return ;;
    124 | 137) printf 'timed out at its limit' && return ;;
    125) printf 'not run: the budget was spent' && return ;;
  esac
  why=$(grep -m 1 -E "error:|Error:|FAILED|Failed" "$LAST_OUT" | tr -s ' ' | cut -c1-90)
  [ -z "$why" ] && why=$(grep -v '^[[:space:]]*$' "$LAST_OUT" | tail -n 1 | tr -s ' ' | cut -c1-90)
  printf '%s' "${why:-${1:-no output}}"
}

status_of() {  # exit status -> PASS / FAIL (rc) / TIMEOUT / SKIPPED
  case $1 in
    0) echo PASS ;;
    124 | 137) echo TIMEOUT ;;
    125) echo "NOT RUN" ;;
    *) echo "FAIL ($1)" ;;
  esac
}

# ---------------------------------------------------------------- the machine and the build

say "mambagrad GPU check in $ROOT, build $BUILD, budget ${BUDGET}s, logs in $LOG_DIR"
run_step nvidia-smi 20 nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
GPU_NAME="(no GPU found)"
[ "$LAST_RC" = 0 ] && GPU_NAME=$(head -n 1 "$LAST_OUT" | cut -d, -f1)
record nvidia-smi "$(status_of "$LAST_RC")" "$LAST_SECS" "$(head -n 1 "$LAST_OUT" | tr -s ' ' | cut -c1-90)"

if [ ! -x "$BUILD/mambagrad" ] || [ ! -x "$BUILD/mg_tests" ]; then
  if command -v cmake >/dev/null && command -v nvcc >/dev/null; then
    run_step build 300 bash -c "cmake -S '$ROOT' -B '$BUILD' -DMG_CUDA=ON -DMG_NATIVE=OFF -DCMAKE_CXX_FLAGS=-march=x86-64-v3 && cmake --build '$BUILD' -j \$(nproc)"
    record build "$(status_of "$LAST_RC")" "$LAST_SECS" "built here"
  else
    say "no build in $BUILD and no cmake/nvcc to make one: build it elsewhere and carry it (see the top of this script)"
    record build "FAIL" 0 "no build in $BUILD"
  fi
fi

# A build made elsewhere: make its source and build paths resolve here.
if [ -f "$BUILD/CMakeCache.txt" ]; then
  ORIG_SRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt")
  ORIG_BUILD=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$BUILD/CMakeCache.txt")
  if [ -n "$ORIG_SRC" ] && [ "$ORIG_SRC" != "$ROOT" ]; then
    if [ ! -e "$ORIG_SRC" ]; then
      mkdir -p "$(dirname "$ORIG_SRC")" && ln -s "$ROOT" "$ORIG_SRC" &&
        say "linked $ORIG_SRC -> $ROOT (the build was made there)"
    else
      say "warning: the build was made in $ORIG_SRC, which exists here and is not this repository; tests read fixtures from there"
    fi
  fi
  if [ -n "$ORIG_BUILD" ] && [ ! -e "$ORIG_BUILD" ]; then
    mkdir -p "$(dirname "$ORIG_BUILD")" && ln -s "$BUILD" "$ORIG_BUILD" && say "linked $ORIG_BUILD -> $BUILD"
  fi
fi

# Shared libraries: the CUDA toolkit's, or the ones PyTorch's wheels bring, when the loader misses them.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -x "$BUILD/mambagrad" ] && ldd "$BUILD/mambagrad" | grep -q "not found"; then
  for lib in $(ldd "$BUILD/mambagrad" | awk '/not found/ {print $1}'); do
    found=$(timeout 30 find / -xdev -name "$lib" -not -path "/proc/*" 2>/dev/null | head -n 1)
    if [ -n "$found" ]; then
      LD_LIBRARY_PATH=$(dirname "$found"):$LD_LIBRARY_PATH
      say "found $lib in $(dirname "$found")"
    fi
  done
  ldd "$BUILD/mambagrad" | grep "not found" | tee -a "$LOG"
fi
MG=$BUILD/mambagrad

PY=$(command -v python3 || true)
PEER=--peer
if [ -n "$PY" ] && timeout 60 "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
  export MG_PYTHON=$PY
  say "PyTorch peer: $PY, torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
else
  PEER=
  say "PyTorch peer skipped: python3 (${PY:-none}) cannot import torch with a CUDA device"
fi

DATA=${MG_DATA:-}
for f in "$ROOT/gpu-data/enwik8-head.zip" "$ROOT/gpu-data/enwik8.zip"; do
  [ -z "$DATA" ] && [ -f "$f" ] && DATA=$f
done

# ---------------------------------------------------------------- the checks

run_step ctest 170 ctest --test-dir "$BUILD" --output-on-failure -j "${MG_CTEST_JOBS:-8}" --timeout 150
fig=$(grep -E "tests passed" "$LAST_OUT" | tail -n 1)
skipped=$(grep -c "(Skipped)" "$LAST_OUT")
record ctest "$(status_of "$LAST_RC")" "$LAST_SECS" "$(figure "$fig"); $skipped skipped"
((skipped > 0)) && say "note: $skipped test cases were skipped; on a GPU machine every CUDA case should run"

# NCCL with a world of one through the gradient reducer (also inside ctest; named here so that the
# summary shows it). Only a build with MPI and NCCL links libnccl; two ranks need two GPUs.
if [ -x "$BUILD/mg_tests" ] && ldd "$BUILD/mg_tests" | grep -q libnccl; then
  run_step nccl 60 "$BUILD/mg_tests" "--test-case=cuda distributed: bucketed NCCL*"
  fig=$(grep -E "test cases:" "$LAST_OUT" | tail -n 1 | tr -s ' ')
  grep -q "SKIPPED" "$LAST_OUT" && fig="skipped: $(grep -m 1 SKIPPED "$LAST_OUT")"
  record "nccl world size 1" "$(status_of "$LAST_RC")" "$LAST_SECS" "$(figure "$fig")"
else
  say "nccl skipped: $BUILD/mg_tests is not linked with NCCL (a build without MPI or NCCL)"
fi

run_step gradcheck 45 "$MG" gradcheck --device cuda
fig=$(grep -E "passed, [0-9]+ failed" "$LAST_OUT" | tail -n 1)
record "gradcheck cuda" "$(status_of "$LAST_RC")" "$LAST_SECS" "${fig:-$(figure "")}"  # the count, pass or fail

run_step bench-scan 90 "$MG" bench scan --device cuda
fig=$(grep -E "forward\+backward" "$LAST_OUT" | tail -n 1 | tr -s ' ' | cut -c1-90)
record "bench scan cuda" "$(status_of "$LAST_RC")" "$LAST_SECS" "$(figure "$fig")"

run_step bench-train 180 "$MG" bench train --device cuda --preset base --batch 16 --seq 256 --steps 20 --warmup 3 \
  --precision both $PEER
for p in fp32 bf16; do
  tok=$(grep -oE "^mambagrad preset=base precision=$p .*tokens_per_s=[0-9.]+" "$LAST_OUT" | grep -oE "tokens_per_s=[0-9.]+" | cut -d= -f2)
  mem=$(grep -oE "^mambagrad preset=base precision=$p .*device_peak_mb=[0-9.]+" "$LAST_OUT" | grep -oE "device_peak_mb=[0-9.]+" | cut -d= -f2)
  ratio=$(grep -E "^base $p +[0-9]" "$LAST_OUT" | tail -n 1 | awk '{print $5}')
  record "bench train cuda $p" "$(status_of "$LAST_RC")" "$LAST_SECS" \
    "$(figure "base ${tok:-?} tok/s, ${mem:-?} MB peak, vs torch ${ratio:-${PEER:+?}${PEER:-skipped}}")"
done
gain=$(grep -oE "bf16 / fp32 step [0-9.]+x" "$LAST_OUT" | tail -n 1)
record "bench train cuda bf16/fp32" "$(status_of "$LAST_RC")" "$LAST_SECS" "$(figure "${gain:-?}")"

for gb in 1 16; do
  run_step "bench-generate-b$gb" 60 "$MG" bench generate --device cuda --preset base --batch $gb --prompt-bytes 4096 \
    --tokens 300 $PEER
  gen=$(grep -oE "^mambagrad preset=base .*gen_tokens_per_s=[0-9.]+" "$LAST_OUT" | grep -oE "gen_tokens_per_s=[0-9.]+" | cut -d= -f2)
  pre=$(grep -oE "^mambagrad preset=base .*prefill_tokens_per_s=[0-9.]+" "$LAST_OUT" | grep -oE "prefill_tokens_per_s=[0-9.]+" | cut -d= -f2)
  vs=$(grep -oE "decode [0-9]+ / [0-9]+ tokens/s = [0-9.]+x" "$LAST_OUT" | tail -n 1 | grep -oE "[0-9.]+x$")
  record "bench generate b$gb cuda" "$(status_of "$LAST_RC")" "$LAST_SECS" \
    "$(figure "base decode ${gen:-?} tok/s, prefill ${pre:-?} tok/s, vs torch ${vs:-${PEER:+?}${PEER:-skipped}}")"
done

RUN=$STEP_DIR/run-tiny
if [ -n "$DATA" ]; then
  run_step train 75 "$MG" train --device cuda --data "$DATA" --preset tiny --steps 300 --batch 16 --seq 256 \
    --eval-every 100 --eval-bytes 65536 --test-bytes 131072 --out "$RUN"
  fig=$(grep -E "^test: " "$LAST_OUT" | tail -n 1 | grep -oE "bpc [0-9.]+")
  mem=$(grep -oE "memory: peak [0-9.]+ MB" "$LAST_OUT" | tail -n 1)
  record "train tiny cuda" "$(status_of "$LAST_RC")" "$LAST_SECS" "$(figure "test ${fig:-?}; ${mem:-?}")"
  [ -f "$RUN/metrics.jsonl" ] && cp "$RUN/metrics.jsonl" "$LOG_DIR/train-metrics.jsonl"

  if [ -f "$RUN/model.safetensors" ]; then
    run_step cross-device 40 bash -c "'$MG' eval --run '$RUN' --device cpu --split validation --bytes 65536 &&
      '$MG' eval --run '$RUN' --device cuda --split validation --bytes 65536 &&
      '$MG' generate --run '$RUN' --device cuda --prompt 'The ' --bytes 120 --seed 1"
    b=$(grep -oE "bpc [0-9.]+" "$LAST_OUT" | cut -d' ' -f2 | tr '\n' ' ')
    record "eval cpu/cuda, generate" "$(status_of "$LAST_RC")" "$LAST_SECS" "$(figure "val bpc (cpu, cuda): ${b:-?}")"
  fi
else
  say "train skipped: no enwik8 sample (set MG_DATA, or copy enwik8.zip to gpu-data/ and carry it)"
  record "train tiny cuda" SKIPPED 0 "no enwik8-head.zip found"
fi

# compute-sanitizer over the fused kernels' small cases: memcheck (out-of-bounds and misaligned accesses,
# which the CPU emulator cannot see inside a cached block) and racecheck (shared-memory hazards between
# threads that truly run at once). Last, so a tight budget drops these first.
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
SAN_CASES="cuda selective_scan: float64*,cuda causal_conv1d*,cuda selective_state_update*,cuda sample*"
for tool in memcheck racecheck; do
  if [ -n "$SAN" ]; then
    run_step "sanitizer-$tool" 60 "$SAN" --tool "$tool" --error-exitcode 3 "$BUILD/mg_tests" -tc="$SAN_CASES"
    errs=$(grep -oE "ERROR SUMMARY: [0-9]+ errors?" "$LAST_OUT" | tail -n 1)
    record "sanitizer $tool" "$(status_of "$LAST_RC")" "$LAST_SECS" "$(figure "${errs:-no summary}")"
  else
    record "sanitizer $tool" SKIPPED 0 "compute-sanitizer not found"
  fi
done

# The GPU machine's processor in bf16: scripts/amx-check.sh --quick (the bf16 gemm tests, bench matmul
# --precision bf16 at 1 thread, and the small step in bf16 against float32 at 1 and 2 threads). GPU hosts
# are often Intel Xeons with AMX, which no other machine of this project has had. Last of all: the GPU's
# checks come first when the budget is tight.
# amx-check prints its summary last: its own budget ends before this step's limit, so that it does.
amx_budget=$((BUDGET - $(elapsed) - 20))
((amx_budget > 145)) && amx_budget=145
run_step cpu-bf16 150 env OUT="$STEP_DIR/amx" MG_AMX_CHECK_BUDGET=$amx_budget "$ROOT/scripts/amx-check.sh" --quick \
  "$BUILD"
if [ -f "$STEP_DIR/amx/amx-summary.txt" ]; then
  cp "$STEP_DIR/amx/amx-summary.txt" "$LOG_DIR/amx-summary.txt"
  way=$(grep -m 1 "^the way --precision bf16 takes" "$STEP_DIR/amx/amx-summary.txt" | awk '{print $NF}')
  mm=$(grep -m 1 "^matmul bf16 / our fp32" "$STEP_DIR/amx/amx-summary.txt" | grep -oE "mean [0-9.?]+x" | cut -d' ' -f2)
  st=$(grep "^step small bf16 / fp32" "$STEP_DIR/amx/amx-summary.txt" | grep -oE "[0-9.]+x \(by" | cut -d' ' -f1 |
    tr '\n' ' ')
  # The figures whatever the status: a step that amx-check could not fit in its budget leaves a "?".
  record "cpu bf16 (amx-check)" "$(status_of "$LAST_RC")" "$LAST_SECS" \
    "${way:-?} way; matmul bf16/fp32 ${mm:-?}; step bf16/fp32 (1, 2 threads) ${st:-?}"
else
  record "cpu bf16 (amx-check)" "$(status_of "$LAST_RC")" "$LAST_SECS" "$(figure "no summary")"
fi

# ---------------------------------------------------------------- summary (last)

{
  echo ""
  echo "mambagrad GPU check on ${GPU_NAME}: $(elapsed)s of ${BUDGET}s"
  printf '%-24s %-10s %6s  %s\n' "step" "status" "secs" "figure"
  for i in "${!NAMES[@]}"; do
    printf '%-24s %-10s %6s  %s\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}" "${FIGURES[$i]}"
  done
} | tee "$SUMMARY" | tee -a "$LOG"

rm -rf "$STEP_DIR"
for s in "${STATUS[@]}"; do [ "$s" = PASS ] || [ "$s" = SKIPPED ] || exit 1; done
exit 0
