#!/usr/bin/env python3
"""Workload generator, read-back checker and stand-in sender for tests/brokers/run.sh.

Runs under a venv made from Debian's /usr/bin/python3 with --system-site-packages,
so it sees Debian's python3-qpid-proton (the independent AMQP 1.0 client) and the
Azure SDK's partition-key hash (azure-eventhub==5.15.1 from PyPI).

Subcommands:
  gen        write N keyed lines `KEY<TAB>BODY` (about K distinct keys)
  selftest   the Azure SDK's hash against the service's published test vectors
  readcheck  read every queue back with qpid-proton and check the round trip;
             prints one `PASS name: ...` or `FAIL name: ...` line
  send       a stand-in for `hubcat send --amqp-url` (the same flags, a proton
             sender): used to develop the harness without hubcat
             (BROKERS_SENDER=standin run.sh)
"""

import argparse
import functools
import json
import random
import sys
import time
from collections import defaultdict

# The expected queue of a key comes from the Azure Python SDK's own code, not
# from this project's Rust code. The SDK's hash (`generate_hash_code`: lookup3
# `hashlittle2`, seeds 0, the two halves XOR-folded to a signed 16-bit value) is
# the service's. Its `PartitionResolver.get_partition_id_by_partition_key` then
# takes `abs(hash % n)` with Python's floor modulo, which differs from the
# service (.NET `Math.Abs(hash % n)` with a truncating remainder) for negative
# hashes; so the index is taken here as `abs(hash) % n` (the same as C#'s
# truncating form), and the selftest checks both the SDK hash and this mapping
# against the .NET SDK's published vectors. The SDK hashes a `str` one `ord()`
# per byte, so a key is handed to it as its UTF-8 bytes decoded as Latin-1:
# every byte then is one character, as the service hashes UTF-8 bytes.
try:
    from azure.eventhub._buffered_producer._partition_resolver import generate_hash_code, PartitionResolver
except ImportError as e:  # pragma: no cover - reported by run.sh's install step
    generate_hash_code = None
    PartitionResolver = None
    _IMPORT_ERROR = e

# .NET SDK PartitionResolverTests / JS SDK mapPartitionKeyToId vectors (the same
# ones tests/interop/py_checks.py uses).
HASH_VECTORS = {
    "7": -15263,
    "131": 30562,
    "7149583486996073602": 12977,
    "FWfAT": -22341,
    "sOdeEAsyQoEuEFPGerWO": -6503,
    "FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs": 5226,
    "!c*_!I@1^c": 15372,
    "p4*!jioeO/z-!-;w:dh": -3104,
    "$0cb": 26269,
    "-4189260826195535198": 453,
}
PARTITION_VECTORS = [("alphabet", 3, 0), ("alphabet", 11, 4), ("TheBestParitionEver", 4, 2),
                     ("TheWorstParitionEver", 15, 1)]


def sdk_hash(key: str) -> int:
    return generate_hash_code(key.encode("utf-8").decode("latin-1"))


@functools.lru_cache(maxsize=None)
def queue_index(key: str, n: int) -> int:
    return abs(sdk_hash(key)) % n


def sdk_resolver_index(key: str, n: int) -> int:
    """What the Python SDK's own resolver would pick (for information only)."""
    return PartitionResolver(list(range(n))).get_partition_id_by_partition_key(
        key.encode("utf-8").decode("latin-1"))


# ---------------------------------------------------------------------------
# gen
# ---------------------------------------------------------------------------

def make_keys(count: int, rng: random.Random):
    """~count distinct keys, lengths 1..90 bytes, some non-ASCII; no TAB/newline."""
    keys = ["TheBestParitionEver", "alphabet", "7", "131", "FWfAT", "$0cb", "twelve-bytes",
            "sOdeEAsyQoEuEFPGerWO", "p4*!jioeO/z-!-;w:dh", "-4189260826195535198",
            "clé-ü", "日本語のキー", "emoji-\U0001F600", "a b c", "x" * 90]
    i = 0
    while len(keys) < count:
        kind = i % 10
        if kind < 6:
            k = f"user-{i}"
        elif kind < 8:
            k = f"device/{i:06d}/" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                                               for _ in range(rng.randint(0, 60)))
        elif kind == 8:
            k = f"ключ-{i}"
        else:
            k = str(rng.randint(-2**63, 2**63 - 1))
        if k not in keys:
            keys.append(k)
        i += 1
    return keys


def cmd_gen(a):
    rng = random.Random(a.seed)
    keys = make_keys(a.keys, rng)
    counters = defaultdict(int)
    pad = "0123456789abcdefghijklmnopqrstuvwxyz" * 8
    with open(a.out, "w", encoding="utf-8", newline="\n") as f:
        for _ in range(a.events):
            k = rng.choice(keys)
            n = counters[k]
            counters[k] += 1
            # body: RUNID|KEY|COUNTER|padding (0..200 bytes, so sizes vary)
            f.write(f"{k}\t{a.run_id}|{k}|{n}|{pad[:rng.randint(0, 200)]}\n")
    print(f"wrote {a.events} lines, {len(counters)} distinct keys, to {a.out}", file=sys.stderr)


def read_lines(path, delimiter="\t"):
    """[(key, body_bytes)] in file order."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            raw = raw.rstrip(b"\n")
            k, _, body = raw.partition(delimiter.encode())
            out.append((k.decode("utf-8"), body))
    return out


# ---------------------------------------------------------------------------
# selftest
# ---------------------------------------------------------------------------

def selftest():
    bad = [(k, sdk_hash(k), v) for k, v in HASH_VECTORS.items() if sdk_hash(k) != v]
    bad += [(k, n, queue_index(k, n), want) for k, n, want in PARTITION_VECTORS if queue_index(k, n) != want]
    return bad


def cmd_selftest(a):
    if generate_hash_code is None:
        print(f"FAIL {a.name}: cannot import the Azure SDK's resolver: {_IMPORT_ERROR}")
        return 0
    bad = selftest()
    if bad:
        print(f"FAIL {a.name}: the SDK hash/mapping disagrees with the service vectors: {bad}")
    else:
        keys = make_keys(1000, random.Random(1))
        differ = sum(1 for k in keys if sdk_resolver_index(k, 4) != queue_index(k, 4))
        print(f"PASS {a.name}: azure-eventhub generate_hash_code matches {len(HASH_VECTORS)} hash and "
              f"{len(PARTITION_VECTORS)} partition vectors (note: the SDK's own PartitionResolver "
              f"would place {differ} of 1000 test keys elsewhere with 4 queues: floor modulo)")
    return 0


# ---------------------------------------------------------------------------
# readcheck
# ---------------------------------------------------------------------------

def mechs_for(url):
    return "PLAIN" if "@" in url.split("//", 1)[-1] else "ANONYMOUS"


class Reader:
    """Drains the queues: one connection, one receiver per address."""

    def __init__(self, url, addresses, expect, idle, deadline, prefetch):
        from proton.handlers import MessagingHandler

        reader = self

        class H(MessagingHandler):
            def __init__(self):
                super().__init__(prefetch=prefetch, auto_accept=True)

            def on_start(self, event):
                reader.t0 = time.monotonic()
                reader.last = reader.t0
                reader.conn = event.container.connect(url, allowed_mechs=mechs_for(url), reconnect=False)
                for i, addr in enumerate(addresses):
                    r = event.container.create_receiver(reader.conn, addr, name=f"readcheck-{i}")
                    reader.link_idx[r.name] = i
                event.container.schedule(0.25, self)

            def on_message(self, event):
                m = event.message
                i = reader.link_idx.get(event.link.name, -1)
                ann = m.annotations or {}
                reader.got.append((i, m.body, bool(m.inferred), m.content_type,
                                   dict(m.properties or {}), ann.get("x-opt-partition-key"),
                                   type(m.content_type).__name__))
                reader.last = time.monotonic()
                if reader.t_first is None:
                    reader.t_first = reader.last
                if len(reader.got) == expect:
                    reader.t_done = reader.last

            def on_timer_task(self, event):
                now = time.monotonic()
                if reader.t_done is not None and now - reader.t_done >= reader.grace:
                    return self.stop()
                if now - reader.last >= idle:
                    reader.why_stopped = f"nothing new for {idle}s"
                    return self.stop()
                if now - reader.t0 >= deadline:
                    reader.why_stopped = f"deadline {deadline}s"
                    return self.stop()
                event.container.schedule(0.25, self)

            def stop(self):
                if reader.conn is not None:
                    reader.conn.close()

            def on_transport_error(self, event):
                c = event.transport.condition
                reader.errors.append(f"transport: {c.name if c else ''} {c.description if c else ''}")
                super().on_transport_error(event)

            def on_link_error(self, event):
                c = event.link.remote_condition
                reader.errors.append(f"link {event.link.name}: {c.name if c else ''} {c.description if c else ''}")
                event.connection.close()

            def on_connection_error(self, event):
                c = event.connection.remote_condition
                reader.errors.append(f"connection: {c.name if c else ''} {c.description if c else ''}")
                event.connection.close()

        self.handler = H()
        self.link_idx = {}
        self.got = []
        self.errors = []
        self.conn = None
        self.t0 = self.last = None
        self.t_first = self.t_done = None
        self.grace = 1.0  # after the last expected event: wait for duplicates/strangers
        self.why_stopped = ""

    def run(self):
        from proton.reactor import Container
        Container(self.handler).run()


def cmd_readcheck(a):
    name = a.name
    lines = read_lines(a.input)
    n_q = len(a.address)
    expected_props = dict(kv.split("=", 1) for kv in a.header)

    # Expected: body -> (key, counter, queue)
    expect = {}
    key_count = defaultdict(int)
    for k, body in lines:
        parts = body.split(b"|")
        expect[body] = (k, int(parts[2]), queue_index(k, n_q))
        key_count[k] += 1
    n = len(lines)

    rd = Reader(a.url, a.address, n, a.idle, a.deadline, a.prefetch)
    rd.run()
    got = rd.got
    read_s = ((rd.t_done or rd.last) - rd.t0) if got else 0.0
    read_eps = len(got) / read_s if read_s > 0 else 0.0

    seen = defaultdict(int)
    wrong_queue = []
    strangers = []
    bad_format = []
    bad_props = []
    bad_ct = []
    bad_pk = []
    last_counter = {}
    out_of_order = []
    per_queue = [0] * n_q
    for (qi, body, inferred, ct, props, pk, ct_type) in got:
        if 0 <= qi < n_q:
            per_queue[qi] += 1
        if not isinstance(body, (bytes, bytearray)) or not inferred:
            bad_format.append(f"queue {qi}: body {type(body).__name__} inferred={inferred} (not one data section)")
            body = body.encode() if isinstance(body, str) else bytes(body or b"")
        body = bytes(body)
        if body not in expect:
            strangers.append(body[:80])
            continue
        key, counter, want_q = expect[body]
        seen[body] += 1
        if qi != want_q:
            wrong_queue.append(f"key {key!r} on queue {qi}, hashes to {want_q}")
        if props != expected_props:
            bad_props.append(f"{props!r}")
        if a.content_type is not None and (ct != a.content_type):
            bad_ct.append(f"{ct!r}")
        if pk != key:
            bad_pk.append(f"{pk!r} for key {key!r}")
        prev = last_counter.get(key)
        if prev is not None and counter <= prev:
            out_of_order.append(f"key {key!r}: {counter} after {prev}")
        last_counter[key] = counter if prev is None else max(prev, counter)

    missing = [b for b in expect if seen.get(b, 0) == 0]
    dups = [b for b, c in seen.items() if c > 1]
    once = sum(1 for b in expect if seen.get(b, 0) == 1)

    problems = []

    def add(label, items, fmt=lambda x: repr(x)):
        if items:
            problems.append(f"{len(items)} {label} (e.g. {', '.join(fmt(x) for x in items[:3])})")

    add("missing", missing, lambda b: repr(b[:60]))
    add("duplicated", dups, lambda b: repr(b[:60]))
    add("strangers", strangers)
    add("on the wrong queue", wrong_queue, str)
    add("out of order", out_of_order, str)
    add("not a single data section", bad_format, str)
    add("with wrong application properties", bad_props, str)
    add("with wrong content-type", bad_ct, str)
    add("with wrong x-opt-partition-key", bad_pk, str)
    if rd.errors:
        problems.append("reader errors: " + "; ".join(rd.errors[:3]))

    send = {}
    if a.send_summary:
        try:
            with open(a.send_summary) as f:
                txt = f.read().strip()
            send = json.loads(txt.splitlines()[-1]) if txt else {}
        except (OSError, ValueError) as e:
            problems.append(f"send summary unreadable: {e}")
    if a.send_rc is not None and a.send_rc != 0:
        problems.append(f"send exited with status {a.send_rc}")
    if send and (send.get("events_sent") != n or send.get("events_read") != n or send.get("ok") is not True):
        problems.append(f"send summary: ok={send.get('ok')} events_read={send.get('events_read')} "
                        f"events_sent={send.get('events_sent')} events_failed={send.get('events_failed')}")
    send_eps = send.get("events_per_second")

    stats = {
        "check": name, "events": n, "received": len(got), "stored_once": once,
        "in_order": not out_of_order, "send_eps": send_eps, "read_eps": round(read_eps),
        "per_queue": per_queue, "keys": len(key_count), "ok": not problems,
    }
    if a.stats_out:
        with open(a.stats_out, "w") as f:
            json.dump(stats, f)
    eps_txt = (f"send {send_eps:.0f} ev/s, " if isinstance(send_eps, (int, float)) else "")
    detail = (f"{n} events, {len(key_count)} keys, per queue {per_queue}; {eps_txt}"
              f"read back {len(got)} at {read_eps:.0f} ev/s")
    if problems:
        print(f"FAIL {name}: {'; '.join(problems)} [{detail}; reader stopped: {rd.why_stopped or 'all read'}]")
    else:
        print(f"PASS {name}: {detail}; each once, on its key's queue, in order per key, "
              f"body/properties/content-type/x-opt-partition-key intact")
    return 0


# ---------------------------------------------------------------------------
# send (stand-in for `hubcat send --amqp-url`)
# ---------------------------------------------------------------------------

def parse_duration(s):
    s = s.strip()
    for suf, mul in (("ms", 0.001), ("s", 1), ("m", 60)):
        if s.endswith(suf):
            return float(s[:-len(suf)]) * mul
    return float(s)


def cmd_send(a):
    """Publishes like `hubcat send --amqp-url` would; prints hubcat's JSON summary."""
    from proton import Message, symbol
    from proton.handlers import MessagingHandler
    from proton.reactor import Container

    delim = a.key_delimiter.encode().decode("unicode_escape") if a.key_delimiter else None
    props = dict(kv.split("=", 1) for kv in a.header)
    src = open(a.file[0], "rb") if a.file else sys.stdin.buffer
    events = []
    for raw in src:
        raw = raw.rstrip(b"\n")
        if delim:
            k, _, body = raw.partition(delim.encode())
            events.append((k.decode("utf-8"), body))
        else:
            events.append((None, raw))
    n_q = len(a.address)
    per_q = [[] for _ in range(n_q)]
    rr = 0
    for k, body in events:
        if k:
            qi = queue_index(k, n_q)
        else:
            qi, rr = rr % n_q, rr + 1
        per_q[qi].append((k, body))
    st = {"sent": 0, "failed": 0, "err": None, "t0": time.monotonic(), "repeat_outcomes": 0}
    rate = a.rate
    delivery_timeout = parse_duration(a.delivery_timeout)

    class H(MessagingHandler):
        def __init__(self):
            super().__init__(prefetch=0)
            self.next = [0] * n_q
            self.senders = {}
            self.links = []
            self.outcomes = set()
            self.done = False

        def on_start(self, event):
            self.conn = event.container.connect(a.amqp_url, allowed_mechs=mechs_for(a.amqp_url), reconnect=False)
            for i, addr in enumerate(a.address):
                s = event.container.create_sender(self.conn, addr, name=f"standin-{i}")
                self.senders[s.name] = i
                self.links.append(s)
            event.container.schedule(0.05, self)

        def released(self):
            if rate:
                return int((time.monotonic() - st["t0"]) * rate)
            return len(events)

        def pump(self, s):
            i = self.senders[s.name]
            q = per_q[i]
            while s.credit > 0 and self.next[i] < len(q) and sum(self.next) < self.released():
                k, body = q[self.next[i]]
                m = Message(body=bytes(body), inferred=True, properties=props)
                if a.content_type:
                    m.content_type = symbol(a.content_type)
                if k:
                    m.annotations = {symbol("x-opt-partition-key"): k}
                s.send(m)
                self.next[i] += 1

        def on_sendable(self, event):
            self.pump(event.sender)

        def on_timer_task(self, event):
            if self.done:
                return
            if time.monotonic() - st["t0"] > delivery_timeout + 5:
                st["err"] = st["err"] or "delivery timeout"
                return self.finish()
            for s in self.links:
                self.pump(s)
            event.container.schedule(0.05, self)

        def outcome_seen(self, event):
            # Counted once per delivery: proton may report an outcome again when
            # the broker sends a second disposition for a delivery.
            k = (event.link.name, event.delivery.tag)
            if k in self.outcomes:
                st["repeat_outcomes"] += 1
                return True
            self.outcomes.add(k)
            return False

        def on_accepted(self, event):
            if self.outcome_seen(event):
                return
            st["sent"] += 1
            self.maybe_done()

        def on_rejected(self, event):
            if self.outcome_seen(event):
                return
            st["failed"] += 1
            c = event.delivery.remote.condition
            st["err"] = st["err"] or f"rejected: {c.name if c else ''} {c.description if c else ''}"
            self.maybe_done()

        def on_released(self, event):
            if self.outcome_seen(event):
                return
            st["failed"] += 1
            st["err"] = st["err"] or "released/modified by the broker"
            self.maybe_done()

        def maybe_done(self):
            if st["sent"] + st["failed"] == len(events):
                self.finish()

        def finish(self):
            if not self.done:
                self.done = True
                self.conn.close()

        def on_transport_error(self, event):
            c = event.transport.condition
            st["err"] = st["err"] or f"connection lost: {c.name if c else ''} {c.description if c else ''}"
            self.done = True
            super().on_transport_error(event)

        def on_link_error(self, event):
            c = event.link.remote_condition
            st["err"] = st["err"] or f"link {event.link.name} refused: {c.name if c else ''} {c.description if c else ''}"
            self.finish()

        def on_session_error(self, event):
            c = event.session.remote_condition
            st["err"] = st["err"] or f"session ended by the broker: {c.name if c else ''} {c.description if c else ''}"
            self.finish()

        def on_connection_error(self, event):
            c = event.connection.remote_condition
            st["err"] = st["err"] or f"connection closed by the broker: {c.name if c else ''} {c.description if c else ''}"
            self.done = True

        def on_disconnected(self, event):
            if not self.done:
                st["err"] = st["err"] or "connection lost"
            self.done = True

    if n_q == 0 or not events:
        st["err"] = "nothing to send"
    else:
        Container(H()).run()
    st["failed"] = len(events) - st["sent"]
    el = time.monotonic() - st["t0"]
    if st["err"]:
        print(f"error: {st['err']}", file=sys.stderr)
    if st["repeat_outcomes"]:
        print(f"note: {st['repeat_outcomes']} outcomes reported twice for one delivery", file=sys.stderr)
    summary = {"ok": st["failed"] == 0 and not st["err"], "events_read": len(events),
               "events_sent": st["sent"], "events_failed": st["failed"], "batches": st["sent"],
               "elapsed_seconds": round(el, 3), "events_per_second": round(st["sent"] / el, 1) if el else 0}
    if a.summary == "json":
        print(json.dumps(summary))
    return 0 if summary["ok"] else 1


# ---------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("gen")
    g.add_argument("--out", required=True)
    g.add_argument("--events", type=int, default=100000)
    g.add_argument("--keys", type=int, default=1000)
    g.add_argument("--run-id", required=True)
    g.add_argument("--seed", type=int, default=20240601)

    s = sub.add_parser("selftest")
    s.add_argument("--name", default="resolver.selftest")

    r = sub.add_parser("readcheck")
    r.add_argument("--name", required=True)
    r.add_argument("--url", required=True)
    r.add_argument("--address", action="append", required=True)
    r.add_argument("--input", required=True, help="the lines that were sent")
    r.add_argument("-H", "--header", action="append", default=[])
    r.add_argument("--content-type")
    r.add_argument("--send-summary", help="hubcat's --summary json output")
    r.add_argument("--send-rc", type=int)
    r.add_argument("--stats-out")
    r.add_argument("--idle", type=float, default=10.0)
    r.add_argument("--deadline", type=float, default=120.0)
    r.add_argument("--prefetch", type=int, default=1000)

    d = sub.add_parser("send")
    d.add_argument("file", nargs="*")
    d.add_argument("--amqp-url", required=True)
    d.add_argument("--address", action="append", default=[])
    d.add_argument("--key-delimiter")
    d.add_argument("-H", "--header", action="append", default=[])
    d.add_argument("--content-type")
    d.add_argument("--summary", default="text")
    d.add_argument("--rate", type=float)
    d.add_argument("--delivery-timeout", default="120s")
    d.add_argument("--try-timeout", default="60s")
    d.add_argument("--retries")
    d.add_argument("--max-pending")
    d.add_argument("-q", "--quiet", action="store_true")

    a = p.parse_args()
    if a.cmd in ("readcheck", "send") and generate_hash_code is None:
        print(f"cannot import the Azure SDK's partition resolver: {_IMPORT_ERROR}", file=sys.stderr)
        return 2
    return {"gen": cmd_gen, "selftest": cmd_selftest, "readcheck": cmd_readcheck, "send": cmd_send}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
