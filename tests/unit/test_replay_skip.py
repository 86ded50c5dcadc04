"""What a resumed exactly-once writer skips: counts by key, copies by multiplicity, foreign records never."""

import pytest

from operators.kafka.transactional_writer import GuaranteeChangedError, _resume_parts
from operators.pure.replay_skip import SKIP, ReplaySkip, identity, metric_count, with_count


def metric(key: str, count: int) -> tuple[bytes, bytes, list]:
    return key.encode(), b'{"window_start":"x","key":{"user_id":"u"},"count":%d}' % count, []


def forwarded(offset: int, partition: int = 0, topic: bytes = b"in", error: bytes = b"invalid_json") -> tuple:
    headers = [
        ("error", error),
        ("source_topic", topic),
        ("source_partition", str(partition).encode()),
        ("source_offset", str(offset).encode()),
    ]
    return b"k", b"v%d" % offset, headers


def closed_window(count: int) -> tuple[bytes, bytes, list]:
    key, value, _ = metric("w", count)
    return key, value, [("error", b"window_closed"), ("source_topic", b"in")]


def skips(skip: ReplaySkip, record: tuple) -> bool:
    return skip.admit(*record) is SKIP


def test_metric_count_reads_the_last_field() -> None:
    assert metric_count(metric("a", 42)[1]) == 42
    assert metric_count(b"1") is None
    assert metric_count(b'{"count":x}') is None


def test_a_replayed_lower_count_is_never_written_over_a_committed_higher_one() -> None:
    skip = ReplaySkip(by_count=True, source_topic="in")
    skip.add_all([metric("a", 3), metric("a", 5)])
    # The replay closed the window earlier (4), then revised it to the committed 5, then grew.
    assert skips(skip, metric("a", 4))
    assert skips(skip, metric("a", 5))
    assert not skips(skip, metric("a", 6))
    assert not skip


def test_a_replay_that_skips_the_committed_count_writes_the_next_higher_one() -> None:
    skip = ReplaySkip(by_count=True, source_topic="in")
    skip.add_committed(*metric("a", 5))
    assert not skips(skip, metric("a", 7))
    assert not skips(skip, metric("a", 2)), "after the replay passed the committed count, counts are new"


def test_identical_records_are_skipped_as_often_as_they_were_committed() -> None:
    skip = ReplaySkip(by_count=False, source_topic="in")
    skip.add_all([closed_window(1), closed_window(1), forwarded(3), forwarded(3)])
    assert [skips(skip, closed_window(1)) for _ in range(3)] == [True, True, False]
    assert [skips(skip, forwarded(3)) for _ in range(3)] == [True, True, False]


def test_uncounted_counts_regrouped_by_the_replay_are_written_only_beyond_what_was_committed() -> None:
    skip = ReplaySkip(by_count=False, source_topic="in")
    # The first run read one event, then two, at the head of the log: two records, 3 in all.
    skip.add_all([closed_window(1), closed_window(2)])
    # The replay finds all of them, and one more, in fewer batches.
    assert skips(skip, closed_window(2))
    assert skip.admit(*closed_window(3)) == closed_window(2)[1]
    assert skip.admit(*closed_window(1)) == closed_window(1)[1]
    assert not skip


def test_with_count_replaces_only_the_count() -> None:
    assert with_count(metric("a", 12)[1], 7) == metric("a", 7)[1]


def test_records_of_another_dataflow_on_a_shared_topic_are_not_kept() -> None:
    skip = ReplaySkip(by_count=False, source_topic="in")
    skip.add_all([forwarded(1, topic=b"other-input"), forwarded(2, topic=b"other-input")])
    assert not skip
    assert skip.remainder() == ((), (), ())


def test_what_no_replay_can_produce_again_is_forgotten_at_the_next_snapshot() -> None:
    skip = ReplaySkip(by_count=False, source_topic="in")
    # Committed after the snapshot: offsets 10, 11 of partition 0, and 10 of partition 1.
    skip.add_all([forwarded(10), forwarded(11), forwarded(10, partition=1)])
    # The replay decides offset 10 of partition 0 differently, then reaches offset 12.
    assert not skips(skip, forwarded(10, error=b"other"))
    assert skips(skip, forwarded(11))
    assert not skips(skip, forwarded(12))
    copies, counts, _uncounted = skip.remainder()
    assert [found for found, _n in copies] == [identity(*forwarded(10, partition=1))]
    assert counts == ()


def test_the_remainder_resumes_into_an_equal_skip_state() -> None:
    for by_count, records in [(True, [metric("a", 5), metric("b", 2)]), (False, [closed_window(1), forwarded(1)])]:
        skip = ReplaySkip(by_count=by_count, source_topic="in")
        skip.add_all(records)
        resumed = ReplaySkip(by_count=by_count, source_topic="in", remainder=skip.remainder())
        assert resumed.remainder() == skip.remainder()
        assert len(resumed) == 2


# --- states of older versions and of the other guarantee ----------------------


def resumed(state: object, *, by_count: bool, read_back: list[tuple] | None = None) -> ReplaySkip:
    """What `TransactionalWriter.__init__` builds from a stored state and its read-back."""
    _offset, remainder, _partitions, legacy = _resume_parts(state)  # type: ignore[arg-type]
    skip = ReplaySkip(by_count=by_count, source_topic="in", remainder=remainder)
    skip.add_all(legacy)
    skip.add_all(read_back or [])
    return skip


def test_an_older_versions_identities_follow_the_count_rules() -> None:
    # (offset, identities) from before this version, written mid-replay: K:5 committed, not yet replayed.
    skip = resumed((10, frozenset({identity(*metric("K", 5))})), by_count=True)
    assert skips(skip, metric("K", 4)), "a count lower than the committed 5 must not be written"
    dlq = resumed((10, frozenset({identity(*closed_window(2))})), by_count=False, read_back=[closed_window(1)])
    assert [skips(dlq, closed_window(2)), skips(dlq, closed_window(1))] == [True, True]


def test_an_at_least_once_state_resumed_with_exactly_once_names_the_guarantee() -> None:
    with pytest.raises(GuaranteeChangedError, match="^PROCESSING_GUARANTEE: recovery state was written with at-least"):
        _resume_parts(("at-least-once", 3))  # type: ignore[arg-type]  # what an at-least-once partition stores
