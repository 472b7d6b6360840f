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

HUBCAT="${HUBCAT:-target/release/hubcat}"
[[ "$HUBCAT" == /* ]] || HUBCAT="$ROOT/$HUBCAT"
RUN_ID="$(date +%s)-$$"
EVENTS="${BROKERS_EVENTS:-100000}"
SEND_HEADERS=(-H source=brokers -H "run=$RUN_ID")
CONTENT_TYPE="text/plain"
CHECK="$HERE/check.py"
TABLE=()

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$HERE/lib.sh"
trap on_exit EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

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
  timeout --kill-after=5 200 "$PY" "$CHECK" readcheck --name "$name" --url "$url" "${addr[@]}" \
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
# The input comes through a FIFO: its first half (read at GONE_RATE, 2 s), then the
# broker is stopped, and only once it is gone the second half, so the stream always
# outlasts the broker however long stopping it takes (a graceful RabbitMQ shutdown
# on a loaded machine took 6.7 s). The pending bound holds the whole input, so what
# is read after the broker went waits in the producer rather than holding up the
# reading. The bound: 2 s + the stop + 2 s of input + the 10 s delivery timeout of the
# last events read + a 5 s try timeout + slack = 45 s from the start.
GONE_EVENTS=20000
GONE_RATE=5000
GONE_BOUND=45
broker_gone() {
  local name="$1" url="$2" input="$3" killcmd="$4"
  shift 4
  local addr=() a
  for a in "$@"; do addr+=(--address "$a"); done
  local t0 pid fifo="$WORK/$name.fifo"
  rm -f "$fifo"
  mkfifo "$fifo"
  t0=$(now)
  SEND_RC=0
  # SIGTERM at the bound, then 25 s (2.5 delivery timeouts) for hubcat to give
  # up on what it holds and print its summary before SIGKILL.
  timeout --kill-after=25 "$GONE_BOUND" "${SEND[@]}" --amqp-url "$url" "${addr[@]}" --key-delimiter '\t' \
    "${SEND_HEADERS[@]}" --content-type "$CONTENT_TYPE" --summary json -q \
    --rate "$GONE_RATE" --max-pending "$GONE_EVENTS" --delivery-timeout 10s --try-timeout 5s "$fifo" \
    >"$WORK/$name.json" 2>"$WORK/$name.stderr" &
  pid=$!
  # Opened read-write so that opening never waits for the reader, and each write
  # bounded, so that a send that died early cannot hold the script.
  exec 3<>"$fifo"
  # Written as fast as the paced reading takes it: done after about 2 s.
  timeout "$GONE_BOUND" head -n $((GONE_EVENTS / 2)) "$input" >&3 || true
  local t_kill
  t_kill=$(now)
  eval "$killcmd" >>"$WORK/$name.kill.log" 2>&1 || true
  local kill_secs t_gone
  kill_secs=$(since "$t_kill")
  t_gone=$(now)
  timeout "$GONE_BOUND" tail -n +$((GONE_EVENTS / 2 + 1)) "$input" >&3 || true
  exec 3>&-
  rm -f "$fifo"
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

AUTH_PATTERN='auth|password|sasl|credential|unauthori[sz]ed|login|mechanism'

# tail_check NAME URL ADDRESS: `hubcat tail --amqp-url` takes back, in order, what
# `hubcat send` put on a queue, stops on its own once the queue is empty, and has
# taken the messages off it (a second tail finds none).
tail_check() {
  local name="$1" url="$2" address="$3" rc=0
  [[ "${SEND[0]}" == "$HUBCAT" ]] || { skip "$name" "hubcat tail needs hubcat"; return; }
  seq 1 50 | sed 's/^/tail-/' >"$WORK/$name.in"
  "$HUBCAT" send -q --amqp-url "$url" --address "$address" "$WORK/$name.in" 2>"$WORK/$name.stderr" || rc=$?
  [[ $rc -eq 0 ]] || { fail "$name" "hubcat send exited with $rc: $(tail1 "$WORK/$name.stderr")"; return; }
  local t0 again
  t0=$(now)
  timeout 60 "$HUBCAT" tail --amqp-url "$url" --address "$address" >"$WORK/$name.out" 2>>"$WORK/$name.stderr" || rc=$?
  local secs
  secs=$(since "$t0")
  again=$(timeout 60 "$HUBCAT" tail --amqp-url "$url" --address "$address" 2>>"$WORK/$name.stderr" | wc -l) || rc=$?
  if [[ $rc -ne 0 ]]; then
    fail "$name" "hubcat tail exited with $rc: $(tail1 "$WORK/$name.stderr")"
  elif ! cmp -s "$WORK/$name.in" "$WORK/$name.out"; then
    fail "$name" "read back differs: $(head -c 200 "$WORK/$name.out" | tr '\n' ' ')"
  elif [[ $again -ne 0 ]]; then
    fail "$name" "a second tail read $again more: the first did not take them off the queue"
  else
    pass "$name" "50 events back in order in ${secs}s (stopping 2 s after the last), none left"
  fi
}

check_rabbitmq() {
  BROKER_LABEL="RabbitMQ $RMQ_VERSION \`/queue/\`"
  local url="amqp://$RMQ_USER:$RMQ_PASS@127.0.0.1:$RMQ_PORT"
  roundtrip rabbitmq.roundtrip "$url" "$WORK/big.tsv" /queue/rt-0 /queue/rt-1 /queue/rt-2 /queue/rt-3
  BROKER_LABEL="RabbitMQ $RMQ_VERSION \`/amq/queue/\`"
  roundtrip rabbitmq.roundtrip_amq_queue "$url" "$WORK/small.tsv" /amq/queue/amq-0 /amq/queue/amq-1 /amq/queue/amq-2 /amq/queue/amq-3
  tail_check rabbitmq.tail "$url" /queue/tail
  # RabbitMQ 3.10 ends the session (amqp:not-found) when an attach names an
  # exchange that does not exist. /amq/queue/NAME of a missing queue would not
  # do: its messages are accepted and dropped.
  expect_failure rabbitmq.bad_address 60 'not.found|no exchange|address|exchange|refused|attach' \
    "$url" "$WORK/1k.tsv" 1000 --delivery-timeout 30s --try-timeout 10s -- \
    /queue/ok-0 /exchange/does-not-exist /queue/ok-2 /queue/ok-3
  expect_failure rabbitmq.bad_password 60 "$AUTH_PATTERN" \
    "amqp://$RMQ_USER:wrong-$RMQ_PASS@127.0.0.1:$RMQ_PORT" "$WORK/1k.tsv" 1000 --delivery-timeout 30s --try-timeout 10s -- \
    /queue/bp-0 /queue/bp-1 /queue/bp-2 /queue/bp-3
  # Last: a graceful shutdown (RabbitMQ 3.10 ends the session with
  # amqp:internal-error "shutdown", closes the listener and then refuses new
  # connections).
  broker_gone rabbitmq.broker_gone "$url" "$WORK/gone.tsv" 'rmq 30 rabbitmqctl shutdown' \
    /queue/bg-0 /queue/bg-1 /queue/bg-2 /queue/bg-3
}

check_proton() {
  BROKER_LABEL="Qpid Proton 0.37 C broker"
  local url="amqp://127.0.0.1:$PB_PORT"
  roundtrip proton.roundtrip "$url" "$WORK/big.tsv" rt-0 rt-1 rt-2 rt-3
  tail_check proton.tail "$url" tail
  # It offers SASL ANONYMOUS only, so user:password (PLAIN) is refused.
  expect_failure proton.bad_password 60 "$AUTH_PATTERN" \
    "amqp://$RMQ_USER:secret@127.0.0.1:$PB_PORT" "$WORK/1k.tsv" 1000 --delivery-timeout 30s --try-timeout 10s -- \
    bp-0 bp-1 bp-2 bp-3
  # Last: kill -9 (its queues live in memory only). KILLCMD is eval'd later.
  # shellcheck disable=SC2016
  broker_gone proton.broker_gone "$url" "$WORK/gone.tsv" 'kill -KILL $PB_PID' bg-0 bg-1 bg-2 bg-3
}

url_encode() { /usr/bin/python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
all_sent() { # NAME: the summary says ok with every event sent
  grep -q "\"events_sent\": *${EVENTS}[,}]" "$WORK/$1.json" && grep -q '"ok": *true' "$WORK/$1.json"
}
eps_of() {
  "$PY" -c 'import json,sys; print("%.0f" % json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["events_per_second"])' \
    "$WORK/$1.json" 2>/dev/null || echo "-"
}

# The emulator in generic mode and in Event Hubs mode: sent only, not read back.
check_emulator() {
  local re='^Endpoint=sb://127\.0\.0\.1:([0-9]+);SharedAccessKeyName=([^;]+);SharedAccessKey=([^;]+);UseDevelopmentEmulator=true$'
  local url
  if [[ "$EH_CS" =~ $re ]]; then
    url="amqp://$(url_encode "${BASH_REMATCH[2]}"):$(url_encode "${BASH_REMATCH[3]}")@127.0.0.1:${BASH_REMATCH[1]}"
  else
    harness_fail "emulator.connection_string" "unexpected first stdout line: $EH_CS"
    return 0
  fi

  send emulator.generic 180 "$url" "$WORK/big.tsv" -- eh1/Partitions/0 eh1/Partitions/1 eh1/Partitions/2 eh1/Partitions/3
  if [[ $SEND_RC -eq 0 ]] && all_sent emulator.generic; then
    pass emulator.generic "$EVENTS events in ${SEND_SECS}s, send $(eps_of emulator.generic) ev/s (amqp:// + eh1/Partitions/N addresses)"
    TABLE+=("| hubcat emulator (generic AMQP) | emulator.generic | $EVENTS | not read back | not read back | $(eps_of emulator.generic) |")
  else
    fail emulator.generic "exit $SEND_RC: $(tail -n 1 "$WORK/emulator.generic.json" 2>/dev/null) $(tail1 "$WORK/emulator.generic.stderr")"
  fi

  local t0 rc=0 secs
  t0=$(now)
  timeout --kill-after=5 180 "$HUBCAT" send --connection-string "$EH_CS" --hub eh1 --key-delimiter '\t' \
    "${SEND_HEADERS[@]}" --content-type "$CONTENT_TYPE" --summary json -q "$WORK/big.tsv" \
    >"$WORK/emulator.eventhubs.json" 2>"$WORK/emulator.eventhubs.stderr" || rc=$?
  secs=$(since "$t0")
  if [[ $rc -eq 0 ]] && all_sent emulator.eventhubs; then
    pass emulator.eventhubs "$EVENTS events in ${secs}s, send $(eps_of emulator.eventhubs) ev/s (--connection-string + --hub eh1)"
    TABLE+=("| hubcat emulator (Event Hubs) | emulator.eventhubs | $EVENTS | not read back | not read back | $(eps_of emulator.eventhubs) |")
  else
    fail emulator.eventhubs "exit $rc: $(tail -n 1 "$WORK/emulator.eventhubs.json" 2>/dev/null) $(tail1 "$WORK/emulator.eventhubs.stderr")"
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
*) harness_abort "run.sh" "BROKERS_ONLY must be rabbitmq, proton or emulator, not '$ONLY'" ;;
esac

install_apt || harness_abort "install.apt" "apt-get install ${APT_PKGS[*]} failed (see tests/brokers/.work/apt.log)"
install_python || harness_abort "install.python" "venv with azure-eventhub==$PY_VERSION failed"
if [[ $RUN_PB == 1 ]] && ! build_proton_broker; then
  harness_fail "install.proton_broker" "gcc $PB_SRC failed (see tests/brokers/.work/proton-broker.build.log)"
  RUN_PB=0
fi
echo "installs ready after $(($(date +%s) - T_START))s" >&2

# The independent partition mapping must itself be right before it judges hubcat.
"$PY" "$CHECK" selftest --name resolver.selftest >"$WORK/selftest.out" 2>&1 || true
if grep -q '^PASS ' "$WORK/selftest.out"; then
  PASSED=$((PASSED + 1))
  grep '^PASS ' "$WORK/selftest.out"
else
  harness_fail "resolver.selftest" "$(tail1 "$WORK/selftest.out")"
fi

if [[ "${BROKERS_SENDER:-}" == "standin" ]]; then
  SEND=("$PY" "$CHECK" send)
  echo "publishing with the stand-in proton sender (check.py send), not hubcat" >&2
else
  SEND=("$HUBCAT" send)
  [[ -x "$HUBCAT" ]] || harness_abort "hubcat" "no executable at $HUBCAT (build it, or set HUBCAT)"
  "$HUBCAT" send --help 2>/dev/null | grep -q -- '--amqp-url' ||
    harness_abort "hubcat.amqp_url" "$HUBCAT send has no --amqp-url option (rebuild it; or BROKERS_SENDER=standin)"
fi

# Workloads: keyed lines KEY<TAB>RUNID|KEY|COUNTER|PADDING.
"$PY" "$CHECK" gen --out "$WORK/big.tsv" --events "$EVENTS" --keys 1000 --run-id "$RUN_ID" 2>/dev/null
"$PY" "$CHECK" gen --out "$WORK/small.tsv" --events 10000 --keys 1000 --run-id "$RUN_ID-s" --seed 7 2>/dev/null
"$PY" "$CHECK" gen --out "$WORK/1k.tsv" --events 1000 --keys 100 --run-id "$RUN_ID-k" --seed 8 2>/dev/null
"$PY" "$CHECK" gen --out "$WORK/gone.tsv" --events "$GONE_EVENTS" --keys 1000 --run-id "$RUN_ID-g" --seed 9 2>/dev/null

if [[ $RUN_RMQ == 1 ]] && start_rabbitmq; then
  check_rabbitmq
  stop_rabbitmq
fi
if [[ $RUN_PB == 1 ]] && start_proton_broker; then
  check_proton
  stop_proton_broker
fi
if [[ $RUN_EMU == 1 ]]; then
  if [[ ! -x "$HUBCAT" ]]; then
    skip emulator.generic "no hubcat at $HUBCAT"
    skip emulator.eventhubs "no hubcat at $HUBCAT"
  elif start_emulator; then
    check_emulator
    stop_emulator
  fi
fi
check_nothing_left

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
