"""A shard's resumable state, and what a resume must agree with it on.

`ShardSnapshot` also stays importable from `operators.pure.window_shard`,
the module older recovery stores name in their pickles.
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

from operators.pure.shards import ROUTING_VERSION, ConfigFingerprint, Decisions, WindowCounts, show_setting
from operators.pure.slices import SliceSpec

LEGACY_REVISION_HORIZON_WINDOWS = 8
"""How far behind its closed watermark a shard of an older version still kept windows."""


class ResumeMismatchError(ValueError):
    """The recovery state was written with settings this run cannot continue under."""


class ShardSnapshot(NamedTuple):
    """A shard's resumable state. Immutable once taken."""

    slice_name: str
    window_seconds: int
    buckets: int
    partition_count: int
    # Each partition's watermark, from its log. Progress is not kept: what
    # ran ahead of the log (idle time, the end of a bounded run) belongs to
    # the run that saw it, and a resumed run hears it again from its sources.
    watermarks: dict[int, float]
    closed_through: float
    windows: WindowCounts
    # Snapshots from before routing was versioned unpickle with 1.
    routing: int = 1
    # Emitted windows that may still be revised; None in snapshots from
    # before revisions, whose `watermarks` could hold +inf for finished runs.
    revisable: WindowCounts | None = None
    # Counts for windows ending at or before this come out uncounted, and
    # `window_let_go` up to `cut_through`; None in older snapshots.
    let_go_through: float | None = None
    cut_through: float = -math.inf
    # `Settings.decisions` of the run that wrote it; None in older snapshots.
    decisions: Decisions | None = None


def check_resumable(
    snapshot: ShardSnapshot,
    slices: Sequence[SliceSpec],
    window_seconds: int,
    buckets: int,
    fingerprint: ConfigFingerprint,
) -> None:
    """Raise `ResumeMismatchError` naming the first setting this run may not resume `snapshot` under."""
    # Changing any of these under existing state would strand open windows
    # in shards nobody routes to, or count one key in two shards.
    for name, was, now in (
        ("WINDOW_SECONDS", snapshot.window_seconds, window_seconds),
        ("SHARDS_PER_SLICE", snapshot.buckets, buckets),
    ):
        if was != now:
            msg = f"{name}: recovery state was written with {was}, now {now}; use a new recovery directory"
            raise ResumeMismatchError(msg)
    if snapshot.routing != ROUTING_VERSION:
        msg = (
            f"SHARDS_PER_SLICE: recovery state routes keys to shards by scheme {snapshot.routing}, "
            f"this version by scheme {ROUTING_VERSION}; use a new recovery directory"
        )
        raise ResumeMismatchError(msg)
    if snapshot.slice_name and snapshot.slice_name not in [spec.name for spec in slices]:
        msg = f"SLICES: recovery state holds slice {snapshot.slice_name!r}, which is no longer configured"
        raise ResumeMismatchError(msg)
    _check_decisions(snapshot.decisions, fingerprint)


def _check_decisions(stored: Decisions | None, fingerprint: ConfigFingerprint) -> None:
    if stored is None:
        # Older snapshots did not record them: nothing to hold this run to.
        return
    now = fingerprint.settings()
    for name, was, fixed in stored:
        # A setting this version no longer has cannot be held to.
        if fixed and name in now and now[name] != was:
            msg = (
                f"{name}: recovery state was written with {show_setting(name, was)}, "
                f"now {show_setting(name, now[name])}; a replayed message could be decided twice, "
                "differently: start with the value it was written with, or use a new recovery directory"
            )
            raise ResumeMismatchError(msg)
