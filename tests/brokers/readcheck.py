"""Reads every queue back with Python qpid-proton and checks a round trip:
each event once, on its key's queue, in order per key, with its body,
application properties, content-type and x-opt-partition-key intact; and
hubcat's own summary saying every event was sent. Prints one
`PASS name: ...` or `FAIL name: ...` line."""

import json
import time
from collections import defaultdict

from partition import queue_index
from workload import read_lines


def mechs_for(url):
    """SASL PLAIN when the URL carries credentials, else ANONYMOUS."""
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
