"""What a shard emits: window counts for login-metrics, and counts it could not merge any more."""

from typing import NamedTuple

from operators.pure.shards import KeyValues
from operators.pure.slices import SliceSpec

WINDOW_CLOSED = "window_closed"
"""The DLQ reason of a count for a window every partition's log had passed (a partition added later)."""

WINDOW_LET_GO = "window_let_go"
"""The DLQ reason of a count for a window let go to keep a shard within MAX_WINDOWS_PER_SHARD."""


class WindowCount(NamedTuple):
    """The count of one key of one slice in one closed window."""

    window_start: int
    window_end: int
    slice: SliceSpec
    values: KeyValues
    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose: the record field is "count"


class UncountedCount(NamedTuple):
    """A count that reached its shard after the shard let go of its window, and why it had."""

    window_start: int
    window_end: int
    slice: SliceSpec
    values: KeyValues
    count: int  # type: ignore[assignment]  # as in WindowCount
    reason: str = WINDOW_CLOSED


class ClosedCounts(NamedTuple):
    """What one shard emitted for one batch of updates, as one item.

    A closing window can emit hundreds of thousands of counts; one item per
    batch keeps the runtime's per-item work (exchange, routing) off each count.
    """

    counts: list[WindowCount]
    uncounted: list[UncountedCount]
    # Windows this batch let go of to stay within MAX_WINDOWS_PER_SHARD.
    let_go: int = 0


def merge_counts(into: dict[KeyValues, int], counts: dict[KeyValues, int]) -> None:
    """Add `counts` to `into`, key by key.

    Most keys of the user slices are new to the window, so the bulk goes
    through C-level `dict.update`; only keys present on both sides are summed
    in Python.
    """
    both = into.keys() & counts.keys()
    if both:
        summed = {values: into[values] + counts[values] for values in both}
        into.update(counts)
        into.update(summed)
    else:
        into.update(counts)
