#!/usr/bin/env python3
"""Interop checks over WebSockets: Microsoft's Python SDK (azure-eventhub 5.15.1,
pyamqp, with websocket-client) against `hubcat emulator --ws-bind`.

Run by run.sh after py_checks.py, with its environment and:
  EH_WS_CS   the emulator's WebSocket listener's connection string (third stdout line)

Hub this script expects: pyws:2.

What the SDK dials with TransportType.AmqpOverWebsocket in emulator mode (from its
source, azure-eventhub 5.15.1): `_configuration.py` appends `/$servicebus/websocket`
to the host and `_client_base.py` turns TLS off for `UseDevelopmentEmulator=true`;
`_pyamqp/_connection.py` keeps only the host name and path of that endpoint (the
connection string's port is dropped) and `_pyamqp/_transport.py`
(`WebSocketTransport.connect`) dials `ws://HOST/$servicebus/websocket`, which is port
80, with the subprotocol AMQPWSB10. `custom_endpoint_address` gives the host and port
to dial instead, and is how the SDK reaches the emulator's WebSocket port. The first
check pins the former, the others use the latter.
"""

import os
import sys
from urllib.parse import urlparse

import websocket  # websocket-client, the SDK's WebSocket library
from azure.eventhub import EventData, EventHubProducerClient, TransportType

import py_checks
from py_checks import CLIENT_KW, CS, bodies, check, expect, record, verify_readback

WS_CS = os.environ["EH_WS_CS"]
WS_PORT = urlparse(dict(p.split("=", 1) for p in WS_CS.split(";") if p)["Endpoint"]).port
HOST = urlparse(dict(p.split("=", 1) for p in CS.split(";") if p)["Endpoint"]).hostname


def ws_producer(hub, **kw):
    args = dict(CLIENT_KW)
    args.update(kw)
    return EventHubProducerClient.from_connection_string(
        CS, eventhub_name=hub, transport_type=TransportType.AmqpOverWebsocket, **args)


def c_dials_port_80_without_custom_endpoint():
    """What the SDK asks websocket-client for, caught before any socket is opened."""
    asked = []
    real = websocket.create_connection

    def record_and_refuse(url, **kw):
        asked.append((url, kw.get("subprotocols")))
        raise websocket.WebSocketConnectionClosedException("refused by the check")

    websocket.create_connection = record_and_refuse
    try:
        with ws_producer("pyws", retry_total=0) as p:
            try:
                p.get_eventhub_properties()
            except Exception:  # noqa: BLE001 - the refusal is the point
                pass
    finally:
        websocket.create_connection = real
    expect(asked, "the SDK never opened a WebSocket")
    url, subprotocols = asked[0]
    expect(url == f"ws://{HOST}/$servicebus/websocket",
           f"dialled {url!r}, expected ws://{HOST}/$servicebus/websocket (port 80)")
    expect(subprotocols == ["AMQPWSB10"], f"subprotocols {subprotocols!r}")


def c_properties_over_custom_endpoint():
    with ws_producer("pyws", custom_endpoint_address=f"sb://{HOST}:{WS_PORT}") as p:
        props = p.get_eventhub_properties()
    expect(props["partition_ids"] == ["0", "1"], f"partition ids {props['partition_ids']}")


def c_send_over_custom_endpoint():
    with ws_producer("pyws", custom_endpoint_address=f"sb://{HOST}:{WS_PORT}") as p:
        bs = bodies("ws-gw", 30)
        batch = p.create_batch()
        for b in bs:
            batch.add(EventData(b))
        p.send_batch(batch)
        record("pyws", bs)
        bs = bodies("ws-pid1", 10)
        p.send_batch([EventData(b) for b in bs], partition_id="1")
        record("pyws", bs, partition="1")


def c_readback():
    verify_readback("pyws", f"py-{py_checks.RUN_ID}-ws-")


def main():
    check("py.websocket.emulator_mode_dials_ws_port_80", c_dials_port_80_without_custom_endpoint, 30)
    check("py.websocket.properties_via_custom_endpoint_address", c_properties_over_custom_endpoint, 30)
    check("py.websocket.send_batch_via_custom_endpoint_address", c_send_over_custom_endpoint, 45)
    check("py.websocket.receive_events_exactly_once", c_readback, 60)
    failed = sum(1 for _, ok in py_checks.RESULTS if not ok)
    sys.stderr.write(f"[py-ws] {len(py_checks.RESULTS) - failed} passed, {failed} failed\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Hard exit: timed-out checks may leave SDK threads (non-daemon pools) behind.
    os._exit(0)


if __name__ == "__main__":
    main()
