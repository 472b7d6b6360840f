# shellcheck shell=bash
# Sourced by run.sh: the result counters, the installs, and starting and
# stopping RabbitMQ, the Qpid Proton C broker and `hubcat emulator`.
# Expects HERE (this folder), WORK (its .work/) and HUBCAT to be set.
#
# Variables set here and read by run.sh (PY, RMQ_*, PB_*, EH_CS, ...) look
# unused to shellcheck when this file is checked on its own.
# shellcheck disable=SC2034

# shellcheck source-path=SCRIPTDIR source=../results.sh
source "$HERE/../results.sh"
# shellcheck source-path=SCRIPTDIR source=../apt.sh
source "$HERE/../apt.sh"
RMQ_UP=0
PB_PID=""
EMU_PID=""
POLICY_CREATED=0

# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------
# harness_abort NAME REASON: a failure that leaves nothing worth running.
harness_abort() {
  harness_fail "$@"
  summary
  exit 1
}
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
  # Keep apt from starting the services itself (rabbitmq-server, epmd): 101 is
  # "action not allowed" for invoke-rc.d. Only if no policy exists already.
  if [[ ! -e /usr/sbin/policy-rc.d && $(id -u) -eq 0 ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_CREATED=1
  fi
  local rc=0
  apt_install "$WORK/apt.log" "${APT_PKGS[@]}" || rc=$?
  remove_policy
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
  for _ in $(seq 1 300); do # 60 s
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
  echo "rabbitmq $RMQ_VERSION on 127.0.0.1:$RMQ_PORT (pid $(rmq_pid), epmd port $RMQ_EPMD_PORT)" >&2
}
rmq_pid() { cat "$RMQ_DIR/rabbit.pid" 2>/dev/null || true; }
stop_rabbitmq() {
  [[ $RMQ_UP == 1 ]] || return 0
  RMQ_UP=0
  local pid
  pid=$(rmq_pid)
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    rmq 30 rabbitmqctl -q shutdown >>"$RMQ_DIR/stop.log" 2>&1 || true
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
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
  for _ in $(seq 1 100); do
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

# The emulator prints its connection string as the first line of stdout.
start_emulator() {
  : >"$WORK/emulator.stdout"
  "$HUBCAT" emulator --bind 127.0.0.1:0 --hub eh1:4 >"$WORK/emulator.stdout" 2>"$WORK/emulator.log" &
  EMU_PID=$!
  for _ in $(seq 1 150); do
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

# Nothing of ours may be left running once the checks are done.
check_nothing_left() {
  local left="" pid
  pid=$(rmq_pid)
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && left+=" beam($pid)"
  [[ -n "${RMQ_EPMD_PORT:-}" ]] && port_open "$RMQ_EPMD_PORT" && left+=" epmd(:$RMQ_EPMD_PORT)"
  [[ -n "${RMQ_PORT:-}" ]] && port_open "$RMQ_PORT" && left+=" rabbitmq(:$RMQ_PORT)"
  [[ -n "${PB_PORT:-}" ]] && port_open "$PB_PORT" && left+=" proton-broker(:$PB_PORT)"
  if [[ -n "$left" ]]; then
    stop_rabbitmq
    harness_fail "cleanup" "still running after the checks:$left"
  fi
}

# The EXIT trap: stop whatever still runs, and keep the last-line contract
# (`N passed, M failed`) even when the script dies in the middle.
on_exit() {
  local rc=$?
  stop_emulator
  stop_proton_broker
  stop_rabbitmq
  remove_policy
  if [[ $SUMMARY_DONE == 0 ]]; then
    harness_fail "run.sh" "aborted with status $rc"
    summary
    exit 1
  fi
}
