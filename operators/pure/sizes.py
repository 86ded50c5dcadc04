r"""How large a record may be to fit a topic, how large a metric record can get, and cutting a forward to fit.

The broker compares each record *batch*, after compression, with the topic's
`max.message.bytes`; the producer refuses, before sending, a record over its
own `message.max.bytes`. lz4 can make incompressible data slightly larger
(at most n/255 + 16 bytes), so a record or batch fits for sure only when its
uncompressed size leaves that growth and the framing free (`record_budget`).

A login-metrics record carries each key value twice, in its Kafka key and in
its JSON value, and orjson writes a control character as a six-byte
``\u00XX`` escape: a value of n bytes can take 12 n bytes of the record.
`largest_metric_bytes` measures the worst case with the real encoder, so
the start can refuse a MAX_FIELD_BYTES that would make a record the output
topic refuses on every resume.
"""

from collections.abc import Iterable

from operators.pure.encoding import KafkaRecord, Pseudonymizer, encode_metric
from operators.pure.slices import SliceSpec
from operators.pure.window_counts import WindowCount

PRODUCER_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""The producers' `message.max.bytes`: no record larger than this leaves loginflow, whatever a topic takes."""
DEFAULT_TOPIC_MAX_MESSAGE_BYTES = 1_048_588
"""The broker's own default, for a topic whose limit cannot be read."""
RECORD_OVERHEAD_BYTES = 4096
"""Room left for the batch and record framing, and the lz4 frame."""
LZ4_GROWTH_DIVISOR = 255
TRUNCATED_BYTES = 64 * 1024
"""The most a cut keeps of a forwarded record's key, and of its value."""

# The widest instants and count a record can carry: window starts are checked
# to lie in [2000, 2100), and a count is a signed 64-bit number downstream.
_WORST_WINDOW = (4_102_444_740, 4_102_444_800)
_WORST_COUNT = 2**63 - 1
# orjson's longest escape: one byte in, six out.
_WORST_CHAR = "\x01"


def record_budget(max_message_bytes: int) -> int:
    """The largest uncompressed batch sure to fit `max_message_bytes` after compression and framing."""
    return max(0, max_message_bytes - max_message_bytes // LZ4_GROWTH_DIVISOR - RECORD_OVERHEAD_BYTES)


def record_size(record: KafkaRecord) -> int:
    """Uncompressed bytes of a record's key, value and headers."""
    key, value, headers = record
    return len(key or b"") + len(value or b"") + _header_bytes(headers)


def _header_bytes(headers: Iterable[tuple[str, str | bytes | None]]) -> int:
    return sum(len(name) + len(data or b"") for name, data in headers)


def truncated(record: KafkaRecord, max_message_bytes: int) -> KafkaRecord:
    """`record` cut to fit a topic taking `max_message_bytes`, with headers saying what was cut.

    The value keeps at most `TRUNCATED_BYTES`, and the header `truncated`
    gives its original length. A key too long to leave room for the value
    keeps at most half the room, and the header `truncated_key` gives its
    original length. Only the lengths decide, so a replay cuts alike.
    """
    key, value, headers = record
    key_length, value_length = len(key or b""), len(value or b"")
    value_header = ("truncated", str(value_length).encode())
    key_header = ("truncated_key", str(key_length).encode())
    # Room for both headers, whether or not the key is cut, keeps the rule simple.
    room = max(0, record_budget(max_message_bytes) - _header_bytes([*headers, value_header, key_header]))
    key_keep = key_length if key_length <= room // 2 else min(TRUNCATED_BYTES, room // 2)
    value_keep = min(value_length, TRUNCATED_BYTES, room - key_keep)
    cut_headers = [*headers, value_header]
    if key_keep < key_length:
        cut_headers.append(key_header)
    cut_key = None if key is None else key[:key_keep]
    cut_value = None if value is None else value[:value_keep]
    return KafkaRecord(cut_key, cut_value, cut_headers)


def _metric_bytes(spec: SliceSpec, field_bytes: int, pseudonymizer: Pseudonymizer | None) -> int:
    values = tuple(_WORST_CHAR * field_bytes for _ in spec.fields)
    count = WindowCount(*_WORST_WINDOW, spec, values, _WORST_COUNT)
    return record_size(encode_metric(count, pseudonymizer))


def _metric_growth(spec: SliceSpec, pseudonymizer: Pseudonymizer | None) -> tuple[int, int]:
    """(bytes with empty values, bytes more per byte of every value): encoding is linear in value length."""
    empty = _metric_bytes(spec, 0, pseudonymizer)
    return empty, _metric_bytes(spec, 1, pseudonymizer) - empty


def largest_metric_bytes(
    slices: Iterable[SliceSpec], max_field_bytes: int, pseudonymizer: Pseudonymizer | None = None
) -> int:
    """The most bytes a login-metrics record can take when every field holds at most `max_field_bytes`."""
    sizes = (_metric_growth(spec, pseudonymizer) for spec in slices)
    return max(empty + per_byte * max_field_bytes for empty, per_byte in sizes)


def largest_field_bytes_within(
    slices: Iterable[SliceSpec], budget: int, pseudonymizer: Pseudonymizer | None = None
) -> int:
    """The largest MAX_FIELD_BYTES whose every login-metrics record stays within `budget` bytes (0 if none)."""
    bounds = []
    for empty, per_byte in (_metric_growth(spec, pseudonymizer) for spec in slices):
        # A slice of pseudonymized fields only does not grow with the values.
        bounds.append(budget if per_byte == 0 else (budget - empty) // per_byte)
    return max(0, min(bounds))


def oversized_metric(
    slices: Iterable[SliceSpec], max_field_bytes: int, budget: int, pseudonymizer: Pseudonymizer | None = None
) -> tuple[int, int] | None:
    """(largest record `max_field_bytes` allows, largest MAX_FIELD_BYTES within `budget`), or None if it fits."""
    slices = tuple(slices)
    largest = largest_metric_bytes(slices, max_field_bytes, pseudonymizer)
    if largest <= budget:
        return None
    return largest, largest_field_bytes_within(slices, budget, pseudonymizer)
