#!/usr/bin/env bash
# The bf16 CPU check: one command that measures mixed precision on this machine's processor against the
# targets of docs/perf.md ("The bf16 gemm on AMX, bf16 without it"). Made for an Intel Xeon with AMX
# (Sapphire Rapids or later), where no other machine of this project has run the real tile instructions;
# on any other x86-64 processor it checks the way bf16 takes there instead (AVX512-BF16 or the float32
# kernel on rounded operands). Each step runs under its own `timeout`:
#
#   1. the processor: its name, its AMX and AVX512-BF16 flags, and the way `--precision bf16` takes
#   2. the bf16 gemm test cases (doctest), the real AMX instructions among them where the CPU has AMX
#   3. mambagrad --threads 1 bench matmul --precision bf16 --peer: the training products of small and base
#      in bf16 against our float32 gemm and against torch.mm in bfloat16 (PyTorch's oneDNN), same run
#   4. mambagrad bench train --precision both, 1 and then 2 threads: the bf16 step against the float32 step
#      (small and base; --quick: small only)
#   5. with --bpc: 600 steps of small on the enwik8 sample in float32 and in bf16, and their test bpc
#
# then a summary of each target, met or not, last. Targets (docs/perf.md): with AMX, the bf16 products at
# least 4x our float32 gemm and at least 0.7x PyTorch's bf16 matmul, the bf16 step at least 1.5x the
# float32 step; without AMX, the bf16 step at least 1.0x the float32 step; 600 steps within 0.01 test bpc.
#
# Usage, from anywhere:
#   scripts/amx-check.sh [--quick] [--bpc] [BUILD_DIR]     BUILD_DIR defaults to build (relative to the repo)
#
# Exit status 0 when every step ran (a target missed is reported, not a failure), 1 when a step failed.
# Environment: OUT (where logs go; else build-amx-check/ in the repository), MG_DATA (an enwik8 zip, for
# --bpc; else gpu-data/enwik8-head.zip or enwik8.zip in the repository), MG_AMX_CHECK_BUDGET (seconds for
# everything, default 1200, with --bpc 4800), MG_PYTHON (the python3 that has torch, for the peer),
# MG_AMX_CHECK_BPC_STEPS (the steps of --bpc's runs, default 600). scripts/gpu-check.sh runs it with
# --quick on the GPU machine's processor.
set -u -o pipefail

QUICK=0 BPC=0 BUILD_ARG=build
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    --bpc) BPC=1 ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' && exit 0 ;;
    -*) echo "amx-check.sh: unknown option $a (valid: --quick, --bpc, a build folder)" >&2 && exit 2 ;;
    *) BUILD_ARG=$a ;;
  esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
case "$BUILD_ARG" in /*) BUILD=$BUILD_ARG ;; *) BUILD=$ROOT/$BUILD_ARG ;; esac
MG=$BUILD/mambagrad
if [ ! -x "$MG" ] || [ ! -x "$BUILD/mg_tests" ]; then
  echo "amx-check.sh: no mambagrad and mg_tests in $BUILD (build first: cmake -B build && cmake --build build -j)" >&2
  exit 2
fi
LOG_DIR=${OUT:-$ROOT/build-amx-check}  # build*/ is git-ignored
mkdir -p "$LOG_DIR"
LOG=$LOG_DIR/amx-check.log
SUMMARY=$LOG_DIR/amx-summary.txt
: >"$LOG"
STEP_DIR=$(mktemp -d /tmp/amx-check.XXXXXX)
trap 'rm -rf "$STEP_DIR"' EXIT
BUDGET=${MG_AMX_CHECK_BUDGET:-$( ((BPC)) && echo 4800 || echo 1200)}  # --bpc: two 600-step runs more
START=$(date +%s)

# say, elapsed and run_step (LAST_RC, LAST_SECS, LAST_OUT, STEPS_FAILED).
# shellcheck source=scripts/check-steps.sh
source "$ROOT/scripts/check-steps.sh"

# The summary: one row per target or fact.
ROWS=()
row() { ROWS+=("$(printf '%-44s %-8s %s' "$1" "$2" "$3")"); }
# verdict VALUE OP LIMIT: "met" / "NOT MET" / "?" (no figure).
verdict() {
  [ -z "$1" ] && echo "?" && return
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0); print ok ? "met" : "NOT MET" }'
}
why() {  # the first error line of the last step, when it failed
  ((LAST_RC == 0)) && return
  ((LAST_RC == 124 || LAST_RC == 137)) && printf ' (timed out)' && return
  ((LAST_RC == 125)) && printf ' (not run: budget spent)' && return
  printf ' (failed: %s)' "$(grep -m 1 -E "error:|ERROR|FAILED" "$LAST_OUT" | tr -s ' ' | cut -c1-60)"
}

# ---------------------------------------------------------------- the processor

CPU_NAME=$(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
FLAGS=$(grep -m 1 -o -w -E 'amx_[a-z0-9]+|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')
say "mambagrad bf16 CPU check in $ROOT, build $BUILD, budget ${BUDGET}s, logs in $LOG_DIR"
say "processor: ${CPU_NAME:-unknown}, $(nproc) CPUs; flags: ${FLAGS:-no amx_*, no avx512_bf16}"
HAS_AMX=0
grep -q -w amx_bf16 /proc/cpuinfo && grep -q -w amx_tile /proc/cpuinfo && HAS_AMX=1

# The peer's python: MG_PYTHON, else the first python3 on PATH or Debian's that imports torch.
PY='' PEER='' PEER_NOTE=''
for c in ${MG_PYTHON:-$(command -v python3) /usr/bin/python3}; do
  if [ -z "$PY" ] && timeout 60 "$c" -c "import torch" >/dev/null 2>&1; then PY=$c; fi
done
if [ -n "$PY" ]; then
  export MG_PYTHON=$PY
  PEER=--peer
  say "PyTorch peer: $PY, torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
else
  PEER_NOTE="(no torch: the peer did not run)"
  say "PyTorch peer skipped: no python3 here imports torch (pip install torch, or set MG_PYTHON)"
fi

# ---------------------------------------------------------------- the checks

run_step tests 300 "$BUILD/mg_tests" "--test-case=bf16*,gemm bf16*,autocast*"
cases=$(grep -oE "test cases: *[0-9]+ *\| *[0-9]+ passed *\| *[0-9]+ failed" "$LAST_OUT" | tail -n 1 | tr -s ' ')
if grep -q "SKIPPED: no AMX" "$LAST_OUT"; then
  real="skipped: no AMX here (emulated tiles only)"
  ((HAS_AMX)) && real="skipped: the CPU lists AMX but Linux refused the tile data"
else
  real="ran the real AMX instructions"
fi
row "bf16 gemm tests" "$( ((LAST_RC == 0)) && echo pass || echo FAIL)" "${cases:-?}$(why); $real"

run_step matmul 420 "$MG" --threads 1 bench matmul --precision bf16 $PEER
WAY=$(grep -oE "^--precision bf16 runs the [a-z0-9-]+ way" "$LAST_OUT" | head -n 1 | awk '{print $5}')
[ -n "$WAY" ] && say "the bf16 way here: $WAY" && row "the way --precision bf16 takes" "" "$WAY"
mm=$(grep -oE "bf16 gemm \(fastest way\) / our float32 gemm over [0-9]+ shapes: geometric mean [0-9.]+x" "$LAST_OUT" |
  tail -n 1 | grep -oE "[0-9.]+x$" | tr -d x)
vs=$(grep -oE "bf16 \([a-z0-9-]+ way\) geometric mean [0-9.]+x, minimum [0-9.]+x" "$LAST_OUT" | tail -n 1)
vs_mean=$(echo "$vs" | grep -oE "mean [0-9.]+" | cut -d' ' -f2)
vs_min=$(echo "$vs" | grep -oE "minimum [0-9.]+" | cut -d' ' -f2)
if [ "$WAY" = amx ]; then
  row "matmul bf16 / our fp32, 1 thread >= 4x" "$(verdict "$mm" ">=" 4)" "geometric mean ${mm:-?}x$(why)"
  row "matmul bf16 / torch bf16 >= 0.7x" "$(verdict "$vs_mean" ">=" 0.7)" \
    "geometric mean ${vs_mean:-?}x, minimum ${vs_min:-?}x${PEER_NOTE:+ $PEER_NOTE}"
else
  row "matmul bf16 / our fp32, 1 thread" "" "geometric mean ${mm:-?}x$(why) (4x is the AMX target)"
  row "matmul bf16 / torch bf16, 1 thread" "" "geometric mean ${vs_mean:-?}x, minimum ${vs_min:-?}x${PEER_NOTE:+ $PEER_NOTE}"
fi
# The AMX kernel's packing, loops and write-back alone (no tile instructions), on any processor: its share
# of the time the 4x target allows the whole kernel.
untiled=$(grep -oE "untiled AMX kernel / \(float32 time / 4\) over [0-9]+ shapes: geometric mean [0-9]+%" "$LAST_OUT" |
  tail -n 1 | grep -oE "[0-9]+%$")
row "amx kernel without its tiles / (fp32 / 4)" "" "geometric mean ${untiled:-?} (the rest is the tiles' time)"

PRESETS="small base"
((QUICK)) && PRESETS=small
for t in 1 2; do
  # small: 3 timed steps after 2 warm-ups; base (several seconds a step on 1 core): 2 after 1.
  for p in $PRESETS; do
    steps=3 warm=2
    [ "$p" = base ] && steps=2 warm=1
    run_step "train-$p-t$t" 420 "$MG" --threads $t bench train --preset "$p" --precision both --steps $steps \
      --warmup $warm
    r=$(grep -oE "mambagrad $p: bf16 / fp32 step [0-9.]+x, by CPU time [0-9.]+x \(the bf16 gemm ran the [a-z0-9-]+ path" \
      "$LAST_OUT" | tail -n 1)
    wall=$(echo "$r" | grep -oE "step [0-9.]+" | cut -d' ' -f2)
    cpu=$(echo "$r" | grep -oE "CPU time [0-9.]+" | cut -d' ' -f3)
    # The target by the way the step ran (bench train says it; without a figure, by the CPU's flags).
    ran=$(echo "$r" | grep -oE "ran the [a-z0-9-]+ path" | awk '{print $3}')
    STEP_TARGET=1.0
    if [ "${ran:-$WAY}" = amx ] || { [ -z "${ran:-$WAY}" ] && ((HAS_AMX)); }; then STEP_TARGET=1.5; fi
    row "step $p bf16 / fp32, $t thread(s) >= ${STEP_TARGET}x" "$(verdict "$wall" ">=" $STEP_TARGET)" \
      "${wall:-?}x (by CPU time ${cpu:-?}x)$(why)"
  done
done

if ((BPC)); then
  DATA=${MG_DATA:-}
  for f in "$ROOT/gpu-data/enwik8-head.zip" "$ROOT/enwik8.zip"; do
    [ -z "$DATA" ] && [ -f "$f" ] && DATA=$f
  done
  if [ -z "$DATA" ]; then
    say "--bpc: no enwik8 zip (set MG_DATA)"
    row "${MG_AMX_CHECK_BPC_STEPS:-600} steps: |bpc bf16 - fp32| <= 0.01" "?" "no enwik8 zip (set MG_DATA)"
    STEPS_FAILED=1
  else
    threads=$(nproc)
    ((threads > 8)) && threads=8
    declare -A BPCS
    for prec in fp32 bf16; do
      run_step "train-600-$prec" 1800 "$MG" --threads "$threads" train --data "$DATA" --preset small \
        --steps "${MG_AMX_CHECK_BPC_STEPS:-600}" --precision $prec --out "$STEP_DIR/run-$prec"
      BPCS[$prec]=$(grep -E "test: " "$LAST_OUT" | tail -n 1 | grep -oE "bpc [0-9.]+" | cut -d' ' -f2)
    done
    d=
    [ -n "${BPCS[fp32]}" ] && [ -n "${BPCS[bf16]}" ] &&
      d=$(awk -v a="${BPCS[fp32]}" -v b="${BPCS[bf16]}" 'BEGIN { x = a - b; if (x < 0) x = -x; printf "%.4f", x }')
    row "${MG_AMX_CHECK_BPC_STEPS:-600} steps: |bpc bf16 - fp32| <= 0.01" "$(verdict "$d" "<=" 0.01)" \
      "test bpc fp32 ${BPCS[fp32]:-?}, bf16 ${BPCS[bf16]:-?} (difference ${d:-?})"
  fi
fi

# ---------------------------------------------------------------- summary (last)

{
  echo ""
  echo "mambagrad bf16 CPU check on ${CPU_NAME:-unknown} (${FLAGS:-no AMX, no AVX512-BF16}): $(elapsed)s of ${BUDGET}s"
  printf '%-44s %-8s %s\n' "target" "" "measured"
  for r in "${ROWS[@]}"; do printf '%s\n' "$r"; done
} | tee "$SUMMARY" | tee -a "$LOG"
exit $STEPS_FAILED
