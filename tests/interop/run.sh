#!/usr/bin/env bash
# Runs Microsoft's Event Hubs SDKs (Python azure-eventhub, JS @azure/event-hubs,
# Rust azure_messaging_eventhubs) against `hubcat emulator`. See README.md.
#
#   HUBCAT=target/debug/hubcat tests/interop/run.sh
#
# Env:
#   HUBCAT          emulator binary (default target/release/hubcat; a relative
#                   path is taken relative to the repository root)
#   INTEROP_ONLY    "py", "js" or "rs" to run one SDK only (default: all three;
#                   "rs" still runs the Python consumer that reads its events back)
#   RS_RUNS         how many times the Rust SDK check runs in a row (default 20)
#   INTEROP_SKIP    comma-separated check names to skip (counted as skipped)
#
# The last line printed is always `N passed, M failed`. Exit status is non-zero
# when M > 0 or when anything crashed (crashes count as failures).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$HERE/.work"
mkdir -p "$WORK"

# shellcheck source-path=SCRIPTDIR source=../results.sh
source "$HERE/../results.sh"
EMU_PID=""

stop_emulator() {
  if [[ -n "$EMU_PID" ]] && kill -0 "$EMU_PID" 2>/dev/null; then
    kill -TERM "$EMU_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$EMU_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$EMU_PID" 2>/dev/null; then
      echo "emulator did not exit on SIGTERM within 5s; killing it" >&2
      kill -KILL "$EMU_PID" 2>/dev/null || true
    fi
    wait "$EMU_PID" 2>/dev/null || true
  fi
  EMU_PID=""
}

on_exit() {
  local rc=$?
  stop_emulator
  if [[ $SUMMARY_DONE == 0 ]]; then
    # Died in the middle (set -e, signal): still honour the last-line contract.
    harness_fail "run.sh" "aborted with status $rc"
    summary
    exit 1
  fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Installs (reused when present)
# ---------------------------------------------------------------------------
PY_VERSION="5.15.1"
# The SDK's WebSocket transport needs websocket-client, which it does not depend on.
WS_CLIENT_VERSION="1.9.2"
VENV="$HERE/.venv"
install_python() {
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import azure.eventhub, websocket, sys; sys.exit(azure.eventhub.__version__ != '$PY_VERSION' or websocket.__version__ != '$WS_CLIENT_VERSION')" 2>/dev/null; then
    return 0
  fi
  echo "installing azure-eventhub==$PY_VERSION websocket-client==$WS_CLIENT_VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "azure-eventhub==$PY_VERSION" "websocket-client==$WS_CLIENT_VERSION" >&2
}
install_node() {
  if [[ -f "$HERE/node_modules/@azure/event-hubs/package.json" ]] &&
    grep -q '"version": "6.0.4"' "$HERE/node_modules/@azure/event-hubs/package.json"; then
    return 0
  fi
  echo "installing node packages (package-lock.json) into $HERE/node_modules" >&2
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >&2)
}

ONLY="${INTEROP_ONLY:-}"
RUN_PY=1
RUN_JS=1
RUN_RS=1
[[ "$ONLY" == "js" ]] && RUN_PY=0 && RUN_RS=0
[[ "$ONLY" == "py" ]] && RUN_JS=0 && RUN_RS=0
[[ "$ONLY" == "rs" ]] && RUN_JS=0
if [[ $RUN_PY == 1 ]] && ! install_python; then
  harness_fail "install.python" "pip install azure-eventhub==$PY_VERSION failed"
  RUN_PY=0
fi
if [[ $RUN_JS == 1 ]] && ! install_node; then
  harness_fail "install.node" "npm ci failed"
  RUN_JS=0
fi
# The Rust SDK check builds in the comparison harness's workspace (benches/compare),
# apart from the main one, so that `cargo test --workspace` never compiles the SDK.
RS_BIN="$ROOT/benches/compare/target/release/rust-sdk-interop"
install_rust() {
  echo "building the Rust SDK check (azure_messaging_eventhubs 0.16.0)" >&2
  cargo build --quiet --release --manifest-path "$ROOT/benches/compare/Cargo.toml" -p rust-sdk-interop >&2
}
if [[ $RUN_RS == 1 ]] && ! install_rust; then
  harness_fail "install.rust" "cargo build of tests/interop/rust failed"
  RUN_RS=0
fi

# ---------------------------------------------------------------------------
# Emulator
# ---------------------------------------------------------------------------
HUBCAT="${HUBCAT:-target/release/hubcat}"
[[ "$HUBCAT" == /* ]] || HUBCAT="$ROOT/$HUBCAT"
MAX_MESSAGE_SIZE=262144 # not the 1 MiB default, so the checks see the flag took effect
KEY_NAME="InteropPolicy" # not the default, so the checks see --key-name took effect
KEY="interop-$RANDOM$RANDOM-key"
HUBS=(eh1:4 pysend:4 pybuf:4 keys3:3 keys11:11 pytrace:2 pyws:2 jssend:4 jsbuf:4 jsidem:4 hubcatsend:4 rsprops:4 rssend:4 rsbuf:4)

# Microsoft's Python SDK dials 5671 for TLS whatever port the endpoint names, so the
# emulator's TLS listener goes there when the port is free (its CA written for the SDK).
TLS_PORT=5671
tls_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null; }
start_emulator() {
  # --ws-bind: a stdout line of its own, the WebSocket listener's connection string
  # (after the TLS listener's, when there is one).
  local args=(emulator --bind 127.0.0.1:0 --ws-bind 127.0.0.1:0 --key-name "$KEY_NAME" --key "$KEY" --max-message-size "$MAX_MESSAGE_SIZE")
  local h
  EMU_LINES=2
  for h in "${HUBS[@]}"; do args+=(--hub "$h"); done
  EH_TLS_CS=""
  EH_TLS_CA=""
  if tls_port_free; then
    args+=(--tls-bind "127.0.0.1:$TLS_PORT" --tls-ca-out "$WORK/tls-ca.pem")
    EMU_LINES=3
  fi
  : >"$WORK/emulator.stdout"
  echo "starting: $HUBCAT ${args[*]}" >"$WORK/emulator.log"
  "$HUBCAT" "${args[@]}" >"$WORK/emulator.stdout" 2>>"$WORK/emulator.log" &
  EMU_PID=$!
  local i
  for i in $(seq 1 150); do # 15 s
    if [[ -s "$WORK/emulator.stdout" ]] && [[ "$(wc -l <"$WORK/emulator.stdout")" -ge $EMU_LINES ]]; then
      EH_CS="$(head -n 1 "$WORK/emulator.stdout" | tr -d '\r')"
      if [[ $EMU_LINES -eq 3 ]]; then
        EH_TLS_CS="$(sed -n 2p "$WORK/emulator.stdout" | tr -d '\r')"
        EH_TLS_CA="$WORK/tls-ca.pem"
      fi
      EH_WS_CS="$(sed -n "${EMU_LINES}p" "$WORK/emulator.stdout" | tr -d '\r')"
      return 0
    fi
    if ! kill -0 "$EMU_PID" 2>/dev/null; then
      wait "$EMU_PID" 2>/dev/null && rc=0 || rc=$?
      EMU_PID=""
      harness_fail "emulator.start" "hubcat exited with status $rc before printing a connection string; stderr tail: $(tail -n 3 "$WORK/emulator.log" | tr '\n' ' ')"
      return 1
    fi
    sleep 0.1
  done
  harness_fail "emulator.start" "no connection string on stdout within 15s"
  return 1
}

if [[ ! -x "$HUBCAT" ]]; then
  harness_fail "emulator.start" "no executable at $HUBCAT (build it, or set HUBCAT)"
  summary
  exit 1
fi
if ! start_emulator; then
  summary
  exit 1
fi

# The connection-string contract itself is a check.
CS_RE="^Endpoint=sb://127\.0\.0\.1:([0-9]+);SharedAccessKeyName=${KEY_NAME};SharedAccessKey=${KEY};UseDevelopmentEmulator=true$"
if [[ "$EH_CS" =~ $CS_RE ]] && [[ "${BASH_REMATCH[1]}" != "0" ]]; then
  echo "PASS emulator.connection_string"
  PASSED=$((PASSED + 1))
else
  harness_fail "emulator.connection_string" "unexpected first stdout line: $EH_CS"
fi
echo "emulator pid $EMU_PID: $EH_CS" >&2

RUN_ID="$(date +%s)-$$"
export EH_CS EH_WS_CS EH_RUN_ID="$RUN_ID" EH_MAX_MESSAGE_SIZE="$MAX_MESSAGE_SIZE" EH_TLS_CS EH_TLS_CA

# Runs one check script; its PASS/FAIL lines are echoed and counted; a
# non-zero exit (crash) or a missing line-less run counts as one failure.
run_suite() {
  local name="$1" limit="$2"
  shift 2
  local out="$WORK/$name.stdout" err="$WORK/$name.stderr" rc=0
  timeout --kill-after=5 "$limit" "$@" >"$out" 2>"$err" || rc=$?
  grep -E '^(PASS|FAIL|SKIP) ' "$out" || true
  local p f s
  p=$(grep -c '^PASS ' "$out" || true)
  f=$(grep -c '^FAIL ' "$out" || true)
  s=$(grep -c '^SKIP ' "$out" || true)
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  SKIPPED=$((SKIPPED + s))
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    harness_fail "$name" "killed after ${limit}s (see tests/interop/.work/$name.stderr)"
  elif [[ $rc -ne 0 ]]; then
    harness_fail "$name" "crashed with status $rc: $(tail -n 3 "$err" | tr '\n' ' ')"
  elif [[ $((p + f + s)) -eq 0 ]]; then
    harness_fail "$name" "ran no check"
  fi
}

# This project's own producer: `hubcat send` of keyed JSON lines; the Python
# consumer reads them back below (py.receive.hubcat_send_keyed_lines).
HUBCAT_SEND_COUNT="${HUBCAT_SEND_COUNT:-100000}"
python3 -c "
import json, sys
out = sys.stdout
for i in range($HUBCAT_SEND_COUNT):
    out.write(json.dumps({'user': 'user-%d' % (i % 997), 'n': i}) + '\n')
" >"$WORK/hubcat_send.jsonl"
if "$HUBCAT" send --connection-string "$EH_CS" --hub hubcatsend --key-field user \
  --failed-out "$WORK/hubcat_send.failed" --summary json <"$WORK/hubcat_send.jsonl" \
  >"$WORK/hubcat_send.json" 2>"$WORK/hubcat_send.stderr" &&
  grep -q "\"events_sent\":${HUBCAT_SEND_COUNT}[,}]" "$WORK/hubcat_send.json"; then
  echo "PASS hubcat.send.keyed_json_lines"
  PASSED=$((PASSED + 1))
  export HUBCAT_SEND_HUB=hubcatsend HUBCAT_SEND_COUNT
else
  harness_fail "hubcat.send.keyed_json_lines" "$(tail -n 6 "$WORK/hubcat_send.stderr" | tr '\n' ' ')"
fi
cat "$WORK/hubcat_send.json" >&2

# Microsoft's Rust SDK, RS_RUNS times in a row, each run bounded by a timeout: a run
# once hung for good under load (see README.md). The first run's checks count one by
# one; every run must pass them all, and none may hang.
RS_RUNS="${RS_RUNS:-20}"
if [[ $RUN_RS == 1 ]]; then
  export RS_SENT="$WORK/rs_sent.tsv"
  : >"$RS_SENT"
  rs_bad=()
  for i in $(seq 1 "$RS_RUNS"); do
    out="$WORK/rs_checks.$i.stdout" err="$WORK/rs_checks.$i.stderr" rc=0
    RS_TAG="$RUN_ID-$i" timeout --kill-after=5 90 "$RS_BIN" >"$out" 2>"$err" || rc=$?
    if [[ $i == 1 ]]; then
      grep -E '^(PASS|FAIL) ' "$out" || true
      PASSED=$((PASSED + $(grep -c '^PASS ' "$out" || true)))
      FAILED=$((FAILED + $(grep -c '^FAIL ' "$out" || true)))
    fi
    if [[ $rc -ne 0 ]]; then
      why="exit status $rc"
      [[ $rc -eq 124 || $rc -eq 137 ]] && why="killed after 90 s"
      rs_bad+=("run $i: $why")
    elif grep -q '^FAIL ' "$out" || ! grep -q '^PASS ' "$out"; then
      rs_bad+=("run $i: $(grep -m1 '^FAIL ' "$out" || echo 'no check ran')")
    fi
  done
  if [[ ${#rs_bad[@]} -eq 0 ]]; then
    echo "PASS rs.repeat.${RS_RUNS}_runs_in_a_row_none_hanging"
    PASSED=$((PASSED + 1))
  else
    harness_fail "rs.repeat.${RS_RUNS}_runs_in_a_row_none_hanging" "${#rs_bad[*]} bad: ${rs_bad[*]} (see tests/interop/.work/rs_checks.N.stderr)"
  fi
fi

cd "$HERE"
if [[ $RUN_PY == 1 ]]; then
  run_suite py_checks 240 "$VENV/bin/python" -u "$HERE/py_checks.py"
  run_suite py_ws_checks 120 "$VENV/bin/python" -u "$HERE/py_ws_checks.py"
fi
if [[ $RUN_JS == 1 ]]; then
  # Node.js reads the CA it is to trust besides its own from NODE_EXTRA_CA_CERTS.
  if [[ -n "$EH_TLS_CA" ]]; then
    run_suite js_checks 240 env NODE_EXTRA_CA_CERTS="$EH_TLS_CA" node "$HERE/js_checks.mjs"
  else
    run_suite js_checks 240 node "$HERE/js_checks.mjs"
  fi
fi

# The emulator must still be alive after all that, and stop cleanly on SIGTERM.
if [[ -n "$EMU_PID" ]] && kill -0 "$EMU_PID" 2>/dev/null; then
  kill -TERM "$EMU_PID"
  stopped=0
  for _ in $(seq 1 50); do
    if ! kill -0 "$EMU_PID" 2>/dev/null; then stopped=1; break; fi
    sleep 0.1
  done
  if [[ $stopped == 1 ]]; then
    echo "PASS emulator.sigterm_exit"
    PASSED=$((PASSED + 1))
    wait "$EMU_PID" 2>/dev/null || true
    EMU_PID=""
  else
    harness_fail "emulator.sigterm_exit" "still running 5s after SIGTERM"
  fi
else
  harness_fail "emulator.alive" "emulator process died during the run; stderr tail: $(tail -n 3 "$WORK/emulator.log" | tr '\n' ' ')"
  EMU_PID=""
fi

# Contract: on stdout the connection strings alone: the plain listener's, the TLS
# listener's when there is one, then the WebSocket listener's (same key, its own
# port); logs on stderr.
WS_RE="^Endpoint=sb://127\.0\.0\.1:([0-9]+);SharedAccessKeyName=${KEY_NAME};SharedAccessKey=${KEY};UseDevelopmentEmulator=true$"
if [[ "$(wc -l <"$WORK/emulator.stdout")" -eq $EMU_LINES ]] && [[ "$EH_WS_CS" =~ $WS_RE ]] &&
  [[ "$EH_WS_CS" != "$EH_CS" ]]; then
  pass "emulator.stdout_connection_strings_only" "$EMU_LINES lines"
else
  harness_fail "emulator.stdout_connection_strings_only" "stdout had $(wc -l <"$WORK/emulator.stdout") lines, not $EMU_LINES, e.g.: $(sed -n "$((EMU_LINES + 1))p" "$WORK/emulator.stdout" | cut -c1-200); WebSocket: $EH_WS_CS"
fi

# ---------------------------------------------------------------------------
# A drop-in for Microsoft's emulator
# ---------------------------------------------------------------------------
# Started as a project set up for Microsoft's emulator expects it: no flags but the hub,
# so AMQP on 5672 and the health probe on 5300; waited for as its harnesses wait, on the
# log line and then on `GET /health` with curl; used with the connection string
# Microsoft documents, unchanged, by Microsoft's Python and JS SDKs and by `hubcat send`.
stop_emulator
DOC_CS="Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
dropin() {
  if ! command -v curl >/dev/null; then
    echo "installing curl from Debian's packages" >&2
    { apt-get update -qq && apt-get install -y -qq curl; } >&2 || { harness_fail "dropin.install_curl" "apt-get install curl failed"; return; }
  fi
  "$HUBCAT" emulator --hub eh1:2 >"$WORK/dropin.stdout" 2>"$WORK/dropin.log" &
  EMU_PID=$!
  local up=0
  for _ in $(seq 1 150); do # 15 s
    if grep -qx "Emulator Service is Successfully Up!" "$WORK/dropin.log"; then up=1; break; fi
    kill -0 "$EMU_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $up == 0 ]]; then
    harness_fail "dropin.ready_log_line" "not on stderr within 15 s: $(tail -n 3 "$WORK/dropin.log" | tr '\n' ' ')"
    return
  fi
  pass "dropin.ready_log_line"
  local health
  if health="$(curl -fsS http://localhost:5300/health)" &&
    python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1]) != {"status": "healthy", "message": "Service is healthy."})' "$health"; then
    pass "dropin.health_probe_with_curl" "$health"
  else
    fail "dropin.health_probe_with_curl" "answer: ${health:-none}"
  fi
  local body="hubcat-dropin-$RUN_ID"
  if echo "$body" | "$HUBCAT" send --connection-string "$DOC_CS" --hub eh1 >"$WORK/dropin_send.out" 2>"$WORK/dropin_send.stderr"; then
    pass "dropin.hubcat_send_documented_connection_string"
  else
    fail "dropin.hubcat_send_documented_connection_string" "$(tail -n 3 "$WORK/dropin_send.stderr" | tr '\n' ' ')"
  fi
  if [[ $RUN_PY == 1 ]]; then
    run_suite py_dropin 120 env EH_DOC_CS="$DOC_CS" EH_HUBCAT_BODY="$body" "$VENV/bin/python" -u "$HERE/py_dropin.py"
  fi
  if [[ $RUN_JS == 1 ]]; then
    run_suite js_dropin 90 env EH_DOC_CS="$DOC_CS" node "$HERE/js_dropin.mjs"
  fi
  stop_emulator
}
if port_free 5672 && port_free 5300; then
  dropin
else
  skip "dropin" "127.0.0.1:5672 or :5300 is in use"
fi

if [[ $FAILED -gt 0 ]]; then
  echo "logs: $WORK/{emulator.log,py_checks.stderr,js_checks.stderr}" >&2
fi
stop_emulator
summary
[[ $FAILED -eq 0 ]]
