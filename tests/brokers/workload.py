"""The keyed input lines: written by `gen`, read back by the checker and the
stand-in sender. A line is `KEY<TAB>RUNID|KEY|COUNTER|PADDING`, where COUNTER
counts that key's events, so order per key can be checked on the other side."""

import random
import sys
from collections import defaultdict


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
