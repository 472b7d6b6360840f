#!/usr/bin/env bash
# The page of `hubcat emulator --ui` in a real browser: headless Chromium from Debian's
# packages (chromium, chromium-driver; installed with apt-get when missing), driven
# over WebDriver by check.py. See check.py for the checks.
#
#   HUBCAT=target/debug/hubcat bash tests/ui/run.sh
#
# Env:
#   HUBCAT          the hubcat binary (default target/debug/hubcat; a relative path is
#                   taken relative to the repository root)
#   UI_SCREENSHOT   where the page's screenshot goes (default tests/ui/.work/page.png;
#                   the README's is docs/emulator-page.png)
#
# The last line printed is always `N passed, M failed`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$HERE/.work"
mkdir -p "$WORK"
# shellcheck source-path=SCRIPTDIR source=../results.sh
source "$HERE/../results.sh"
# shellcheck source-path=SCRIPTDIR source=../apt.sh
source "$HERE/../apt.sh"

HUBCAT="${HUBCAT:-target/debug/hubcat}"
[[ "$HUBCAT" = /* ]] || HUBCAT="$ROOT/$HUBCAT"
SHOT="${UI_SCREENSHOT:-$WORK/page.png}"
[[ "$SHOT" = /* ]] || SHOT="$ROOT/$SHOT"
EMU_PID=""

on_exit() {
  local rc=$?
  if [[ -n "$EMU_PID" ]]; then
    kill -TERM "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
  fi
  if [[ $SUMMARY_DONE == 0 ]]; then
    harness_fail "run.sh" "aborted with status $rc"
    summary
    exit 1
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

if ! apt_install "$WORK/apt.log" chromium chromium-driver; then
  harness_fail "install" "apt-get install chromium chromium-driver failed (see tests/ui/.work/apt.log)"
  summary
  exit 1
fi
[[ -x "$HUBCAT" ]] || { harness_fail "hubcat" "no binary at $HUBCAT (cargo build -p hubcat)"; summary; exit 1; }

"$HUBCAT" emulator --bind 127.0.0.1:0 --no-health --ui 127.0.0.1:0 \
  --hub eh1:2 --consumer-group eh1:audit --hub orders:3 --fault throttle,every=1000 \
  >"$WORK/emulator.out" 2>"$WORK/emulator.err" &
EMU_PID=$!
PAGE=""
for _ in $(seq 1 100); do
  PAGE="$(sed -n 's|^hubcat emulator: page at \(http://[^ ]*\)$|\1|p' "$WORK/emulator.err")"
  [[ -n "$PAGE" ]] && break
  kill -0 "$EMU_PID" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "$PAGE" ]]; then
  harness_fail "emulator" "no page line on stderr: $(tail -n 3 "$WORK/emulator.err" | tr '\n' ' ')"
  summary
  exit 1
fi
CS="$(head -n 1 "$WORK/emulator.out")"

rc=0
python3 "$HERE/check.py" "$PAGE" "$CS" "$HUBCAT" "$SHOT" >"$WORK/check.out" 2>&1 || rc=$?
while IFS= read -r line; do
  case "$line" in
    "PASS "*) pass "${line#PASS }" ;;
    "FAIL "*) n="${line#FAIL }"; fail "${n%%: *}" "${n#*: }" ;;
  esac
done <"$WORK/check.out"
if [[ $rc -ne 0 ]] && ! grep -q '^FAIL ' "$WORK/check.out"; then
  harness_fail "check.py" "exited with $rc: $(tail -n 5 "$WORK/check.out" | tr '\n' ' ')"
fi
summary
[[ $FAILED -eq 0 ]]
