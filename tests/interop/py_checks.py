#!/usr/bin/env python3
"""Interop checks: Microsoft's Python SDK (azure-eventhub 5.15.1, pure-Python
pyamqp) against the `hubcat emulator`.

Run by run.sh, which starts the emulator and passes:
  EH_CS                connection string printed by the emulator (no EntityPath)
  EH_RUN_ID            unique id for this run (used in event bodies)
  EH_MAX_MESSAGE_SIZE  the --max-message-size the emulator was started with
                       (optional; the batch-size check is skipped without it)

Hubs this script expects (run.sh creates them): eh1:4 (read-only checks and
refused sends only), pysend:4, pybuf:4, keys3:3, keys11:11, pytrace:2.

Each check prints exactly one line, `PASS name` or `FAIL name: reason`, on
stdout; diagnostics (tracebacks) go to stderr. Exit code 0 means "ran to the
end" (failures are counted from the lines); anything else is a crash.
"""

import collections
import json
import errno
import os
import socket
import sys
import threading
import time
import traceback
import uuid

from azure.eventhub import EventData, EventHubConsumerClient, EventHubProducerClient
from azure.eventhub._pyamqp import _transport as pyamqp_transport

# ---------------------------------------------------------------------------
# Workaround for a client-side flake (not an emulator bug).
#
# pyamqp's `_AbstractTransport._set_socket_options` reads the kernel's current
# TCP options (TCP_MAXSEG among them) with getsockopt and writes every one
# back with setsockopt. On loopback the write-back of TCP_MAXSEG sometimes
# fails with `[Errno 22] Invalid argument` (EINVAL), which aborts the
# connection attempt before a single AMQP byte is sent; a plain-socket script
# reproduces it without any server.
# We replace that method with one that does the same thing but ignores EINVAL
# per option, so the checks below do not depend on SDK retries to get past it.
# ---------------------------------------------------------------------------


def _set_socket_options_ignoring_einval(self, socket_settings):
    try:
        tcp_opts = self._get_tcp_socket_defaults(self.sock)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        tcp_opts = {}
    if socket_settings:
        tcp_opts.update(socket_settings)
    for opt, val in tcp_opts.items():
        try:
            self.sock.setsockopt(socket.SOL_TCP, opt, val)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise


pyamqp_transport._AbstractTransport._set_socket_options = _set_socket_options_ignoring_einval

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

CS = os.environ["EH_CS"]
RUN_ID = os.environ.get("EH_RUN_ID") or uuid.uuid4().hex[:8]
MAX_MESSAGE_SIZE = int(os.environ["EH_MAX_MESSAGE_SIZE"]) if os.environ.get("EH_MAX_MESSAGE_SIZE") else None
# The emulator's TLS listener on 5671 (the SDK dials 5671 for amqps whatever port the
# endpoint names) and the CA that signed its certificate, when run.sh could bind it.
TLS_CS = os.environ.get("EH_TLS_CS")
TLS_CA = os.environ.get("EH_TLS_CA")

# Short retry settings everywhere: a broken emulator must make a check fail
# quickly instead of spending minutes in SDK back-off.
CLIENT_KW = dict(retry_total=1, retry_backoff_factor=0.2, retry_backoff_max=1)


def with_key(cs, **replace):
    """Return the connection string with some of its parts replaced."""
    parts = []
    for part in cs.strip().strip(";").split(";"):
        k, _, v = part.partition("=")
        if k in replace:
            v = replace[k]
        parts.append(f"{k}={v}")
    return ";".join(parts)


# ---------------------------------------------------------------------------
# Partition-key hashing, as the Event Hubs service does it (Jenkins lookup3
# `hashlittle2`, seeds 0/0; hash16 = low 16 bits of (h1 ^ h2) as a signed
# short; partition = |hash16| % n with C#-style truncating remainder).
# Written from the .NET SDK's PartitionResolver and its test vectors (NOT from the Python SDK's own
# resolver, which uses Python's floor modulo and differs for negative hashes).
# ---------------------------------------------------------------------------

_M = 0xFFFFFFFF


def _rot(x, k):
    return ((x << k) | (x >> (32 - k))) & _M


def lookup3(data: bytes):
    n = len(data)
    a = b = c = (0xDEADBEEF + n) & _M

    def le(o):
        return int.from_bytes(data[o:o + 4], "little")

    o = 0
    while n - o > 12:
        a = (a + le(o)) & _M
        b = (b + le(o + 4)) & _M
        c = (c + le(o + 8)) & _M
        a = (a - c) & _M; a ^= _rot(c, 4); c = (c + b) & _M
        b = (b - a) & _M; b ^= _rot(a, 6); a = (a + c) & _M
        c = (c - b) & _M; c ^= _rot(b, 8); b = (b + a) & _M
        a = (a - c) & _M; a ^= _rot(c, 16); c = (c + b) & _M
        b = (b - a) & _M; b ^= _rot(a, 19); a = (a + c) & _M
        c = (c - b) & _M; c ^= _rot(b, 4); b = (b + a) & _M
        o += 12
    tail = data[o:]
    if not tail:
        return c, b  # zero-length tail: no final mixing
    tail = tail + bytes(12 - len(tail))  # same as lookup3's switch fall-through
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    b = (b + int.from_bytes(tail[4:8], "little")) & _M
    c = (c + int.from_bytes(tail[8:12], "little")) & _M
    c ^= b; c = (c - _rot(b, 14)) & _M
    a ^= c; a = (a - _rot(c, 11)) & _M
    b ^= a; b = (b - _rot(a, 25)) & _M
    c ^= b; c = (c - _rot(b, 16)) & _M
    a ^= c; a = (a - _rot(c, 4)) & _M
    b ^= a; b = (b - _rot(a, 14)) & _M
    c ^= b; c = (c - _rot(b, 24)) & _M
    return c, b


def hash16(key: str) -> int:
    h1, h2 = lookup3(key.encode("utf-8"))
    v = (h1 ^ h2) & 0xFFFF
    return v - 0x10000 if v >= 0x8000 else v


def partition_for_key(key: str, n: int) -> str:
    return str(abs(hash16(key)) % n)


# The Azure SDKs' own partition-key test vectors, shared with tests/brokers.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "partition_key_vectors.json")) as f:
    _VECTORS = json.load(f)
HASH_VECTORS = _VECTORS["hash16"]
PARTITION_VECTORS = [(k, n, str(p)) for k, n, p in _VECTORS["partition"]]

# Keys sent to the 4-partition hub: lengths 1..90 bytes, so every lookup3
# code path (short tail, exact 12-byte block, several blocks) is exercised.
KEYS_4 = ["TheBestParitionEver", "alphabet", "7", "131", "FWfAT", "$0cb", "sOdeEAsyQoEuEFPGerWO",
          "7149583486996073602", "p4*!jioeO/z-!-;w:dh", "twelve-bytes",
          "FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs"]

# ---------------------------------------------------------------------------
# Check runner
# ---------------------------------------------------------------------------


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


RESULTS = []
_print_lock = threading.Lock()
# Comma-separated check names to skip (prints `SKIP name`), e.g. for a known defect.
SKIP = {n.strip() for n in os.environ.get("INTEROP_SKIP", "").split(",") if n.strip()}


def _one_line(s):
    return " ".join(str(s).split())[:600]


def check(name, fn, timeout=60):
    """Run fn() in a daemon thread with a deadline; print PASS/FAIL."""
    if name in SKIP:
        print(f"SKIP {name}", flush=True)
        return None
    box = {}

    def target():
        try:
            box["res"] = fn()
        except BaseException as exc:  # noqa: BLE001 - report everything
            box["err"] = exc
            box["tb"] = traceback.format_exc()

    started = time.monotonic()
    t = threading.Thread(target=target, name=f"check-{name}", daemon=True)
    t.start()
    t.join(timeout)
    took = time.monotonic() - started
    with _print_lock:
        if t.is_alive():
            line = f"FAIL {name}: timed out after {timeout}s"
            ok = False
        elif "err" in box:
            err = box["err"]
            if isinstance(err, CheckFailed):
                line = f"FAIL {name}: {_one_line(err)}"
            else:
                line = f"FAIL {name}: {type(err).__name__}: {_one_line(err)}"
                sys.stderr.write(f"--- {name} traceback ---\n{box['tb']}\n")
            ok = False
        else:
            line = f"PASS {name}"
            ok = True
        print(line, flush=True)
        sys.stderr.write(f"[py] {name}: {'ok' if ok else 'failed'} in {took:.1f}s\n")
        sys.stderr.flush()
    RESULTS.append((name, ok))
    return ok


def producer(hub, **kw):
    args = dict(CLIENT_KW)
    args.update(kw)
    return EventHubProducerClient.from_connection_string(CS, eventhub_name=hub, **args)


def consumer(hub, cs=None):
    return EventHubConsumerClient.from_connection_string(cs or CS, consumer_group="$Default", eventhub_name=hub,
                                                         **CLIENT_KW)


# What each check really sent, by hub: body -> (expected partition or None, partition key or None).
SENT = collections.defaultdict(dict)


def record(hub, bodies, partition=None, key=None):
    for b in bodies:
        SENT[hub][b] = (partition, key)


def bodies(tag, n):
    return [f"py-{RUN_ID}-{tag}-{i}" for i in range(n)]


# ---------------------------------------------------------------------------
# Reading a hub back
# ---------------------------------------------------------------------------


def read_hub(hub, timeout=45.0):
    """Read every partition of `hub` from the start of the stream.

    The number of events expected per partition comes from
    get_partition_properties; each partition is read in its own consumer
    client until at least that many events arrived and then one idle period
    (max_wait_time) passed, so extra deliveries are seen too.
    Returns (ids, props, {pid: [event dicts]}, [errors]).
    """
    deadline = time.monotonic() + timeout
    with consumer(hub) as c:
        ids = c.get_partition_ids()
        props = {p: c.get_partition_properties(p) for p in ids}
    expected = {}
    for p, pp in props.items():
        expected[p] = 0 if pp["is_empty"] else pp["last_enqueued_sequence_number"] - pp["beginning_sequence_number"] + 1

    received = {p: [] for p in ids}
    errors = []
    done = {p: threading.Event() for p in ids}
    clients, threads = [], []

    for p in ids:
        client = consumer(hub)
        clients.append(client)

        def on_event(ctx, ev, p=p):
            if ev is None:
                if len(received[p]) >= expected[p]:
                    done[p].set()
                return
            pk = ev.partition_key
            if isinstance(pk, bytes):
                pk = pk.decode("utf-8")
            received[p].append(dict(body=ev.body_as_str(), partition_key=pk, seq=ev.sequence_number,
                                     offset=ev.offset, ctx_partition=ctx.partition_id))

        def on_error(ctx, err, p=p):
            errors.append(f"partition {p}: {type(err).__name__}: {_one_line(err)}")

        t = threading.Thread(target=client.receive, daemon=True,
                             kwargs=dict(on_event=on_event, on_error=on_error, partition_id=p,
                                         starting_position="-1", max_wait_time=0.5))
        t.start()
        threads.append(t)

    for p in ids:
        done[p].wait(max(0.0, deadline - time.monotonic()))
    for client in clients:
        try:
            client.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(f"close: {exc!r}")
    for t in threads:
        t.join(5)
    not_done = [p for p in ids if not done[p].is_set()]
    if not_done:
        errors.append("read timed out on partitions " + ", ".join(
            f"{p} (got {len(received[p])} of {expected[p]})" for p in not_done))
    return ids, props, expected, received, errors


def verify_readback(hub, prefix, timeout=45.0):
    sent = {b: v for b, v in SENT[hub].items() if b.startswith(prefix)}
    expect(sent, "nothing was sent successfully, so there is nothing to read back")
    ids, props, expected, received, errors = read_hub(hub, timeout)
    problems = list(errors)
    counts = collections.Counter()
    where = collections.defaultdict(list)
    for p, evs in received.items():
        seqs = [e["seq"] for e in evs]
        if len(evs) != expected[p]:
            problems.append(f"partition {p}: properties say {expected[p]} events, read {len(evs)}")
        if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            problems.append(f"partition {p}: sequence numbers not contiguous: {seqs[:10]}...")
        if seqs and seqs[0] != props[p]["beginning_sequence_number"]:
            problems.append(f"partition {p}: first sequence number {seqs[0]} != beginning_sequence_number "
                            f"{props[p]['beginning_sequence_number']}")
        offsets = [e["offset"] for e in evs]
        if any(o is None for o in offsets):
            problems.append(f"partition {p}: event without x-opt-offset")
        elif offsets and evs and offsets[-1] != props[p]["last_enqueued_offset"]:
            problems.append(f"partition {p}: last offset read {offsets[-1]!r} != last_enqueued_offset "
                            f"{props[p]['last_enqueued_offset']!r}")
        for e in evs:
            if e["ctx_partition"] != p:
                problems.append(f"partition {p}: event reported for partition {e['ctx_partition']}")
            if e["body"].startswith(prefix):
                counts[e["body"]] += 1
                where[e["body"]].append((p, e["partition_key"]))
    missing = [b for b in sent if counts[b] == 0]
    dups = [b for b, n in counts.items() if n > 1]
    unknown = [b for b in counts if b not in sent]
    if missing:
        problems.append(f"{len(missing)} of {len(sent)} sent events missing, e.g. {missing[:3]}")
    if dups:
        problems.append(f"{len(dups)} events delivered more than once, e.g. {dups[:3]}")
    if unknown:
        problems.append(f"{len(unknown)} unexpected events, e.g. {unknown[:3]}")
    wrong_partition, wrong_key = [], []
    for b, (want_p, want_key) in sent.items():
        for got_p, got_key in where.get(b, []):
            if want_p is not None and got_p != want_p:
                wrong_partition.append(f"{b} (key {want_key!r}) on {got_p}, expected {want_p}")
            if want_key is not None and got_key != want_key:
                wrong_key.append(f"{b}: x-opt-partition-key {got_key!r}, expected {want_key!r}")
    if wrong_partition:
        problems.append(f"{len(wrong_partition)} events on the wrong partition, e.g. {wrong_partition[:3]}")
    if wrong_key:
        problems.append(f"{len(wrong_key)} events with a wrong partition key, e.g. {wrong_key[:3]}")
    expect(not problems, "; ".join(problems))


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


def c_lookup3_selftest():
    bad = [(k, hash16(k), v) for k, v in HASH_VECTORS.items() if hash16(k) != v]
    bad += [(k, n, partition_for_key(k, n), want) for k, n, want in PARTITION_VECTORS
            if partition_for_key(k, n) != want]
    expect(not bad, f"reference hash disagrees with the SDK vectors: {bad}")


def c_eventhub_properties():
    with producer("eh1") as p:
        props = p.get_eventhub_properties()
        ids = p.get_partition_ids()
    expect(props.get("eventhub_name") == "eh1", f"eventhub_name {props.get('eventhub_name')!r}")
    expect(props.get("partition_ids") == ["0", "1", "2", "3"], f"partition_ids {props.get('partition_ids')!r}")
    expect(ids == ["0", "1", "2", "3"], f"get_partition_ids {ids!r}")
    created = props.get("created_at")
    expect(created is not None and 2000 < created.year < 2200, f"created_at {created!r}")


def c_partition_properties():
    with producer("eh1") as p:
        pp = p.get_partition_properties("2")
    expect(pp.get("eventhub_name") == "eh1", f"eventhub_name {pp.get('eventhub_name')!r}")
    expect(pp.get("id") == "2", f"id {pp.get('id')!r}")
    for k in ("beginning_sequence_number", "last_enqueued_sequence_number"):
        expect(isinstance(pp.get(k), int), f"{k} is {pp.get(k)!r}")
    expect(isinstance(pp.get("last_enqueued_offset"), str), f"last_enqueued_offset {pp.get('last_enqueued_offset')!r}")
    expect(pp.get("is_empty") is True, f"is_empty {pp.get('is_empty')!r} on a hub nobody sent to")


def c_max_message_size():
    with producer("pysend") as p:
        b = p.create_batch()
    expect(b.max_size_in_bytes == MAX_MESSAGE_SIZE,
           f"batch.max_size_in_bytes {b.max_size_in_bytes}, emulator started with {MAX_MESSAGE_SIZE}")


def c_send_gateway():
    bs = bodies("gw", 40)
    with producer("pysend") as p:
        batch = p.create_batch()
        for b in bs:
            batch.add(EventData(b))
        p.send_batch(batch)
    record("pysend", bs)


def c_send_partition_key():
    with producer("pysend") as p:
        for i, key in enumerate(KEYS_4):
            bs = bodies(f"key{i}", 5)
            batch = p.create_batch(partition_key=key)
            for b in bs:
                batch.add(EventData(b))
            p.send_batch(batch)
            record("pysend", bs, partition=partition_for_key(key, 4), key=key)
    # The partition-count dependency: the same key lands elsewhere with 3 / 11 partitions.
    for hub, n in (("keys3", 3), ("keys11", 11)):
        with producer(hub) as p:
            for i, key in enumerate(["alphabet", "TheBestParitionEver", "FWfAT", "7", "sOdeEAsyQoEuEFPGerWO"]):
                bs = bodies(f"{hub}-key{i}", 3)
                p.send_batch([EventData(b) for b in bs], partition_key=key)
                record(hub, bs, partition=partition_for_key(key, n), key=key)


def c_send_partition_id():
    with producer("pysend") as p:
        bs = bodies("pid1", 15)
        batch = p.create_batch(partition_id="1")
        for b in bs:
            batch.add(EventData(b))
        p.send_batch(batch)
        record("pysend", bs, partition="1")
        bs = bodies("pid3", 15)
        p.send_batch([EventData(b) for b in bs], partition_id="3")  # list form
        record("pysend", bs, partition="3")


def c_send_single_event():
    # A single EventData (the SDK still wraps it in a batch envelope).
    with producer("pysend") as p:
        b = bodies("single", 1)
        p.send_event(EventData(b[0]), partition_id="0")
        record("pysend", b, partition="0")


def c_send_over_tls():
    """TLS as the SDK does it for the service (no UseDevelopmentEmulator: port 5671,
    SNI, the certificate checked), trusting the emulator's CA through the SDK's own
    option for a custom certificate authority, `connection_verify`."""
    bs = bodies("tls", 10)
    with EventHubProducerClient.from_connection_string(TLS_CS, eventhub_name="pysend", connection_verify=TLS_CA,
                                                       **CLIENT_KW) as p:
        p.send_batch([EventData(b) for b in bs], partition_id="2")
    record("pysend", bs, partition="2")


def c_tls_untrusted_refused():
    """Without the CA, the SDK refuses the emulator's certificate."""
    try:
        with EventHubProducerClient.from_connection_string(TLS_CS, eventhub_name="pysend", **CLIENT_KW) as p:
            p.get_eventhub_properties()
    except Exception as exc:  # noqa: BLE001 - the SDK wraps the SSL error
        text = f"{type(exc).__name__}: {exc} {exc.__cause__!r}"
        expect("CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text,
               f"refused, but not for the certificate: {_one_line(text)}")
        return
    raise CheckFailed("the SDK accepted a certificate whose CA it was not given")


def c_buffered():
    ok_count = [0]
    errs = []
    lock = threading.Lock()

    def on_success(events, pid):
        with lock:
            ok_count[0] += len(events)

    def on_error(events, pid, err):
        with lock:
            errs.append(f"partition {pid}: {len(events)} events: {type(err).__name__}: {_one_line(err)}")

    bs = bodies("buf", 1000)
    client = producer("pybuf", buffered_mode=True, on_success=on_success, on_error=on_error, max_wait_time=0.5)
    try:
        for b in bs:
            client.send_event(EventData(b))
        client.flush()
    finally:
        client.close()
    record("pybuf", bs)
    expect(not errs, f"on_error called: {errs[:3]}")
    expect(ok_count[0] == 1000, f"on_success counted {ok_count[0]} events, expected 1000")


def c_readback_send():
    verify_readback("pysend", f"py-{RUN_ID}-")


def c_readback_keys():
    verify_readback("keys3", f"py-{RUN_ID}-")
    verify_readback("keys11", f"py-{RUN_ID}-")


def c_readback_buffered():
    verify_readback("pybuf", f"py-{RUN_ID}-buf-", timeout=60)


def _expect_refused(cs, what):
    """Both a management call and a send must raise with the given connection string."""
    outcomes = []
    client = EventHubProducerClient.from_connection_string(cs, eventhub_name="eh1", retry_total=0,
                                                           retry_backoff_factor=0.1, auth_timeout=10)
    try:
        t0 = time.monotonic()
        try:
            client.get_eventhub_properties()
            outcomes.append("get_eventhub_properties succeeded")
        except Exception as exc:  # noqa: BLE001 - any error is a refusal
            sys.stderr.write(f"[py] {what}: get_eventhub_properties raised {type(exc).__name__}: {exc}\n")
        try:
            client.send_batch([EventData(f"py-{RUN_ID}-refused")], partition_id="0")
            outcomes.append("send_batch succeeded")
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"[py] {what}: send_batch raised {type(exc).__name__}: {exc} "
                             f"({time.monotonic() - t0:.1f}s)\n")
    finally:
        client.close()
    expect(not outcomes, f"{what}: " + ", ".join(outcomes))
    # Nothing may have been stored by the refused send.
    with producer("eh1") as p:
        pp = p.get_partition_properties("0")
    expect(pp["is_empty"], f"{what}: eh1 partition 0 is no longer empty after the refused send")


def c_logging_enable_send():
    # logging_enable=True turns on pyamqp's network trace, which rebuilds every
    # incoming performative as a namedtuple from the positional field list
    # (e.g. `DispositionFrame(*frame)` in _pyamqp/session.py), so a performative
    # whose trailing fields the server left out raises TypeError there.
    with producer("pytrace", logging_enable=True) as p:
        p.get_eventhub_properties()
        bs = bodies("trace", 3)
        p.send_batch([EventData(b) for b in bs], partition_id="1")
        record("pytrace", bs, partition="1")


def c_logging_enable_receive():
    # Reads partition 0 (which c_logging_enable_send never writes, so this
    # does not depend on it): an event stored with a plain client first.
    b = bodies("trace-rx", 1)[0]
    with producer("pytrace") as p:
        p.send_batch([EventData(b)], partition_id="0")
    got, errors = [], []
    done = threading.Event()
    client = EventHubConsumerClient.from_connection_string(CS, consumer_group="$Default", eventhub_name="pytrace",
                                                           logging_enable=True, **CLIENT_KW)

    def on_event(ctx, ev):
        if ev is not None:
            got.append(ev.body_as_str())
            if b in got:
                done.set()

    def on_error(ctx, err):
        errors.append(f"{type(err).__name__}: {_one_line(err)}")

    t = threading.Thread(target=client.receive, daemon=True,
                         kwargs=dict(on_event=on_event, on_error=on_error, partition_id="0",
                                     starting_position="-1", max_wait_time=0.5))
    t.start()
    done.wait(20)
    client.close()
    t.join(5)
    expect(not errors, f"on_error: {errors[:3]}")
    expect(b in got, f"event not received with logging_enable=True (got {got[:3]})")


def c_wrong_key():
    _expect_refused(with_key(CS, SharedAccessKey="d3Jvbmcta2V5LXZhbHVl"), "wrong SharedAccessKey")


def c_wrong_key_name():
    _expect_refused(with_key(CS, SharedAccessKeyName="NoSuchPolicy"), "wrong SharedAccessKeyName")


def c_unknown_hub():
    with producer("eh1") as p:  # control: the emulator is reachable and eh1 works
        p.get_partition_ids()
    client = EventHubProducerClient.from_connection_string(CS, eventhub_name="nosuchhub", retry_total=0,
                                                           retry_backoff_factor=0.1)
    try:
        try:
            client.send_batch([EventData(f"py-{RUN_ID}-nohub")])
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"[py] unknown hub: send_batch raised {type(exc).__name__}: {exc}\n")
            return
    finally:
        client.close()
    raise CheckFailed("send_batch to hub 'nosuchhub' succeeded")


def c_hubcat_send_readback():
    """`hubcat send` (this project's CLI and producer) published N keyed JSON lines to
    HUBCAT_SEND_HUB; Microsoft's consumer reads them back: each exactly once, on the
    partition the service's hash names for its key, in order per key."""
    import json
    hub = os.environ["HUBCAT_SEND_HUB"]
    count = int(os.environ["HUBCAT_SEND_COUNT"])
    ids, props, expected, received, errors = read_hub(hub, timeout=150.0)
    expect(not errors, "; ".join(errors))
    seen = {}
    last_n = {}
    for p, evs in received.items():
        for e in evs:
            doc = json.loads(e["body"])
            user, n = doc["user"], doc["n"]
            expect(n not in seen, f"line {n} arrived twice (partitions {seen.get(n)} and {p})")
            seen[n] = p
            want = partition_for_key(user, len(ids))
            expect(p == want, f"line {n} with key {user!r} is on partition {p}, the hash says {want}")
            expect(e["partition_key"] == user, f"line {n}: partition key {e['partition_key']!r}, sent {user!r}")
            expect(last_n.get(user, -1) < n, f"key {user!r}: line {n} after line {last_n.get(user)}")
            last_n[user] = n
    missing = count - len(seen)
    expect(missing == 0, f"{missing} of {count} lines missing")


def c_rust_sdk_readback():
    """Microsoft's Rust SDK (tests/interop/rust) appended every event it reported sent
    to RS_SENT (hub, body, partition id, key); Microsoft's Python consumer reads each
    hub back: every event exactly once, on its partition (by id, or the service hash
    of its key), with its key, and nothing else of the Rust runs'."""
    hubs = set()
    with open(os.environ["RS_SENT"], encoding="utf-8") as f:
        for line in f:
            hub, body, partition, key = line.rstrip("\n").split("\t")
            hubs.add(hub)
            if key and not partition:
                partition = partition_for_key(key, 4)
            SENT[hub][body] = (partition or None, key or None)
    expect(hubs, "the Rust SDK check reported nothing sent")
    for hub in sorted(hubs):
        verify_readback(hub, "rs-", timeout=60.0)


def main():
    sys.stderr.write(f"[py] run id {RUN_ID}\n")
    if os.environ.get("HUBCAT_SEND_HUB"):
        check("py.receive.hubcat_send_keyed_lines", c_hubcat_send_readback, 180)
    if os.environ.get("RS_SENT"):
        check("py.receive.rust_sdk_events_exactly_once", c_rust_sdk_readback, 200)
    check("py.lookup3.selftest", c_lookup3_selftest, 10)
    check("py.get_eventhub_properties", c_eventhub_properties, 30)
    check("py.get_partition_properties", c_partition_properties, 30)
    if MAX_MESSAGE_SIZE is not None:
        check("py.create_batch.max_size_in_bytes", c_max_message_size, 30)
    check("py.send_batch.gateway", c_send_gateway, 30)
    check("py.send_batch.partition_key", c_send_partition_key, 45)
    check("py.send_batch.partition_id", c_send_partition_id, 30)
    check("py.send_event.single", c_send_single_event, 30)
    if TLS_CS:
        check("py.tls.send_batch_trusting_the_emulators_ca", c_send_over_tls, 30)
        check("py.tls.untrusted_certificate_refused", c_tls_untrusted_refused, 30)
    else:
        print("SKIP py.tls: port 5671 was not free for the emulator's TLS listener", flush=True)
    check("py.buffered.1000_on_success", c_buffered, 60)
    check("py.receive.send_batch_events_exactly_once", c_readback_send, 60)
    check("py.receive.keyed_events_on_lookup3_partition", c_readback_keys, 60)
    check("py.receive.buffered_events_exactly_once", c_readback_buffered, 75)
    check("py.logging_enable.management_and_send", c_logging_enable_send, 30)
    check("py.logging_enable.receive", c_logging_enable_receive, 40)
    check("py.auth.wrong_key_refused", c_wrong_key, 40)
    check("py.auth.wrong_key_name_refused", c_wrong_key_name, 40)
    check("py.send.unknown_hub_refused", c_unknown_hub, 40)
    failed = sum(1 for _, ok in RESULTS if not ok)
    sys.stderr.write(f"[py] {len(RESULTS) - failed} passed, {failed} failed\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Hard exit: timed-out checks may leave SDK threads (non-daemon pools) behind.
    os._exit(0)


if __name__ == "__main__":
    try:
        main()
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)
