# shellcheck shell=bash disable=SC2034  # STEPS_FAILED is read by the scripts that source this
# The step runner of scripts/gpu-check.sh and scripts/amx-check.sh, sourced by both. The caller sets LOG
# (the log file), STEP_DIR (a scratch folder), BUDGET (seconds for everything) and START (its start, in
# seconds since the epoch).

say() { printf '%s\n' "$*" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - START)); }

# run_step NAME LIMIT_S CMD...: runs CMD under timeout (capped by what is left of the budget), streaming
# its output to the terminal, the log and $STEP_DIR/NAME.out. Sets LAST_RC, LAST_SECS and LAST_OUT, and
# STEPS_FAILED=1 when the step failed or the budget left no time for it.
STEPS_FAILED=0
run_step() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - $(elapsed) - 5))
  ((limit > left)) && limit=$left
  LAST_OUT=$STEP_DIR/$name.out
  : >"$LAST_OUT"
  if ((limit < 10)); then
    say "=== $name: not run, the ${BUDGET}s budget is spent"
    LAST_RC=125 LAST_SECS=0 STEPS_FAILED=1
    return
  fi
  say ""
  say "=== $name (limit ${limit}s, at $(elapsed)s): $*"
  local t0
  t0=$(date +%s)
  timeout -k 5 "$limit" "$@" 2>&1 | tee "$LAST_OUT" | tee -a "$LOG"
  LAST_RC=${PIPESTATUS[0]}
  LAST_SECS=$(($(date +%s) - t0))
  ((LAST_RC == 124 || LAST_RC == 137)) && say "=== $name: TIMED OUT after ${limit}s"
  ((LAST_RC == 132)) && say "=== $name: illegal instruction: the build targets another processor (rebuild with -DMG_NATIVE=OFF)"
  say "=== $name: exit status $LAST_RC after ${LAST_SECS}s"
  ((LAST_RC == 0)) || STEPS_FAILED=1
}
