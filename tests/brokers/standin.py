"""A stand-in for `hubcat send --amqp-url`: the same flags and JSON summary,
published with a Python qpid-proton sender. It lets the harness and the brokers
be exercised without hubcat (BROKERS_SENDER=standin run.sh)."""

import json
import sys
import time

from partition import queue_index
from readcheck import mechs_for


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
