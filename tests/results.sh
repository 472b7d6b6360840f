# shellcheck shell=bash
# Sourced by the check scripts (tests/interop/run.sh, tests/brokers/run.sh): the
# PASS/FAIL/SKIP lines and their counts, and the summary that is always the last line
# printed, `N passed, M failed`.
# shellcheck disable=SC2034

PASSED=0
FAILED=0
SKIPPED=0
SUMMARY_DONE=0

summary() {
  SUMMARY_DONE=1
  if [[ $SKIPPED -gt 0 ]]; then
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
  else
    echo "$PASSED passed, $FAILED failed"
  fi
}
pass() {
  echo "PASS $1${2:+: $2}"
  PASSED=$((PASSED + 1))
}
fail() {
  echo "FAIL $1: $2"
  FAILED=$((FAILED + 1))
}
skip() {
  echo "SKIP $1${2:+: $2}"
  SKIPPED=$((SKIPPED + 1))
}
# A failure that is not a check of its own (an install, a server's start, a crash).
harness_fail() { fail "$@"; }
