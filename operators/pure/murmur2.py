"""The partition Kafka's Java client picks for a keyed record.

Java's default partitioner sends a keyed record to
``toPositive(murmur2(key)) % partitions``; librdkafka calls the same choice
``murmur2_random``. Routing output the same way keeps each key in the
partition any other producer of the topic would use, and makes the choice
a pure function of the key.
"""

from struct import unpack as _unpack

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of `data`, as the signed int Java returns."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length >> 2
    # One C-level unpack of the little-endian words instead of a slice per word.
    for word in _unpack(f"<{words}I", data[: words * 4]):
        k = (word * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        whole = words * 4
        if tail == 3:
            h ^= data[whole + 2] << 16
        if tail >= 2:
            h ^= data[whole + 1] << 8
        h = ((h ^ data[whole]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a record with `key` in a topic of `partitions` partitions."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
