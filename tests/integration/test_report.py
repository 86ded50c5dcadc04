"""The results report's numbers from records on a real broker: what docs/contracts.md lets the topics hold.

Each test writes the records a situation leaves on the three output topics
and checks what `report.cli.build_page` makes of them.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from devkit.records import Headers, headers_dict, produce
from operators.pure.encoding import encode_late, encode_metric, encode_reject, encode_uncounted
from operators.pure.events import RawMessage
from operators.pure.partition import LateEvent, Reject
from operators.pure.window_counts import ClosedCounts, UncountedCount, WindowCount
from operators.runtime.settings import Settings, parse_slices
from report.aggregate import WindowPoint
from report.cli import build_page, parse_args
from report.render import Page, render
from tests.outputs import TopicFactory

pytestmark = pytest.mark.kafka

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z
START = datetime(2024, 3, 1, tzinfo=timezone.utc)
SPEC = parse_slices("user_id+ip:2")[0]


def settings_for(brokers: str, topic_factory: TopicFactory, output_partitions: int = 1) -> Settings:
    return dataclasses.replace(
        Settings(),
        brokers=brokers,
        output_topic=topic_factory(partitions=output_partitions),
        dlq_topic=topic_factory(partitions=1),
        late_topic=topic_factory(partitions=1),
        slices=(SPEC,),
    )


def page_of(settings: Settings) -> Page:
    return build_page(settings, parse_args([], settings))


def metric_record(minute: int, values: tuple[str, ...], count: int) -> tuple[bytes, bytes]:
    start = T0 + 60 * minute
    key, value, _ = encode_metric(WindowCount(start, start + 60, SPEC, values, count))
    assert key is not None and value is not None
    return key, value


def forwarded(kind: str, offset: int, reason_or_window: str | int) -> tuple[int, bytes | None, bytes | None, Headers]:
    """A reject or late record of input offset `offset`, as the dataflow writes it."""
    message = RawMessage(key=b"u1", value=b"{", partition=0, offset=offset)
    if kind == "reject":
        record = encode_reject(Reject(message, str(reason_or_window)), "user-login")
    else:
        record = encode_late(LateEvent(message, int(reason_or_window)), "user-login")
    return (0, record.key, record.value, headers_dict(record.headers))


def test_a_reject_or_late_event_written_again_after_a_crash_is_counted_once(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    """At-least-once repeats forwarded records; the contract says they are one by their source offset."""
    settings = settings_for(kafka_brokers, topic_factory)
    uncounted = UncountedCount(T0, T0 + 60, SPEC, ("u1", "1.1.1.1"), 2)
    (closed,) = encode_uncounted(("shard", ClosedCounts([], [uncounted], 0)), "user-login").records
    replayed = forwarded("reject", 5, "invalid_json")
    produce(
        kafka_brokers,
        settings.dlq_topic,
        [
            replayed,
            forwarded("reject", 6, "invalid_json"),
            forwarded("reject", 7, "missing_field:timestamp"),
            (0, closed.key, closed.value, headers_dict(closed.headers)),
            replayed,  # the same input message rejected again after a resume
        ],
    )
    late = forwarded("late", 9, T0)
    produce(kafka_brokers, settings.late_topic, [late, forwarded("late", 10, T0), late])

    page = page_of(settings)
    assert page.dlq_reasons == [("invalid_json", 2), ("missing_field:timestamp", 1), ("window_closed", 1)]
    assert page.late_windows == [("2024-03-01T00:00:00Z", 2)]
    assert [read.records for read in page.reads] == [0, 5, 3]  # what was read, repeats included


def test_a_record_whose_kafka_key_and_value_disagree_or_whose_count_is_not_a_count_is_unreadable(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    """The key is a function of window, slice and values: a record under another key cannot add to them."""
    settings = settings_for(kafka_brokers, topic_factory)
    key, value = metric_record(0, ("u1", "1.1.1.1"), 3)
    other_key, _ = metric_record(1, ("u1", "1.1.1.1"), 3)
    _, boolean = metric_record(2, ("u2", "1.1.1.1"), 1)
    bool_key, _ = metric_record(2, ("u2", "1.1.1.1"), 1)
    produce(
        kafka_brokers,
        settings.output_topic,
        [
            (0, key, value),
            (0, other_key, value),  # names minute 1, holds minute 0's record
            (0, bool_key, boolean.replace(b'"count":1', b'"count":true')),
        ],
    )

    page = page_of(settings)
    assert page.series == {SPEC.name: [WindowPoint(START, 1, 3)]}
    assert page.unreadable == 2


def test_the_larger_count_wins_when_a_key_has_records_in_two_partitions(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    """Partitions added to login-metrics move a key; counts only grow, so the larger is the later revision."""
    settings = settings_for(kafka_brokers, topic_factory, output_partitions=2)
    a_key, a_first = metric_record(0, ("a", "1.1.1.1"), 3)
    _, a_revised = metric_record(0, ("a", "1.1.1.1"), 5)
    b_key, b_first = metric_record(0, ("b", "1.1.1.1"), 2)
    _, b_revised = metric_record(0, ("b", "1.1.1.1"), 4)
    # However the reader interleaves the two partitions, one key's older record comes after its revision.
    produce(
        kafka_brokers,
        settings.output_topic,
        [(0, a_key, a_revised), (0, b_key, b_first), (1, b_key, b_revised), (1, a_key, a_first)],
    )

    page = page_of(settings)
    assert page.series == {SPEC.name: [WindowPoint(START, 2, 9)]}
    assert [(key.values[0], key.total) for key in page.top[SPEC.name]] == [("a", 5), ("b", 4)]


def test_records_of_a_slice_not_in_slices_are_named_on_the_page(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    """SLICES changed since they were written: the report cannot show them, and says how many it left out."""
    settings = settings_for(kafka_brokers, topic_factory)
    locale = parse_slices("locale:1")[0]
    key, value, _ = encode_metric(WindowCount(T0, T0 + 60, locale, ("en",), 4))
    shown_key, shown = metric_record(0, ("u1", "1.1.1.1"), 3)
    produce(kafka_brokers, settings.output_topic, [(0, key, value), (0, shown_key, shown)])

    page = page_of(settings)
    assert page.series == {SPEC.name: [WindowPoint(START, 1, 3)]}
    assert page.notes == ["1 login-metrics records of slices not in SLICES are not shown: locale"]


def test_a_revision_after_a_tombstone_is_the_answer(kafka_brokers: str, topic_factory: TopicFactory) -> None:
    """Compaction semantics: a null value deletes the key; a later record for it is the answer again."""
    settings = settings_for(kafka_brokers, topic_factory)
    key, first = metric_record(0, ("u1", "1.1.1.1"), 3)
    _, revised = metric_record(0, ("u1", "1.1.1.1"), 4)
    gone_key, gone = metric_record(1, ("u2", "1.1.1.1"), 9)
    produce(
        kafka_brokers,
        settings.output_topic,
        [(0, key, first), (0, key, None), (0, key, revised), (0, gone_key, gone), (0, gone_key, None)],
    )

    page = page_of(settings)
    assert page.series == {SPEC.name: [WindowPoint(START, 1, 4)]}
    assert page.unreadable == 0
    assert START + timedelta(minutes=1) not in [p.window_start for p in page.series[SPEC.name]]


def test_the_page_says_which_pairs_the_distinct_devices_come_from(
    kafka_brokers: str, topic_factory: TopicFactory
) -> None:
    """With a minimum of 1 every pair is in the slice: the page must not call them repeated logins."""
    devices = parse_slices("user_id+device_id:1")[0]
    settings = dataclasses.replace(settings_for(kafka_brokers, topic_factory), slices=(devices,))
    key, value, _ = encode_metric(WindowCount(T0, T0 + 60, devices, ("u1", "d1"), 1))
    produce(kafka_brokers, settings.output_topic, [(0, key, value)])

    markup = render(page_of(settings))
    assert "repeated logins" not in markup and "repeats within a window" not in markup
    assert "pairs with a count of at least 1 in a window" in markup
