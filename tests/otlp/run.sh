#!/usr/bin/env bash
# The otel_export example with `--features otlp`, against a stand-in collector:
# its spans must arrive over OTLP/HTTP as protobuf, with their names and attributes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
work="$(mktemp -d)"
port="${OTLP_PORT:-14318}"
python3 tests/otlp/collector.py "$port" "$work/received" &
collector=$!
trap 'kill $collector 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  sleep 0.1
done
cargo clippy -q --example otel_export --features otlp -- -D warnings
env -u EVENTHUBS_CONNECTION_STRING OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$port" \
  cargo run -q --example otel_export --features otlp
fail=0
check() {
  if grep -a -q -- "$1" "$work/received"; then
    echo "otlp: ok: $2"
  else
    echo "otlp: FAILED: $2"
    fail=1
  fi
}
touch "$work/received"
check "POST /v1/traces application/x-protobuf" "spans posted to /v1/traces as protobuf"
check "eventhubs.publish" "the publish span arrived"
check "messaging.destination.partition.id" "with the messaging attributes"
check "POST /v1/metrics application/x-protobuf" "metrics posted to /v1/metrics as protobuf"
check "messaging.client.sent.messages" "the sent-messages counter arrived"
check "eventhubs.producer.pending_events" "the pending-events gauge arrived"
exit $fail
