#!/usr/bin/env python3
"""Drop-in check: Microsoft's Python SDK with the connection string Microsoft documents
for its own emulator, character for character, against `hubcat emulator` started with
its defaults (AMQP on localhost:5672, hub eh1).

Run by run.sh after `hubcat send` published one line through the same connection
string; env:
  EH_DOC_CS        the documented connection string
  EH_HUBCAT_BODY   the body `hubcat send` published to eh1

Prints `PASS name` or `FAIL name: reason` lines like py_checks.py, whose helpers it
uses.
"""

import os

# py_checks reads the connection string when imported: the documented one here.
os.environ["EH_CS"] = os.environ["EH_DOC_CS"]

import py_checks as pc  # noqa: E402
from azure.eventhub import EventData  # noqa: E402

HUB = "eh1"


def c_send_and_read_back():
    sent = pc.bodies("dropin", 3)
    with pc.producer(HUB) as p:
        batch = p.create_batch(partition_id="0")
        for b in sent:
            batch.add(EventData(b))
        p.send_batch(batch)
    _, _, _, received, errors = pc.read_hub(HUB)
    pc.expect(not errors, "; ".join(errors))
    seen = [e["body"] for e in received["0"]]
    pc.expect([b for b in seen if b in sent] == sent, f"partition 0 holds {seen}")


def c_reads_what_hubcat_sent():
    body = os.environ["EH_HUBCAT_BODY"]
    _, _, _, received, errors = pc.read_hub(HUB)
    pc.expect(not errors, "; ".join(errors))
    found = [p for p, events in received.items() if any(e["body"] == body for e in events)]
    pc.expect(len(found) == 1, f"{body!r} found in partitions {found}")


def main():
    pc.check("dropin.py.documented_connection_string_send_and_read_back", c_send_and_read_back)
    pc.check("dropin.py.reads_what_hubcat_send_published", c_reads_what_hubcat_sent)


if __name__ == "__main__":
    main()
