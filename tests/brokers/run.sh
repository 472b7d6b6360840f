#!/usr/bin/env bash
# Runs `hubcat send --amqp-url` (generic AMQP 1.0 mode) against real brokers:
# RabbitMQ 3.10 (Debian, rabbitmq_amqp1_0 plugin) and Apache Qpid Proton's C
# example broker (Debian's libqpid-proton11-dev-examples), and puts the numbers
# next to `hubcat emulator`'s. Events are read back with an independent AMQP 1.0
# client (Debian's python3-qpid-proton). See README.md.
#
#   HUBCAT=target/debug/hubcat bash tests/brokers/run.sh
#
# Env:
#   HUBCAT          hubcat binary (default target/release/hubcat; a relative path
#                   is taken relative to the repository root)
#   BROKERS_ONLY    "rabbitmq", "proton" or "emulator": run one of them only
#   BROKERS_SENDER  "standin": publish with check.py's proton sender instead of
#                   `hubcat send` (develops the harness without hubcat; the
#                   emulator's Event Hubs mode still needs hubcat)
#   BROKERS_EVENTS  events of the big round trips (default 100000)
#
# The last line printed is always `N passed, M failed`. Exit status is non-zero
# when M > 0 or when anything crashed (crashes count as failures). Needs root for
# the apt-get installs (skipped when everything is installed already).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
WORK="$HERE/.work"
mkdir -p "$WORK"
T_START=$(date +%s)

PASSED=0
FAILED=0
SKIPPED=0
SUMMARY_DONE=0
RMQ_UP=0
PB_PID=""
EMU_PID=""
POLICY_CREATED=0
TABLE=()

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
# A failure that is not a check of its own (install, broker start, crash).
harness_fail() { fail "$@"; }
now() { date +%s.%N; }
join_why() { # "a" "b" -> "a; b"
  local out="$1" w
  shift
  for w in "$@"; do out+="; $w"; done
  printf '%s' "$out"
}
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
tail1() { tail -n "${2:-3}" "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-400; }

# ---------------------------------------------------------------------------
# Installs (reused when present)
# ---------------------------------------------------------------------------
APT_PKGS=(rabbitmq-server libqpid-proton11-dev libqpid-proton11-dev-examples python3-qpid-proton
  gcc pkg-config python3-venv)
install_apt() {
  local missing=() p
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages (${missing[*]}) and not root" >&2
    return 1
  fi
  echo "installing with apt-get: ${missing[*]}" >&2
  # Keep apt from starting the services itself (rabbitmq-server, epmd): 101 is
  # "action not allowed" for invoke-rc.d. Only if no policy exists already.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_CREATED=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$WORK/apt.log" 2>&1 || rc=$?
  remove_policy
  [[ $rc -eq 0 ]] || echo "apt-get failed ($rc): $(tail1 "$WORK/apt.log" 5)" >&2
  return $rc
}
remove_policy() {
  if [[ $POLICY_CREATED == 1 ]]; then
    rm -f /usr/sbin/policy-rc.d
    POLICY_CREATED=0
  fi
}

# A venv of Debian's python3 that sees python3-qpid-proton (system site
# packages) and has the Azure SDK whose partition-key hash the checker uses.
PY_VERSION="5.15.1"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
install_python() {
  if [[ -x "$PY" ]] && "$PY" -c "import proton, azure.eventhub, sys; sys.exit(azure.eventhub.__version__ != '$PY_VERSION')" 2>/dev/null; then
    return 0
  fi
  echo "installing azure-eventhub==$PY_VERSION into $VENV (python: /usr/bin/python3)" >&2
  rm -rf "$VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "azure-eventhub==$PY_VERSION" >&2
  "$PY" -c "import proton, azure.eventhub" >&2
}

# Proton's C example broker, compiled from Debian's example source.
PB_SRC=/usr/share/proton/examples/c/broker.c
PB_BIN="$WORK/proton-broker"
build_proton_broker() {
  if [[ -x "$PB_BIN" && "$PB_BIN" -nt "$PB_SRC" ]]; then return 0; fi
  # shellcheck disable=SC2046
  gcc -O2 -o "$PB_BIN" "$PB_SRC" $(pkg-config --cflags --libs libqpid-proton) -lpthread >"$WORK/proton-broker.build.log" 2>&1 || {
    echo "gcc failed: $(tail1 "$WORK/proton-broker.build.log" 5)" >&2
    return 1
  }
}

# ---------------------------------------------------------------------------
# Brokers
# ---------------------------------------------------------------------------
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# RabbitMQ runs as this user (root in CI) with every file of its own under
# .work/rabbitmq: its config, plugins file, Mnesia database, logs, Erlang
# cookie (HOME) and its own epmd on a port of its own, so neither
# /etc/rabbitmq, /var/lib/rabbitmq nor a system RabbitMQ/epmd is touched.
RMQ_DIR="$WORK/rabbitmq"
RMQ_NODE="hubcat-brokers@localhost"
RMQ_USER="ci"
RMQ_PASS="ci-$RANDOM$RANDOM"
RMQ_VERSION="3.10"
RMQ_ENV=()
rmq_set_env() {
  RMQ_ENV=(HOME="$RMQ_DIR/home"
    RABBITMQ_CONF_ENV_FILE="$RMQ_DIR/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$RMQ_DIR/rabbitmq.conf"
    RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_DIR/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$RMQ_DIR/mnesia"
    RABBITMQ_LOG_BASE="$RMQ_DIR/log"
    RABBITMQ_PID_FILE="$RMQ_DIR/rabbit.pid"
    RABBITMQ_NODENAME="$RMQ_NODE"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_DIST_PORT="$RMQ_DIST_PORT"
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    ERL_EPMD_ADDRESS=127.0.0.1
    ERL_EPMD_PORT="$RMQ_EPMD_PORT")
}
# rmq SECONDS TOOL ARGS...: a RabbitMQ script with our environment, bounded.
rmq() {
  local limit="$1" tool="$2"
  shift 2
  timeout --kill-after=5 "$limit" env "${RMQ_ENV[@]}" "/usr/lib/rabbitmq/bin/$tool" "$@"
}
start_rabbitmq() {
  rm -rf "$RMQ_DIR"
  mkdir -p "$RMQ_DIR/home" "$RMQ_DIR/mnesia" "$RMQ_DIR/log"
  RMQ_PORT=$(free_port)
  RMQ_DIST_PORT=$(free_port)
  RMQ_EPMD_PORT=$(free_port)
  rmq_set_env
  cat >"$RMQ_DIR/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$RMQ_PORT
loopback_users.guest = true
amqp1_0.default_user = none
EOF
  echo '[rabbitmq_amqp1_0].' >"$RMQ_DIR/enabled_plugins"
  : >"$RMQ_DIR/rabbitmq-env.conf"
  RMQ_UP=1
  rmq 30 rabbitmq-server -detached >"$RMQ_DIR/start.log" 2>&1 || true
  local i
  for i in $(seq 1 300); do # 60 s
    port_open "$RMQ_PORT" && break
    sleep 0.2
  done
  if ! port_open "$RMQ_PORT" || ! rmq 60 rabbitmqctl -q await_startup >>"$RMQ_DIR/start.log" 2>&1; then
    harness_fail "rabbitmq.start" "no AMQP listener on 127.0.0.1:$RMQ_PORT within 60s: $(tail1 "$RMQ_DIR/start.log") $(tail1 "$RMQ_DIR/log/$RMQ_NODE.log")"
    stop_rabbitmq
    return 1
  fi
  # The /amq/queue/ round trip needs its queues declared beforehand (durable,
  # not auto-delete, no arguments), as the AMQP 0-9-1 side would.
  {
    rmq 30 rabbitmqctl -q add_user "$RMQ_USER" "$RMQ_PASS" &&
      rmq 30 rabbitmqctl -q set_permissions -p / "$RMQ_USER" '.*' '.*' '.*' &&
      rmq 30 rabbitmqctl -q eval "[rabbit_amqqueue:declare(rabbit_misc:r(<<\"/\">>, queue, Q), true, false, [], none, <<\"$RMQ_USER\">>) || Q <- [<<\"amq-0\">>, <<\"amq-1\">>, <<\"amq-2\">>, <<\"amq-3\">>]]." &&
      RMQ_VERSION=$(rmq 30 rabbitmqctl -q version)
  } >>"$RMQ_DIR/start.log" 2>&1 || {
    harness_fail "rabbitmq.setup" "user/queues: $(tail1 "$RMQ_DIR/start.log")"
    stop_rabbitmq
    return 1
  }
  echo "rabbitmq $RMQ_VERSION on 127.0.0.1:$RMQ_PORT (pid $(cat "$RMQ_DIR/rabbit.pid" 2>/dev/null), epmd port $RMQ_EPMD_PORT)" >&2
}
rmq_pid() { cat "$RMQ_DIR/rabbit.pid" 2>/dev/null || true; }
stop_rabbitmq() {
  [[ $RMQ_UP == 1 ]] || return 0
  RMQ_UP=0
  local pid
  pid=$(rmq_pid)
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    rmq 30 rabbitmqctl -q shutdown >>"$RMQ_DIR/stop.log" 2>&1 || true
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ -n "$pid" ]]; then
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  # Our own epmd (its own port), not any other on this machine. It refuses to
  # exit while a node is still registered, so try for a few seconds.
  for _ in $(seq 1 30); do
    port_open "$RMQ_EPMD_PORT" || break
    env ERL_EPMD_PORT="$RMQ_EPMD_PORT" epmd -kill >>"$RMQ_DIR/stop.log" 2>&1 || true
    sleep 0.2
  done
}

start_proton_broker() {
  : >"$WORK/proton-broker.out"
  # Port 0: the broker prints "listening on PORT". It is run from .work, where
  # it finds no ssl-certs/ (it says so once and serves plain AMQP only).
  (cd "$WORK" && exec "$PB_BIN" 127.0.0.1 0 >>"$WORK/proton-broker.out" 2>&1) &
  PB_PID=$!
  disown "$PB_PID" # no "Killed" job report when broker_gone kills it
  local i
  for i in $(seq 1 100); do
    PB_PORT=$(sed -n 's/^listening on \([0-9]*\)$/\1/p' "$WORK/proton-broker.out")
    [[ -n "$PB_PORT" ]] && break
    kill -0 "$PB_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$PB_PORT" ]]; then
    harness_fail "proton.start" "no 'listening on' line: $(tail1 "$WORK/proton-broker.out")"
    return 1
  fi
  echo "proton C broker on 127.0.0.1:$PB_PORT (pid $PB_PID)" >&2
}
stop_proton_broker() {
  if [[ -n "$PB_PID" ]] && kill -0 "$PB_PID" 2>/dev/null; then
    kill -KILL "$PB_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$PB_PID" 2>/dev/null || break
      sleep 0.1
    done
  fi
  PB_PID=""
}

start_emulator() {
  : >"$WORK/emulator.stdout"
  "$HUBCAT" emulator --bind 127.0.0.1:0 --hub eh1:4 >"$WORK/emulator.stdout" 2>"$WORK/emulator.log" &
  EMU_PID=$!
  local i
  for i in $(seq 1 150); do
    if [[ -s "$WORK/emulator.stdout" ]]; then
      EH_CS="$(head -n 1 "$WORK/emulator.stdout" | tr -d '\r')"
      return 0
    fi
    kill -0 "$EMU_PID" 2>/dev/null || break
    sleep 0.1
  done
  harness_fail "emulator.start" "no connection string within 15s: $(tail1 "$WORK/emulator.log")"
  return 1
}
stop_emulator() {
  if [[ -n "$EMU_PID" ]] && kill -0 "$EMU_PID" 2>/dev/null; then
    kill -TERM "$EMU_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$EMU_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
  fi
  EMU_PID=""
}

on_exit() {
  local rc=$?
  stop_emulator
  stop_proton_broker
  stop_rabbitmq
  remove_policy
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
# Sending and checking
# ---------------------------------------------------------------------------
HUBCAT="${HUBCAT:-target/release/hubcat}"
[[ "$HUBCAT" == /* ]] || HUBCAT="$ROOT/$HUBCAT"
RUN_ID="$(date +%s)-$$"
EVENTS="${BROKERS_EVENTS:-100000}"
SEND_HEADERS=(-H source=brokers -H "run=$RUN_ID")
CONTENT_TYPE="text/plain"

# send NAME LIMIT URL INPUT [extra hubcat flags...] -- ADDRESS...
# Leaves $WORK/NAME.json (summary), NAME.stderr, and SEND_RC, SEND_SECS.
send() {
  local name="$1" limit="$2" url="$3" input="$4"
  shift 4
  local extra=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do extra+=("$1"); shift; done
  shift
  local addr=() a
  for a in "$@"; do addr+=(--address "$a"); done
  local t0
  t0=$(now)
  SEND_RC=0
  timeout --kill-after=5 "$limit" "${SEND[@]}" --amqp-url "$url" "${addr[@]}" --key-delimiter '\t' \
    "${SEND_HEADERS[@]}" --content-type "$CONTENT_TYPE" --summary json -q "${extra[@]}" "$input" \
    >"$WORK/$name.json" 2>"$WORK/$name.stderr" || SEND_RC=$?
  SEND_SECS=$(since "$t0")
}

# roundtrip NAME URL INPUT ADDRESS...: publish, read every queue back, check.
roundtrip() {
  local name="$1" url="$2" input="$3"
  shift 3
  send "$name" 180 "$url" "$input" -- "$@"
  echo "$name: send exit $SEND_RC in ${SEND_SECS}s: $(tail -n 1 "$WORK/$name.json" 2>/dev/null)" >&2
  local addr=() a
  for a in "$@"; do addr+=(--address "$a"); done
  local out="$WORK/$name.check" rc=0
  timeout --kill-after=5 200 "$PY" "$HERE/check.py" readcheck --name "$name" --url "$url" "${addr[@]}" \
    --input "$input" "${SEND_HEADERS[@]}" --content-type "$CONTENT_TYPE" \
    --send-summary "$WORK/$name.json" --send-rc "$SEND_RC" --stats-out "$WORK/$name.stats" \
    >"$out" 2>"$WORK/$name.check.stderr" || rc=$?
  if grep -qE '^(PASS|FAIL) ' "$out"; then
    local line
    line=$(grep -m1 -E '^(PASS|FAIL) ' "$out")
    if [[ $SEND_RC -ne 0 && -s "$WORK/$name.stderr" ]]; then
      line="$line; send stderr: $(tail1 "$WORK/$name.stderr" 2)"
    fi
    echo "$line"
    if [[ "$line" == PASS* ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
  else
    harness_fail "$name" "checker crashed (status $rc): $(tail1 "$WORK/$name.check.stderr")"
  fi
  table_row "$name"
}
table_row() { # check-name
  local st="$WORK/$1.stats"
  [[ -s "$st" ]] || return 0
  TABLE+=("$("$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))
eps = s["send_eps"]
print("| %s | %s | %d | %s | %s | %s |" % (sys.argv[2], s["check"], s["events"],
      "%d (%.1f%%)" % (s["stored_once"], 100.0 * s["stored_once"] / max(1, s["events"])),
      "yes" if s["in_order"] else "NO", "%.0f" % eps if isinstance(eps, (int, float)) else "-"))
' "$st" "$BROKER_LABEL" "$1")")
}

# expect_failure NAME LIMIT PATTERN URL INPUT N [extra flags] -- ADDRESS...
# hubcat must exit non-zero within LIMIT seconds, name the cause on stderr
# (PATTERN, grep -iE) and account for every event in its JSON summary.
expect_failure() {
  local name="$1" limit="$2" pattern="$3" url="$4" input="$5" n="$6"
  shift 6
  send "$name" "$limit" "$url" "$input" "$@"
  local why=() acct
  if [[ $SEND_RC -eq 124 || $SEND_RC -eq 137 ]]; then
    why+=("still running after ${limit}s (killed)")
  elif [[ $SEND_RC -eq 0 ]]; then
    why+=("exit status 0")
  fi
  local errline
  errline=$(grep -m1 -iE "$pattern" "$WORK/$name.stderr" | cut -c1-300 || true)
  [[ -n "$errline" ]] || why+=("stderr does not match /$pattern/: $(tail1 "$WORK/$name.stderr" 3)")
  # The summary must account for every event, or there is none and the
  # process failed before reading any input (reported as such).
  acct=$("$PY" -c '
import json, sys
n, rc = int(sys.argv[2]), int(sys.argv[3])
txt = open(sys.argv[1]).read().strip()
if not txt:
    # Acceptable only as a clean error exit (hubcat stops before publishing
    # anything, e.g. at connect or attach), not a signal or a panic.
    err = open(sys.argv[4], errors="replace").read()
    if rc >= 124 or "panicked" in err:
        print("BAD no JSON summary, exit status %d%s" % (rc, " (panic)" if "panicked" in err else ""))
    else:
        print("OK no JSON summary (stopped with an error before publishing)")
    sys.exit()
try:
    s = json.loads(txt.splitlines()[-1])
except ValueError:
    print("BAD stdout is not a JSON summary: %r" % txt[:200]); sys.exit()
r, ok, bad = s.get("events_read"), s.get("events_sent"), s.get("events_failed")
desc = "summary ok=%s read=%s sent=%s failed=%s" % (s.get("ok"), r, ok, bad)
good = isinstance(r, int) and isinstance(ok, int) and isinstance(bad, int) and ok + bad == r and s.get("ok") is False
if n >= 0:
    good = good and r == n
print(("OK " if good else "BAD ") + desc)
' "$WORK/$name.json" "$n" "$SEND_RC" "$WORK/$name.stderr" 2>&1)
  [[ "$acct" == OK* ]] || why+=("${acct#BAD }")
  if [[ ${#why[@]} -eq 0 ]]; then
    pass "$name" "exit $SEND_RC after ${SEND_SECS}s; ${acct#OK }; stderr: $errline"
  else
    fail "$name" "$(join_why "${why[@]}") (exit $SEND_RC after ${SEND_SECS}s; ${acct#* })"
  fi
}

# broker_gone NAME URL INPUT KILLCMD ADDRESS...: the broker goes away mid-stream.
# The input lasts GONE_EVENTS/GONE_RATE = 4 s; the broker goes at 2 s. The
# pending bound holds the whole input, so what is read after the broker went waits
# in the producer rather than holding up the reading (with the default bound of
# 2,500 the input is read 2,500 events per delivery timeout: the bound at work).
# The bound: the 4 s of input + the 10 s delivery timeout of the last events read
# + a 5 s try timeout + slack = 30 s from the start.
GONE_EVENTS=20000
GONE_RATE=5000
GONE_BOUND=30
broker_gone() {
  local name="$1" url="$2" input="$3" killcmd="$4"
  shift 4
  local addr=() a
  for a in "$@"; do addr+=(--address "$a"); done
  local t0 pid
  t0=$(now)
  SEND_RC=0
  # SIGTERM at the bound, then 25 s (2.5 delivery timeouts) for hubcat to give
  # up on what it holds and print its summary before SIGKILL.
  timeout --kill-after=25 "$GONE_BOUND" "${SEND[@]}" --amqp-url "$url" "${addr[@]}" --key-delimiter '\t' \
    "${SEND_HEADERS[@]}" --content-type "$CONTENT_TYPE" --summary json -q \
    --rate "$GONE_RATE" --max-pending "$GONE_EVENTS" --delivery-timeout 10s --try-timeout 5s "$input" \
    >"$WORK/$name.json" 2>"$WORK/$name.stderr" &
  pid=$!
  sleep 2
  local t_kill
  t_kill=$(now)
  eval "$killcmd" >>"$WORK/$name.kill.log" 2>&1 || true
  local kill_secs t_gone
  kill_secs=$(since "$t_kill")
  t_gone=$(now)
  { wait "$pid" || SEND_RC=$?; } 2>/dev/null
  SEND_SECS=$(since "$t0")
  local after
  after="$(since "$t_gone")s after the broker was gone (stopping it took ${kill_secs}s)"
  local why=() acct errline
  if [[ $SEND_RC -eq 124 || $SEND_RC -eq 137 ]]; then
    why+=("still running ${GONE_BOUND}s after start (stopped by timeout, status $SEND_RC)")
  elif [[ $SEND_RC -eq 0 ]]; then
    why+=("exit status 0")
  fi
  errline=$(grep -m1 -iE 'connect|connection|closed|lost|refused|forced|shut|gone|broken|reset|eof|disconnect' "$WORK/$name.stderr" | cut -c1-300 || true)
  [[ -n "$errline" ]] || why+=("stderr does not say the connection was lost: $(tail1 "$WORK/$name.stderr" 3)")
  acct=$("$PY" -c '
import json, sys
txt = open(sys.argv[1]).read().strip()
try:
    s = json.loads(txt.splitlines()[-1])
except (ValueError, IndexError):
    print("BAD no JSON summary: %r" % txt[:200]); sys.exit()
r, ok, bad = s.get("events_read"), s.get("events_sent"), s.get("events_failed")
desc = "read=%s sent=%s failed=%s" % (r, ok, bad)
good = all(isinstance(x, int) for x in (r, ok, bad)) and ok + bad == r and s.get("ok") is False
mid = good and ok > 0 and bad > 0
print(("OK " if mid else "BAD ") + desc + ("" if mid or not good else " (the kill did not land mid-stream)"))
' "$WORK/$name.json" 2>&1)
  [[ "$acct" == OK* ]] || why+=("${acct#BAD }")
  if [[ ${#why[@]} -eq 0 ]]; then
    pass "$name" "exit $SEND_RC $after; ${acct#OK }; stderr: $errline"
  else
    fail "$name" "$(join_why "${why[@]}") (exit $SEND_RC $after; ${acct#* })"
  fi
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------
ONLY="${BROKERS_ONLY:-}"
RUN_RMQ=1
RUN_PB=1
RUN_EMU=1
case "$ONLY" in
"") ;;
rabbitmq) RUN_PB=0 RUN_EMU=0 ;;
proton) RUN_RMQ=0 RUN_EMU=0 ;;
emulator) RUN_RMQ=0 RUN_PB=0 ;;
*)
  harness_fail "run.sh" "BROKERS_ONLY must be rabbitmq, proton or emulator, not '$ONLY'"
  summary
  exit 1
  ;;
esac

if ! install_apt; then
  harness_fail "install.apt" "apt-get install ${APT_PKGS[*]} failed (see tests/brokers/.work/apt.log)"
  summary
  exit 1
fi
if ! install_python; then
  harness_fail "install.python" "venv with azure-eventhub==$PY_VERSION failed"
  summary
  exit 1
fi
if [[ $RUN_PB == 1 ]] && ! build_proton_broker; then
  harness_fail "install.proton_broker" "gcc $PB_SRC failed (see tests/brokers/.work/proton-broker.build.log)"
  RUN_PB=0
fi
echo "installs ready after $(($(date +%s) - T_START))s" >&2

# The independent partition mapping must itself be right before it judges hubcat.
"$PY" "$HERE/check.py" selftest --name resolver.selftest >"$WORK/selftest.out" 2>&1 || true
if grep -q '^PASS ' "$WORK/selftest.out"; then
  PASSED=$((PASSED + 1))
  grep '^PASS ' "$WORK/selftest.out"
else
  harness_fail "resolver.selftest" "$(tail1 "$WORK/selftest.out")"
fi

if [[ "${BROKERS_SENDER:-}" == "standin" ]]; then
  SEND=("$PY" "$HERE/check.py" send)
  echo "publishing with the stand-in proton sender (check.py send), not hubcat" >&2
else
  SEND=("$HUBCAT" send)
  if [[ ! -x "$HUBCAT" ]]; then
    harness_fail "hubcat" "no executable at $HUBCAT (build it, or set HUBCAT)"
    summary
    exit 1
  fi
  if ! "$HUBCAT" send --help 2>/dev/null | grep -q -- '--amqp-url'; then
    harness_fail "hubcat.amqp_url" "$HUBCAT send has no --amqp-url option (rebuild it; or BROKERS_SENDER=standin)"
    summary
    exit 1
  fi
fi

# Workloads: keyed lines KEY<TAB>RUNID|KEY|COUNTER|PADDING.
"$PY" "$HERE/check.py" gen --out "$WORK/big.tsv" --events "$EVENTS" --keys 1000 --run-id "$RUN_ID" 2>/dev/null
"$PY" "$HERE/check.py" gen --out "$WORK/small.tsv" --events 10000 --keys 1000 --run-id "$RUN_ID-s" --seed 7 2>/dev/null
"$PY" "$HERE/check.py" gen --out "$WORK/1k.tsv" --events 1000 --keys 100 --run-id "$RUN_ID-k" --seed 8 2>/dev/null
"$PY" "$HERE/check.py" gen --out "$WORK/gone.tsv" --events "$GONE_EVENTS" --keys 1000 --run-id "$RUN_ID-g" --seed 9 2>/dev/null

AUTH_PATTERN='auth|password|sasl|credential|unauthori[sz]ed|login|mechanism'

# --- RabbitMQ ---------------------------------------------------------------
if [[ $RUN_RMQ == 1 ]] && start_rabbitmq; then
  BROKER_LABEL="RabbitMQ $RMQ_VERSION \`/queue/\`"
  RMQ_URL="amqp://$RMQ_USER:$RMQ_PASS@127.0.0.1:$RMQ_PORT"
  roundtrip rabbitmq.roundtrip "$RMQ_URL" "$WORK/big.tsv" /queue/rt-0 /queue/rt-1 /queue/rt-2 /queue/rt-3
  BROKER_LABEL="RabbitMQ $RMQ_VERSION \`/amq/queue/\`"
  roundtrip rabbitmq.roundtrip_amq_queue "$RMQ_URL" "$WORK/small.tsv" /amq/queue/amq-0 /amq/queue/amq-1 /amq/queue/amq-2 /amq/queue/amq-3
  # RabbitMQ 3.10 ends the session (amqp:not-found) when an attach names an
  # exchange that does not exist. (/amq/queue/NAME of a missing queue is NOT
  # refused: the messages are accepted and dropped; see README.md.)
  expect_failure rabbitmq.bad_address 60 'not.found|no exchange|address|exchange|refused|attach' \
    "$RMQ_URL" "$WORK/1k.tsv" 1000 --delivery-timeout 30s --try-timeout 10s -- \
    /queue/ok-0 /exchange/does-not-exist /queue/ok-2 /queue/ok-3
  expect_failure rabbitmq.bad_password 60 "$AUTH_PATTERN" \
    "amqp://$RMQ_USER:wrong-$RMQ_PASS@127.0.0.1:$RMQ_PORT" "$WORK/1k.tsv" 1000 --delivery-timeout 30s --try-timeout 10s -- \
    /queue/bp-0 /queue/bp-1 /queue/bp-2 /queue/bp-3
  # Last: a graceful shutdown (RabbitMQ 3.10 ends the session with
  # amqp:internal-error "shutdown", closes the listener and then refuses new
  # connections).
  broker_gone rabbitmq.broker_gone "$RMQ_URL" "$WORK/gone.tsv" 'rmq 30 rabbitmqctl shutdown' \
    /queue/bg-0 /queue/bg-1 /queue/bg-2 /queue/bg-3
  stop_rabbitmq
fi

# --- Qpid Proton C example broker --------------------------------------------
if [[ $RUN_PB == 1 ]] && start_proton_broker; then
  BROKER_LABEL="Qpid Proton 0.37 C broker"
  PB_URL="amqp://127.0.0.1:$PB_PORT"
  roundtrip proton.roundtrip "$PB_URL" "$WORK/big.tsv" rt-0 rt-1 rt-2 rt-3
  # It offers SASL ANONYMOUS only, so user:password (PLAIN) is refused.
  expect_failure proton.bad_password 60 "$AUTH_PATTERN" \
    "amqp://$RMQ_USER:secret@127.0.0.1:$PB_PORT" "$WORK/1k.tsv" 1000 --delivery-timeout 30s --try-timeout 10s -- \
    bp-0 bp-1 bp-2 bp-3
  # Last: kill -9 (its queues live in memory only).
  broker_gone proton.broker_gone "$PB_URL" "$WORK/gone.tsv" 'kill -KILL $PB_PID' bg-0 bg-1 bg-2 bg-3
  stop_proton_broker
fi

# --- hubcat emulator, generic mode and Event Hubs mode -------------------------
if [[ $RUN_EMU == 1 ]]; then
  if [[ ! -x "$HUBCAT" ]]; then
    skip emulator.generic "no hubcat at $HUBCAT"
    skip emulator.eventhubs "no hubcat at $HUBCAT"
  elif start_emulator; then
    CS_RE='^Endpoint=sb://127\.0\.0\.1:([0-9]+);SharedAccessKeyName=([^;]+);SharedAccessKey=([^;]+);UseDevelopmentEmulator=true$'
    if [[ "$EH_CS" =~ $CS_RE ]]; then
      EMU_PORT="${BASH_REMATCH[1]}"
      EMU_KEYNAME="${BASH_REMATCH[2]}"
      EMU_KEY="${BASH_REMATCH[3]}"
      ENC() { /usr/bin/python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
      EMU_URL="amqp://$(ENC "$EMU_KEYNAME"):$(ENC "$EMU_KEY")@127.0.0.1:$EMU_PORT"
      n_ok() { grep -q "\"events_sent\": *$EVENTS[,}]" "$WORK/$1.json" && grep -q '"ok": *true' "$WORK/$1.json"; }
      eps_of() { "$PY" -c 'import json,sys; print("%.0f" % json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["events_per_second"])' "$WORK/$1.json" 2>/dev/null || echo "-"; }

      send emulator.generic 180 "$EMU_URL" "$WORK/big.tsv" -- eh1/Partitions/0 eh1/Partitions/1 eh1/Partitions/2 eh1/Partitions/3
      if [[ $SEND_RC -eq 0 ]] && n_ok emulator.generic; then
        pass emulator.generic "$EVENTS events in ${SEND_SECS}s, send $(eps_of emulator.generic) ev/s (amqp:// + eh1/Partitions/N addresses)"
        TABLE+=("| hubcat emulator (generic AMQP) | emulator.generic | $EVENTS | not read back | not read back | $(eps_of emulator.generic) |")
      else
        fail emulator.generic "exit $SEND_RC: $(tail -n 1 "$WORK/emulator.generic.json" 2>/dev/null) $(tail1 "$WORK/emulator.generic.stderr")"
      fi

      t0=$(now)
      rc=0
      timeout --kill-after=5 180 "$HUBCAT" send --connection-string "$EH_CS" --hub eh1 --key-delimiter '\t' \
        "${SEND_HEADERS[@]}" --content-type "$CONTENT_TYPE" --summary json -q "$WORK/big.tsv" \
        >"$WORK/emulator.eventhubs.json" 2>"$WORK/emulator.eventhubs.stderr" || rc=$?
      secs=$(since "$t0")
      if [[ $rc -eq 0 ]] && n_ok emulator.eventhubs; then
        pass emulator.eventhubs "$EVENTS events in ${secs}s, send $(eps_of emulator.eventhubs) ev/s (--connection-string + --hub eh1)"
        TABLE+=("| hubcat emulator (Event Hubs) | emulator.eventhubs | $EVENTS | not read back | not read back | $(eps_of emulator.eventhubs) |")
      else
        fail emulator.eventhubs "exit $rc: $(tail -n 1 "$WORK/emulator.eventhubs.json" 2>/dev/null) $(tail1 "$WORK/emulator.eventhubs.stderr")"
      fi
    else
      harness_fail "emulator.connection_string" "unexpected first stdout line: $EH_CS"
    fi
    stop_emulator
  fi
fi

# Nothing of ours may be left running.
left=""
[[ -n "${RMQ_DIR:-}" && -s "$RMQ_DIR/rabbit.pid" ]] && kill -0 "$(cat "$RMQ_DIR/rabbit.pid")" 2>/dev/null && left+=" beam($(cat "$RMQ_DIR/rabbit.pid"))"
[[ -n "${RMQ_EPMD_PORT:-}" ]] && port_open "$RMQ_EPMD_PORT" && left+=" epmd(:$RMQ_EPMD_PORT)"
[[ -n "${RMQ_PORT:-}" ]] && port_open "$RMQ_PORT" && left+=" rabbitmq(:$RMQ_PORT)"
[[ -n "${PB_PORT:-}" ]] && port_open "$PB_PORT" && left+=" proton-broker(:$PB_PORT)"
if [[ -n "$left" ]]; then
  stop_rabbitmq
  harness_fail "cleanup" "still running after the checks:$left"
fi

if [[ ${#TABLE[@]} -gt 0 ]]; then
  echo
  echo "| broker | check | events | stored once | in order | send events/s |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${TABLE[@]}"
  echo
fi
echo "took $(($(date +%s) - T_START))s; logs in tests/brokers/.work/" >&2
summary
[[ $FAILED -eq 0 ]]
