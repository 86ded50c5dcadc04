"""The results report's pure parts, its options, and what its page does with hostile key values."""

from datetime import datetime, timedelta, timezone

import plotly.offline
import pytest

from operators.runtime.settings import Settings
from report.aggregate import (
    Metric,
    TopKey,
    UserSpread,
    WindowPoint,
    count_by,
    decode_metric,
    decode_record,
    in_range,
    latest_metrics,
    latest_per_key,
    most_distinct,
    once_per_source,
    pair_slice,
    parse_utc,
    top_keys,
    window_series,
)
from report.cli import parse_args
from report.read import TopicRead
from report.render import Page, Spread, render

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


RECORD = (
    b'{"window_start": "2024-03-01T00:00:00Z", "window_end": "2024-03-01T00:01:00Z",'
    b' "slice": "app_version+device_type", "key": {"app_version": "2.3.0", "device_type": "android"}, "count": 42}'
)
RECORD_KEY = b'["2024-03-01T00:00:00Z","app_version+device_type","2.3.0","android"]'


def metric(minute: int, slice_name: str, values: tuple[str, ...], count: int) -> Metric:
    start = T0 + minute * MINUTE
    return Metric(start, start + MINUTE, slice_name, values, count)


def test_latest_per_key_keeps_the_last_value_and_a_tombstone_removes_its_key() -> None:
    pairs = [(b"a", b"1"), (b"b", b"1"), (b"a", b"3"), (b"b", None), (b"c", b"2")]
    assert latest_per_key(pairs) == {b"a": b"3", b"c": b"2"}


def test_decode_metric_reads_the_documented_record() -> None:
    assert decode_metric(RECORD) == metric(0, "app_version+device_type", ("2.3.0", "android"), 42)


def test_decode_record_wants_the_kafka_key_to_name_the_values_window_slice_and_key() -> None:
    assert decode_record(RECORD_KEY, RECORD) == decode_metric(RECORD)
    for key in [
        None,
        b"garbage",
        RECORD_KEY.replace(b"00:00:00Z", b"00:01:00Z"),
        RECORD_KEY.replace(b"android", b"ios"),
        b'["2024-03-01T00:00:00Z","app_version+device_type","2.3.0"]',
    ]:
        with pytest.raises(ValueError, match="does not name"):
            decode_record(key, RECORD)


def test_latest_metrics_keeps_the_latest_per_partition_and_the_larger_count_across_partitions() -> None:
    revised = RECORD.replace(b"42", b"50")
    records = [(1, RECORD_KEY, revised), (0, RECORD_KEY, RECORD), (0, b"k", b"junk"), (0, b"k", None)]
    assert latest_metrics(records) == ([metric(0, "app_version+device_type", ("2.3.0", "android"), 50)], 0)
    # Within a partition log order decides, and a tombstone deletes what came before it.
    assert latest_metrics([(0, RECORD_KEY, revised), (0, RECORD_KEY, RECORD)])[0][0].count == 42
    assert latest_metrics([(0, RECORD_KEY, RECORD), (0, RECORD_KEY, None), (0, b"x", b"[]")]) == ([], 1)


def test_once_per_source_counts_each_input_message_once_and_keeps_records_of_no_input_message() -> None:
    def source(offset: bytes, reason: bytes = b"invalid_json") -> dict[str, bytes | None]:
        return {"error": reason, "source_topic": b"t", "source_partition": b"0", "source_offset": offset}

    closed = {"error": b"window_closed", "source_topic": b"t"}
    kept, repeats = once_per_source([source(b"5"), closed, source(b"6"), source(b"5"), closed])
    assert (kept, repeats) == ([source(b"5"), closed, source(b"6"), closed], 1)
    other_partition = {**source(b"5"), "source_partition": b"1"}
    assert once_per_source([source(b"5"), other_partition]) == ([source(b"5"), other_partition], 0)


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[]",
        b'{"slice": "ip"}',
        b'{"window_start": "x", "window_end": "x", "slice": "ip", "key": {}}',
        RECORD.replace(b'"count": 42', b'"count": true'),
        RECORD.replace(b'"count": 42', b'"count": 0'),
        RECORD.replace(b'"count": 42', b'"count": 4.2'),
    ],
)
def test_decode_metric_refuses_what_is_not_a_metric_record(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a login-metrics record"):
        decode_metric(value)


def test_parse_utc_takes_z_offsets_and_naive_times_as_utc() -> None:
    assert parse_utc("2024-03-01T00:00:00Z") == T0
    assert parse_utc("2024-03-01T01:00:00+01:00") == T0
    assert parse_utc("2024-03-01") == T0


def test_in_range_includes_the_start_and_excludes_the_end() -> None:
    assert in_range(T0, T0, T0 + MINUTE)
    assert not in_range(T0 + MINUTE, T0, T0 + MINUTE)
    assert not in_range(T0 - MINUTE, T0, None)
    assert in_range(T0, None, None)


def test_window_series_counts_records_and_sums_counts_per_window_and_slice() -> None:
    metrics = [metric(1, "ip", ("x",), 2), metric(0, "ip", ("x",), 3), metric(0, "ip", ("y",), 4)]
    metrics.append(metric(0, "locale", ("en",), 7))
    assert window_series(metrics) == {
        "ip": [WindowPoint(T0, 2, 7), WindowPoint(T0 + MINUTE, 1, 2)],
        "locale": [WindowPoint(T0, 1, 7)],
    }


def test_top_keys_sums_over_windows_ranks_by_count_then_values_and_cuts_at_n() -> None:
    metrics = [
        metric(0, "ip", ("b",), 3),
        metric(2, "ip", ("b",), 2),
        metric(0, "ip", ("a",), 5),
        metric(1, "ip", ("c",), 4),
    ]
    assert top_keys(metrics, 2) == {
        "ip": [TopKey(("a",), 5, (T0,)), TopKey(("b",), 5, (T0, T0 + 2 * MINUTE))],
    }


def test_most_distinct_counts_the_other_field_wherever_user_id_stands() -> None:
    metrics = [
        metric(0, "ip+user_id", ("1.1.1.1", "u1"), 2),
        metric(1, "ip+user_id", ("2.2.2.2", "u1"), 2),
        metric(1, "ip+user_id", ("1.1.1.1", "u1"), 3),
        metric(0, "ip+user_id", ("1.1.1.1", "u2"), 9),
        metric(0, "ip+user_id", ("3.3.3.3", "u3"), 2),
        metric(0, "other", ("9.9.9.9", "u3"), 2),
    ]
    assert most_distinct(metrics, "ip+user_id", 1, 3) == [
        UserSpread("u1", 2, 7),
        UserSpread("u2", 1, 9),  # a tie on distinct IPs goes to more logins
        UserSpread("u3", 1, 2),
    ]


def test_count_by_puts_the_most_frequent_first_and_ties_in_label_order() -> None:
    assert count_by(["b", "a", "c", "c"]) == [("c", 2), ("a", 1), ("b", 1)]


def test_pair_slice_finds_the_two_field_slice_in_either_order() -> None:
    slices = {"user_id+device_id+ip": ("user_id", "device_id", "ip"), "ip+user_id": ("ip", "user_id")}
    assert pair_slice(slices, "user_id", "ip") == ("ip+user_id", 1)
    assert pair_slice(slices, "user_id", "device_id") is None


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--top", "0"], "--top"),
        (["--top", "many"], "--top"),
        (["--from", "yesterday"], "--from"),
        (["--from", "2024-03-01T01:00:00Z", "--to", "2024-03-01T00:00:00Z"], "--to"),
        (["--slice", "user_id+locale"], "--slice"),
    ],
)
def test_a_bad_option_stops_at_once_naming_it(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv, Settings())
    assert stopped.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err


def test_options_parse_to_utc_times_and_known_slices() -> None:
    args = parse_args(["--from", "2024-03-01T00:00:00Z", "--slice", "user_id+ip", "--top", "3"], Settings())
    assert (args.start, args.end, args.slices, args.top) == (T0, None, ["user_id+ip"], 3)


def test_a_hostile_key_value_shows_as_text_and_the_page_loads_nothing_from_elsewhere() -> None:
    hostile = "</script><script>alert(1)</script>"
    top = TopKey((hostile, "d1"), 3, (T0,))
    page = Page(
        generated_at=T0,
        brokers="127.0.0.1:9092",
        reads=[TopicRead("login-metrics", "OUTPUT_TOPIC", {0: (0, 1)}, 1)],
        window_seconds=60,
        range_from=None,
        range_to=None,
        top_n=5,
        slice_fields={"user_id+device_id": ("user_id", "device_id")},
        series={"user_id+device_id": [WindowPoint(T0, 1, 3)]},
        top={"user_id+device_id": [top]},
        devices=Spread("user_id+device_id", [UserSpread(hostile, 1, 3)]),
        ips=Spread(None, []),
        dlq_reasons=[(hostile, 1)],
        late_windows=[],
    )
    html = render(page)
    assert "<script>alert(1)" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html
    # plotly.js itself mentions its CDN for map tiles the page never draws; the browser test watches requests.
    markup = html.replace(plotly.offline.get_plotlyjs(), "")
    assert "<script src=" not in markup and "<link" not in markup and "http" not in markup
