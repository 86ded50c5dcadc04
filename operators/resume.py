"""Whether this run of the dataflow resumes from recovery state, as every process can tell.

A partition without resume state is either part of a fresh dataflow (start
at START_OFFSET) or new to a resumed one (a partition added to the topic:
start at its beginning, or its backlog is skipped). One process cannot tell
the two apart from its own partitions: in a cluster, the process that owns
only the new partition has no resumed partition at all. The recovery store
is what every process shares, so it is asked: a committed epoch in any of
its partition files means this run resumes.

Bytewax passes the recovery directory to `bytewax.run` as `-r` or
`BYTEWAX_RECOVERY_DIRECTORY`; no other API exposes it.
"""

import logging
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from operators.logs import kv

logger = logging.getLogger(__name__)


def recovery_directory(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> Path | None:
    """The recovery directory this `bytewax.run` process was given, if any."""
    args = list(sys.argv if argv is None else argv)
    for index, arg in enumerate(args):
        if arg in ("-r", "--recovery-directory") and index + 1 < len(args):
            return Path(args[index + 1])
        if arg.startswith("--recovery-directory="):
            return Path(arg.split("=", 1)[1])
    given = (os.environ if env is None else env).get("BYTEWAX_RECOVERY_DIRECTORY")
    return Path(given) if given else None


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


def dataflow_is_resuming() -> bool:
    """Whether this run resumes from recovery state (False without recovery)."""
    directory = recovery_directory()
    return directory is not None and has_committed_epoch(directory)
