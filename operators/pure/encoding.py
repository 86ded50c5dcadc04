"""Bytes out: the output, dead-letter and late-topic records.

Everything here is a pure function of its input, so a record emitted again
after a resume is byte-identical to the first copy.
"""

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from itertools import chain, groupby, repeat
from operator import itemgetter
from typing import NamedTuple

from operators.pure import jsonio
from operators.pure.partition import LateEvent, PartitionBatch, Reject
from operators.pure.slices import SliceSpec
from operators.pure.window_counts import ClosedCounts, UncountedCount, WindowCount

Headers = list[tuple[str, str | bytes | None]]


class KafkaRecord(NamedTuple):
    """One message to produce; the sink knows the topic."""

    key: bytes | None
    value: bytes | None
    headers: Headers


class RecordChunk(NamedTuple):
    """Records that travel together to a sink, with the name of where they came from.

    Records of one origin (a shard, an input partition) always take the same
    path to the broker, so their order, and with it a revision's place after
    the record it revises, is kept.
    """

    origin: str
    records: list[KafkaRecord]


# Every record of a window shares its two instants; format each once.
@lru_cache(maxsize=4096)
def isoformat_utc(epoch_seconds: int) -> str:
    """``2024-03-01T00:00:00Z`` for a whole epoch second."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Pseudonymizer:
    """Replaces the values of some fields with a keyed HMAC-SHA256 (hex).

    Keyed and deterministic: equal values stay equal, so counts and compaction
    are unchanged, and nobody without the key can test a guess.
    """

    fields: frozenset[str]
    key: bytes = field(repr=False)

    def apply(self, names: tuple[str, ...], values: tuple[str, ...]) -> tuple[str, ...]:
        """The key values with every field in `fields` pseudonymized."""
        return tuple(
            hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest() if name in self.fields else value
            for name, value in zip(names, values, strict=True)
        )


@lru_cache(maxsize=1024)
def _metric_prefixes(window_start: int, window_end: int, slice_name: str) -> tuple[bytes, bytes]:
    """The leading bytes shared by every key, and every value, of one window of one slice."""
    start = isoformat_utc(window_start)
    key_prefix = jsonio.dumps([start, slice_name])[:-1] + b","
    head = {"window_start": start, "window_end": isoformat_utc(window_end), "slice": slice_name}
    value_prefix = jsonio.dumps(head)[:-1] + b',"key":'
    return key_prefix, value_prefix


def encode_metric(
    window_count: WindowCount | UncountedCount, pseudonymizer: Pseudonymizer | None = None
) -> KafkaRecord:
    """The login-metrics record of one (window, slice, key) count.

    The Kafka key names the window, slice and key values, so a replayed record
    overwrites its first copy in a compacted topic. Both are compact JSON:
    ``["<window_start>","<slice>",<values>...]`` and ``{"window_start":...,
    "window_end":...,"slice":...,"key":{<field>:<value>...},"count":n}``.
    """
    spec = window_count.slice
    values = window_count.values
    if pseudonymizer is not None:
        values = pseudonymizer.apply(spec.fields, values)
    # A window emits thousands of records: its shared JSON is encoded once.
    key_prefix, value_prefix = _metric_prefixes(window_count.window_start, window_count.window_end, spec.name)
    key = key_prefix + jsonio.dumps(values)[1:]
    key_object = jsonio.dumps(dict(zip(spec.fields, values, strict=True)))
    value = b'%s%s,"count":%d}' % (value_prefix, key_object, window_count.count)
    return KafkaRecord(key, value, [])


@lru_cache(maxsize=1024)
def _metric_templates(window_start: int, window_end: int, spec: SliceSpec) -> tuple[bytes, bytes]:
    """%-templates of one window and slice's whole key and value, each field's encoded value a ``%s``."""
    key_prefix, value_prefix = _metric_prefixes(window_start, window_end, spec.name)
    fields = spec.fields
    key = key_prefix.replace(b"%", b"%%") + b",".join([b"%s"] * len(fields)) + b"]"
    key_object = b",".join(jsonio.dumps(name).replace(b"%", b"%%") + b":%s" for name in fields)
    return key, value_prefix.replace(b"%", b"%%") + b"{" + key_object + b'},"count":%d}'


# A shard emits its counts window by window, all of one slice: few groups.
_window_and_slice = itemgetter(0, 1, 2)
_count_of = itemgetter(4)


def encode_metric_records(
    counts: Sequence[WindowCount | UncountedCount], pseudonymizer: Pseudonymizer | None = None
) -> list[KafkaRecord]:
    """`encode_metric` of each count, byte for byte, with one orjson call per window and slice.

    A closing window emits up to hundreds of thousands of records at once, and
    orjson's cost per call, not per byte, was most of their encoding. A count
    whose values do not match its slice's fields raises, as `encode_metric`
    does: a value must never land under another record's key.
    """
    records: list[KafkaRecord] = []
    append = records.append
    for (start, end, spec), group in groupby(counts, _window_and_slice):
        members = list(group)
        fields = spec.fields
        if pseudonymizer is None:
            values_of = [count.values for count in members]
        else:
            values_of = [pseudonymizer.apply(fields, count.values) for count in members]
        width = len(fields)
        if set(map(len, values_of)) != {width}:
            msg = f"a count of slice {spec.name!r} has values that do not match its {width} fields"
            raise ValueError(msg)
        encoded = iter(jsonio.dumps_each(list(chain.from_iterable(values_of))))
        # One iterator repeated: zip takes each record's values in turn, in C.
        each_values = zip(*[encoded] * width, strict=True) if width else repeat((), len(members))
        key_template, value_template = _metric_templates(start, end, spec)
        for count, values in zip(map(_count_of, members), each_values, strict=True):
            append(_new_record(KafkaRecord, (key_template % values, value_template % (*values, count), [])))
    return records


_new_record = tuple.__new__


def encode_metrics(item: tuple[str, ClosedCounts], pseudonymizer: Pseudonymizer | None = None) -> RecordChunk:
    """The login-metrics records of one shard's closed counts."""
    shard, closed = item
    return RecordChunk(shard, encode_metric_records(closed.counts, pseudonymizer))


def encode_uncounted(
    item: tuple[str, ClosedCounts], source_topic: str, pseudonymizer: Pseudonymizer | None = None
) -> RecordChunk:
    """Counts a shard could no longer merge, for the DLQ: their metric records with ``error=<why>``.

    The reason is ``window_closed`` or ``window_let_go`` (`operators.pure.window_counts`).
    """
    shard, closed = item
    topic = source_topic.encode()
    encoded = encode_metric_records(closed.uncounted, pseudonymizer)
    records = [
        KafkaRecord(key, value, [("error", count.reason.encode()), ("source_topic", topic)])
        for (key, value, _headers), count in zip(encoded, closed.uncounted, strict=True)
    ]
    return RecordChunk(shard, records)


def source_headers(source_topic: str, partition: int, offset: int) -> Headers:
    """Where a message came from, for tracing it back from the DLQ or late topic."""
    return [
        ("source_topic", source_topic.encode()),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]


def encode_reject(reject: Reject, source_topic: str) -> KafkaRecord:
    """The original bytes, with the reason in the ``error`` header."""
    message = reject.message
    headers = [("error", reject.reason.encode()), *source_headers(source_topic, message.partition, message.offset)]
    return KafkaRecord(message.key, message.value, headers)


def encode_late(late: LateEvent, source_topic: str) -> KafkaRecord:
    """The original bytes, with the window it would have counted in."""
    message = late.message
    headers = [
        ("window_start", isoformat_utc(late.window_start).encode()),
        *source_headers(source_topic, message.partition, message.offset),
    ]
    return KafkaRecord(message.key, message.value, headers)


def input_origin(partition: int) -> str:
    """The origin name of records forwarded from one input partition."""
    return f"input-{partition}"


def encode_rejects(batch: PartitionBatch, source_topic: str) -> RecordChunk:
    """The DLQ records of one read batch."""
    return RecordChunk(input_origin(batch.partition), [encode_reject(reject, source_topic) for reject in batch.rejects])


def encode_late_events(batch: PartitionBatch, source_topic: str) -> RecordChunk:
    """The late-topic records of one read batch."""
    return RecordChunk(input_origin(batch.partition), [encode_late(late, source_topic) for late in batch.late])


def has_records(chunk: RecordChunk) -> bool:
    """Whether a chunk carries anything to write."""
    return bool(chunk.records)
