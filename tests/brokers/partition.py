"""Which queue a partition key belongs to, by the Azure Python SDK's hash.

The expected queue of a key comes from the Azure Python SDK's own code, not
from this project's Rust code. The SDK's hash (`generate_hash_code`: lookup3
`hashlittle2`, seeds 0, the two halves XOR-folded to a signed 16-bit value) is
the service's. Its `PartitionResolver.get_partition_id_by_partition_key` then
takes `abs(hash % n)` with Python's floor modulo, which differs from the
service (.NET `Math.Abs(hash % n)` with a truncating remainder) for negative
hashes; so the index is taken here as `abs(hash) % n` (the same as C#'s
truncating form), and the selftest checks both the SDK hash and this mapping
against the .NET SDK's published vectors. The SDK hashes a `str` one `ord()`
per character, so a key is handed to it as its UTF-8 bytes decoded as Latin-1:
every byte then is one character, as the service hashes UTF-8 bytes.
"""

import functools
import json
import os
import random

from workload import make_keys

try:
    from azure.eventhub._buffered_producer._partition_resolver import generate_hash_code, PartitionResolver
    IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - reported by run.sh's install step
    generate_hash_code = None
    PartitionResolver = None
    IMPORT_ERROR = e

# The Azure SDKs' own partition-key test vectors, shared with tests/interop.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "partition_key_vectors.json")) as f:
    _VECTORS = json.load(f)
HASH_VECTORS = _VECTORS["hash16"]
PARTITION_VECTORS = [tuple(v) for v in _VECTORS["partition"]]


def available():
    return generate_hash_code is not None


def sdk_hash(key: str) -> int:
    return generate_hash_code(key.encode("utf-8").decode("latin-1"))


@functools.lru_cache(maxsize=None)
def queue_index(key: str, n: int) -> int:
    return abs(sdk_hash(key)) % n


def sdk_resolver_index(key: str, n: int) -> int:
    """What the Python SDK's own resolver would pick (for information only)."""
    return PartitionResolver(list(range(n))).get_partition_id_by_partition_key(
        key.encode("utf-8").decode("latin-1"))


def selftest():
    """The vectors this mapping gets wrong (none when it is right)."""
    bad = [(k, sdk_hash(k), v) for k, v in HASH_VECTORS.items() if sdk_hash(k) != v]
    bad += [(k, n, queue_index(k, n), want) for k, n, want in PARTITION_VECTORS if queue_index(k, n) != want]
    return bad


def cmd_selftest(a):
    if not available():
        print(f"FAIL {a.name}: cannot import the Azure SDK's resolver: {IMPORT_ERROR}")
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
