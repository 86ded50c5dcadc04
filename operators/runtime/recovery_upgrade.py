"""Carry a recovery directory written before the composite operators over to today's step ids.

Bytewax keys each step's state by its step id and stores it as a pickle that
names its class by module path. Both changed when the input and window steps
moved into `read_login_events` and `count_slices_in_windows` and the modules
were grouped by role. Bytewax ignores state under an id the flow does not
have, so an old directory would otherwise resume as if it were empty.

The upgrade renames the two steps' rows and re-pickles their states under
the new class paths, one transaction per partition file. It must run while no
process has the store open: `scripts/init-recovery` runs it under the lock
every process takes before it starts, and a directory is only ever written
to when it still holds old state, so once upgraded it is only read (from a
private copy). Run by hand as ``python -m operators.runtime.recovery_upgrade DIR``.
"""

import io
import logging
import pickle
import sqlite3
import sys
from pathlib import Path
from typing import Any

from operators.runtime.logs import kv
from operators.runtime.resume import STEP_RENAMES, legacy_state_step

logger = logging.getLogger(__name__)

MODULE_RENAMES = {
    "operators.partition": "operators.pure.partition",
    "operators.windowing": "operators.pure.window_shard",
}
"""Where the classes those steps pickled (PartitionState, ShardSnapshot) live now."""

PICKLE_PROTOCOL = 4
"""What Bytewax's own snapshots use (``\\x80\\x04``), so upgraded rows look like fresh ones."""


class _RenamingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MODULE_RENAMES.get(module, module), name)


def upgraded_state(blob: bytes | None) -> bytes | None:
    """One snapshot re-pickled with today's class paths (None stays None: a discarded state)."""
    if blob is None:
        return None
    state = _RenamingUnpickler(io.BytesIO(blob)).load()
    return pickle.dumps(state, protocol=PICKLE_PROTOCOL)


def upgrade_partition_file(path: Path) -> int:
    """Upgrade one recovery partition in a single transaction; returns the rows moved."""
    moved = 0
    connection = sqlite3.connect(path)
    try:
        with connection:
            for old, new in STEP_RENAMES.items():
                rows = connection.execute(
                    "SELECT state_key, snap_epoch, ser_change FROM snaps WHERE step_id = ?", (old,)
                ).fetchall()
                for state_key, epoch, blob in rows:
                    connection.execute(
                        "UPDATE snaps SET step_id = ?, ser_change = ? "
                        "WHERE step_id = ? AND state_key = ? AND snap_epoch = ?",
                        (new, upgraded_state(blob), old, state_key, epoch),
                    )
                moved += len(rows)
    finally:
        connection.close()
    return moved


def upgrade_recovery_directory(directory: Path) -> int:
    """Upgrade every partition of `directory` that still holds old state; returns the rows moved."""
    if legacy_state_step(directory) is None:
        return 0
    moved = 0
    for path in sorted(directory.glob("*.sqlite3")):
        rows = upgrade_partition_file(path)
        moved += rows
        logger.info("recovery partition upgraded %s", kv(path=path, rows=rows))
    return moved


def main(argv: list[str]) -> int:
    """``python -m operators.runtime.recovery_upgrade DIR``: upgrade DIR if it holds old state."""
    if len(argv) != 1:
        sys.stderr.write("usage: python -m operators.runtime.recovery_upgrade RECOVERY_DIR\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    moved = upgrade_recovery_directory(Path(argv[0]))
    if moved:
        sys.stderr.write(f"recovery-upgrade: {moved} snapshot rows moved to today's step ids in {argv[0]}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
