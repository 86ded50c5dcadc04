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
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

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


def has_committed_epoch(directory: Path) -> bool:
    """Whether any recovery partition in `directory` holds a committed epoch."""
    for path in sorted(directory.glob("*.sqlite3")):
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                row = connection.execute("SELECT 1 FROM commits LIMIT 1").fetchone()
            finally:
                connection.close()
        except sqlite3.Error as exc:
            logger.warning("cannot read recovery partition %s", kv(path=path, reason=exc))
            continue
        if row is not None:
            return True
    return False


def dataflow_is_resuming() -> bool:
    """Whether this run resumes from recovery state (False without recovery)."""
    directory = recovery_directory()
    return directory is not None and has_committed_epoch(directory)
