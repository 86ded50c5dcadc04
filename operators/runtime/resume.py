"""Whether this run of the dataflow resumes from recovery state, as every process can tell.

A partition without resume state is either part of a fresh dataflow (start
at START_OFFSET) or new to a resumed one (a partition added to the topic:
start at its beginning, or its backlog is skipped). One process cannot tell
the two apart from its own partitions: in a cluster, the process that owns
only the new partition has no resumed partition at all. The recovery store
is what every process shares, so it is asked: a committed epoch in any of
its partition files means this run resumes.

The directory is the one `bytewax.run` was given (`operators.runtime.run_args`);
no other API exposes it. One private copy of each partition file answers
every question a start asks (`stored_state`).

Bytewax keys each step's state by its step id and ignores state under ids
the flow does not have. Before the composite operators, the input and the
window steps had other ids; resuming such a directory would quietly start
both from nothing (every partition from its beginning, every window empty).
That is refused instead, with a line saying what to do: upgrade the
directory (`operators.runtime.recovery_upgrade`, which scripts/init-recovery
runs before every start).
"""

import logging
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from operators.runtime.logs import kv

logger = logging.getLogger(__name__)


def query_recovery_partitions(directory: Path, sql: str) -> list[tuple[Any, ...] | None]:
    """The first row `sql` returns in each recovery partition of `directory` (None where unreadable).

    Each partition is read from a private copy of its database and WAL
    files. Bytewax keeps them open in WAL mode, and a second connection to
    the live files would map their shared-memory index, which Bytewax may
    truncate under it: the process then dies of SIGBUS. A copy taken while
    a frame is being written only loses that frame (SQLite checks each
    frame's checksum), which cannot hide an earlier commit.
    """
    rows: list[tuple[Any, ...] | None] = []
    with tempfile.TemporaryDirectory(prefix="loginflow-recovery-") as scratch:
        for path in sorted(directory.glob("*.sqlite3")):
            copy = Path(scratch) / path.name
            try:
                shutil.copyfile(path, copy)
                wal = path.with_name(path.name + "-wal")
                if wal.exists():
                    shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
                connection = sqlite3.connect(copy)
                try:
                    rows.append(connection.execute(sql).fetchone())
                finally:
                    connection.close()
            except (OSError, sqlite3.Error) as exc:
                logger.warning("cannot read recovery partition %s", kv(path=path, reason=exc))
                rows.append(None)
    return rows


def has_committed_epoch(directory: Path) -> bool:
    """Whether any recovery partition in `directory` holds a committed epoch."""
    return any(row is not None for row in query_recovery_partitions(directory, "SELECT 1 FROM commits LIMIT 1"))


STEP_RENAMES = {
    "loginflow.read_and_parse_user_login": "loginflow.read_user_login.read_and_parse",
    "loginflow.close_windows": "loginflow.count_slices_in_windows.close_windows",
}
"""Where loginflow kept its input and window state before the composite operators -> where now."""


class IncompatibleRecoveryError(RuntimeError):
    """The recovery directory holds state this version of the flow would silently ignore."""


_LEGACY_STEP = "SELECT step_id FROM snaps WHERE step_id IN ({}) LIMIT 1".format(  # noqa: S608 - constants
    ", ".join(f"'{step}'" for step in STEP_RENAMES)
)


def _first_legacy_step(rows: list[tuple[Any, ...] | None]) -> str | None:
    return next((row[0] for row in rows if row is not None and row[0] is not None), None)


def legacy_state_step(directory: Path) -> str | None:
    """A step id of `directory`'s state that this flow no longer has, or None."""
    return _first_legacy_step(query_recovery_partitions(directory, _LEGACY_STEP))


INPUT_STEP = "loginflow.read_user_login.read_and_parse"
"""The step whose state keys are the input topic's partition ids."""

_STORED_PARTITIONS = (
    f"SELECT MAX(CAST(state_key AS INTEGER)) FROM snaps WHERE step_id = '{INPUT_STEP}' "  # noqa: S608 - a constant
    "AND ser_change IS NOT NULL"
)


@dataclass(frozen=True)
class StoredState:
    """What the recovery store says about this start."""

    resuming: bool
    """A committed epoch in any partition: this run resumes."""
    input_partitions: int
    """How many input partitions it holds offsets for (0 for none).

    Bytewax routes stored state to the partitions the source lists, and
    fails deep in its runtime when one has none: a topic with fewer
    partitions than its recovery state must be caught before that.
    """


NOTHING_STORED = StoredState(resuming=False, input_partitions=0)


def stored_state(directory: Path | None) -> StoredState:
    """What `directory` holds for this start, from one copy of each partition (nothing without recovery).

    Raises `IncompatibleRecoveryError` for a directory written before the
    step ids changed, rather than resume it as if it were empty.
    """
    if directory is None:
        return NOTHING_STORED
    rows = query_recovery_partitions(
        directory, f"SELECT ({_LEGACY_STEP}), EXISTS (SELECT 1 FROM commits), ({_STORED_PARTITIONS})"
    )
    legacy = _first_legacy_step(rows)
    if legacy is not None:
        msg = (
            f"BYTEWAX_RECOVERY_DIRECTORY='{directory}' holds state of step '{legacy}', written by a loginflow "
            "from before its composite operators, which this version would ignore and start from nothing; "
            f"with every process stopped, run: python -m operators.runtime.recovery_upgrade {directory} "
            "(scripts/run-dataflow and scripts/init-recovery do it before starting)"
        )
        raise IncompatibleRecoveryError(msg)
    highest = [row[2] for row in rows if row is not None and row[2] is not None]
    return StoredState(
        resuming=any(row is not None and row[1] for row in rows), input_partitions=max(highest, default=-1) + 1
    )
