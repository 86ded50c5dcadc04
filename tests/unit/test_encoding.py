"""Output, dead-letter and late records, byte for byte."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.pure import jsonio
from operators.pure.encoding import (
    KafkaRecord,
    Pseudonymizer,
    RecordChunk,
    encode_late,
    encode_metric,
    encode_metric_records,
    encode_metrics,
    encode_reject,
    encode_uncounted,
    isoformat_utc,
    source_headers,
)
from operators.pure.events import RawMessage
from operators.pure.partition import LateEvent, Reject
from operators.pure.slices import FIELDS, SliceSpec
from operators.pure.window_shard import ClosedCounts, UncountedCount, WindowCount

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z

USER_IP = SliceSpec(("user_id", "ip"), 2)


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (946_684_800, "2000-01-01T00:00:00Z"),
        (T0, "2024-03-01T00:00:00Z"),
        (T0 + 59, "2024-03-01T00:00:59Z"),
        (T0 + 3600 * 23 + 60 * 59 + 59, "2024-03-01T23:59:59Z"),
        (1_709_164_800, "2024-02-29T00:00:00Z"),
        (4_102_444_740, "2099-12-31T23:59:00Z"),
    ],
)
def test_isoformat_utc(epoch: int, text: str) -> None:
    assert isoformat_utc(epoch) == text


def test_metric_value_and_key_bytes() -> None:
    record = encode_metric(WindowCount(T0, T0 + 60, USER_IP, ("u1", "10.0.0.1"), 3))
    assert record == KafkaRecord(
        b'["2024-03-01T00:00:00Z","user_id+ip","u1","10.0.0.1"]',
        b'{"window_start":"2024-03-01T00:00:00Z","window_end":"2024-03-01T00:01:00Z",'
        b'"slice":"user_id+ip","key":{"user_id":"u1","ip":"10.0.0.1"},"count":3}',
        [],
    )


def test_metric_key_object_follows_slice_field_order() -> None:
    spec = SliceSpec(("locale", "app_version", "device_type"), 1)
    record = encode_metric(WindowCount(T0, T0 + 300, spec, ("TX", "2.3.0", "ios"), 1))
    assert record.key == b'["2024-03-01T00:00:00Z","locale+app_version+device_type","TX","2.3.0","ios"]'
    assert record.value == (
        b'{"window_start":"2024-03-01T00:00:00Z","window_end":"2024-03-01T00:05:00Z",'
        b'"slice":"locale+app_version+device_type","key":{"locale":"TX","app_version":"2.3.0","device_type":"ios"},'
        b'"count":1}'
    )


def test_metric_with_single_field_slice() -> None:
    record = encode_metric(WindowCount(T0, T0 + 60, SliceSpec(("user_id",), 1), ("u1",), 12))
    assert record.key == b'["2024-03-01T00:00:00Z","user_id","u1"]'
    assert record.value is not None
    assert json.loads(record.value) == {
        "window_start": "2024-03-01T00:00:00Z",
        "window_end": "2024-03-01T00:01:00Z",
        "slice": "user_id",
        "key": {"user_id": "u1"},
        "count": 12,
    }


def test_metric_escapes_and_keeps_unicode_as_utf8() -> None:
    record = encode_metric(WindowCount(T0, T0 + 60, USER_IP, ('qu"o\\te', "用户"), 2))
    assert record.key == '["2024-03-01T00:00:00Z","user_id+ip","qu\\"o\\\\te","用户"]'.encode()
    assert record.value is not None
    assert json.loads(record.value)["key"] == {"user_id": 'qu"o\\te', "ip": "用户"}


def test_metric_encoding_is_deterministic() -> None:
    def make() -> WindowCount:
        return WindowCount(T0, T0 + 60, SliceSpec(("user_id", "ip"), 2), ("u1", "10.0.0.1"), 3)

    first, second = encode_metric(make()), encode_metric(make())
    assert (first.key, first.value, first.headers) == (second.key, second.value, second.headers)


def test_a_shard_chunk_encodes_each_count_and_keeps_the_shard_as_its_origin() -> None:
    counts = [
        WindowCount(T0, T0 + 60, USER_IP, ("u1", "10.0.0.1"), 3),
        WindowCount(T0, T0 + 60, USER_IP, ("u2", "x"), 2),
    ]
    chunk = encode_metrics(("user_id+ip#3", ClosedCounts(counts, [])))
    assert chunk == RecordChunk("user_id+ip#3", [encode_metric(count) for count in counts])


def test_uncounted_counts_go_to_the_dlq_as_metric_records_with_window_closed() -> None:
    late = UncountedCount(T0, T0 + 60, USER_IP, ("u1", "10.0.0.1"), 4)
    chunk = encode_uncounted(("user_id+ip#3", ClosedCounts([], [late])), "user-login")
    key, value, _ = encode_metric(WindowCount(*late[:5]))
    assert chunk.records == [KafkaRecord(key, value, [("error", b"window_closed"), ("source_topic", b"user-login")])]


def test_source_headers() -> None:
    assert source_headers("user-login", 3, 12345) == [
        ("source_topic", b"user-login"),
        ("source_partition", b"3"),
        ("source_offset", b"12345"),
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"k1", b"{not json"),
        (None, None),
        (b"k", b""),
        (b"\xff\xfe", b'{"user_id": "\xff"}'),
        (None, b'{"user_id": "u1", "timestamp": true}'),
    ],
)
def test_reject_keeps_key_and_value_bytes_unchanged(key: bytes | None, value: bytes | None) -> None:
    record = encode_reject(Reject(RawMessage(key, value, 2, 77), "some_reason"), "user-login")
    assert record.key is key
    assert record.value is value


def test_reject_headers() -> None:
    record = encode_reject(Reject(RawMessage(b"k", None, 4, 9001), "tombstone"), "in-topic")
    assert record == KafkaRecord(
        b"k",
        None,
        [
            ("error", b"tombstone"),
            ("source_topic", b"in-topic"),
            ("source_partition", b"4"),
            ("source_offset", b"9001"),
        ],
    )


def test_reject_reason_with_field_name() -> None:
    record = encode_reject(Reject(RawMessage(None, b"{}", 0, 0), "missing_field:user_id"), "user-login")
    assert dict(record.headers)["error"] == b"missing_field:user_id"


def test_late_record() -> None:
    value = b'{"user_id": "u1", "timestamp": 1709251230}'
    record = encode_late(LateEvent(RawMessage(b"key", value, 1, 42), T0), "user-login")
    assert record == KafkaRecord(
        b"key",
        value,
        [
            ("window_start", b"2024-03-01T00:00:00Z"),
            ("source_topic", b"user-login"),
            ("source_partition", b"1"),
            ("source_offset", b"42"),
        ],
    )
    assert record.value is value


def test_late_record_keeps_none_key() -> None:
    record = encode_late(LateEvent(RawMessage(None, b"v", 0, 0), T0 + 60), "t")
    assert record.key is None
    assert dict(record.headers)["window_start"] == b"2024-03-01T00:01:00Z"


def compact_json(value: object) -> bytes:
    """Compact JSON in UTF-8 from the standard library, not from the product's serializer."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("odd", ["", "\x00\x1f", "tab\there", "ü", "😀", "a]b", '"],"x":1,"', "\\"])
def test_metric_bytes_are_exactly_the_compact_json_of_the_record(odd: str) -> None:
    spec = SliceSpec(("user_id", "ip", "locale"), 1)
    record = encode_metric(WindowCount(T0, T0 + 60, spec, (odd, "10.0.0.1", odd), 7))
    start, end = "2024-03-01T00:00:00Z", "2024-03-01T00:01:00Z"
    assert record.key == compact_json([start, spec.name, odd, "10.0.0.1", odd])
    key = {"user_id": odd, "ip": "10.0.0.1", "locale": odd}
    expected = {"window_start": start, "window_end": end, "slice": spec.name, "key": key, "count": 7}
    assert record.value == compact_json(expected)


# Strings that break naive splitting or templating: separators, quotes and
# escapes, newlines (which the batched encoding splits on), %, non-ASCII.
awkward_text = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["],[", '","', '"', "\\", "\n", "a\nb", "%s", "%d%%", "\u2028", "é", "\x00", "\x1f", "😀", ""]),
)
slice_specs = st.sampled_from(
    [SliceSpec(("user_id",), 1), USER_IP, SliceSpec(("app_version", "device_type"), 1), SliceSpec(FIELDS, 3)]
)


@given(
    st.lists(
        st.tuples(
            slice_specs, st.integers(0, 3), st.lists(awkward_text, min_size=6, max_size=6), st.integers(1, 10**12)
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_batched_metric_records_are_byte_for_byte_those_of_one_at_a_time(rows: list, pseudonymize: bool) -> None:
    counts = [
        WindowCount(T0 + 60 * w, T0 + 60 * w + 60, spec, tuple(texts[: len(spec.fields)]), n)
        for spec, w, texts, n in rows
    ]
    pseudonymizer = Pseudonymizer(frozenset({"user_id", "ip"}), b"k") if pseudonymize else None
    assert encode_metric_records(counts, pseudonymizer) == [encode_metric(c, pseudonymizer) for c in counts]


def test_each_string_encodes_as_on_its_own() -> None:
    strings = ["a", "", "a\nb", '"', "\\", "],[", "é", "\u2028", "\x00"]
    assert jsonio.dumps_each(strings) == [jsonio.dumps(s) for s in strings]
    assert jsonio.dumps_each([]) == []


def test_batched_records_of_a_slice_without_fields_between_others_are_each_written() -> None:
    # Found by an attack on the batched encoding: with no values to take, a
    # group of zero-field counts was dropped whole.
    no_fields = SliceSpec((), 1)
    counts: list[WindowCount | UncountedCount] = [
        WindowCount(T0, T0 + 60, USER_IP, ("u1", "1.2.3.4"), 2),
        UncountedCount(T0, T0 + 60, no_fields, (), 5),
        WindowCount(T0, T0 + 60, USER_IP, ("u2", "5.6.7.8"), 3),
    ]
    assert encode_metric_records(counts) == [encode_metric(c) for c in counts]


def test_a_count_whose_values_do_not_fit_its_slice_raises_rather_than_borrowing_the_next_ones() -> None:
    # Found by the same attack: the shared value stream let a short count
    # take the next count's value, and lose that count, without a word.
    counts = [
        WindowCount(T0, T0 + 60, USER_IP, ("u1",), 2),
        WindowCount(T0, T0 + 60, SliceSpec(("user_id",), 1), ("u2",), 3),
    ]
    with pytest.raises(ValueError, match="do not match"):
        encode_metric_records(counts)
