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

Modules: workload.py (gen), partition.py (the key-to-queue mapping and
selftest), readcheck.py (reader and checks), standin.py (send).
"""

import argparse
import sys

import partition
import readcheck
import standin
import workload


def parser():
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
    return p


def main():
    a = parser().parse_args()
    if a.cmd in ("readcheck", "send") and not partition.available():
        print(f"cannot import the Azure SDK's partition resolver: {partition.IMPORT_ERROR}", file=sys.stderr)
        return 2
    return {"gen": workload.cmd_gen, "selftest": partition.cmd_selftest,
            "readcheck": readcheck.cmd_readcheck, "send": standin.cmd_send}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
