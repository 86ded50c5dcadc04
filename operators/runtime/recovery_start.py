"""Ready the recovery directory of a `bytewax.run` start: refuse one several hosts can see, then prune.

Bytewax keeps each recovery partition as an SQLite database in WAL mode.
WAL keeps its index in shared memory (the `-shm` file every connection
maps), which only processes of one host share: SQLite's documentation says
WAL does not work over a network filesystem. And every process prunes
every partition it sees before Bytewax opens the store
(`operators.runtime.abandoned_epochs`), so on a directory several hosts
mount, each host's processes would delete rows from files that another
host's process opens, at the same time.

Such a directory stops the start, with one line naming it, its filesystem,
and the layout to use instead: one local volume per host, holding that
host's partitions (docs/operations.md, "Recovery per host"). Stopping rather
than skipping the prune with a warning: the prune is what keeps a second
crash soon after a resume from making the exactly-once sink write an epoch
twice and a shard's counts disagree with its offsets; a start without it
would run with that hole, on a store SQLite cannot keep consistent there.

Whether other hosts can see the directory is told by its filesystem type,
from /proc/self/mountinfo: the mount with the longest mount point holding
the directory's real path (the last one listed, when several are stacked on
one point). A marker file naming the hosts that used the directory would
tell only after a second host had started there, and would need a clock to
tell another host from a pod rescheduled under a new name; the filesystem
type says it before anything is written. Without /proc/self/mountinfo (not
Linux) nothing can be told, and the directory is taken as the host's own.
"""

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from operators.runtime.abandoned_epochs import Pruned, drop_abandoned_snapshots
from operators.runtime.logs import kv

logger = logging.getLogger(__name__)

MOUNTINFO = Path("/proc/self/mountinfo")

SHARED_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "afs",
        "ocfs2",
        "gfs2",
        "orangefs",
    }
)
"""Network and cluster filesystems: mounted by several hosts at once."""

LOCAL_FUSE = frozenset({"fuse.fuse-overlayfs", "fuse.lxcfs", "fuse.squashfuse"})
"""FUSE filesystems known to be one host's; any other `fuse.*` (sshfs, s3fs, gcsfuse, rclone...) counts as shared."""


class SharedRecoveryDirectoryError(RuntimeError):
    """The recovery directory is on a filesystem more than one host can mount."""


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo: where it is mounted and what it is."""

    point: str
    fstype: str


def _unescape(field: str) -> str:
    """Mountinfo writes a space, tab, newline or backslash in a path as a 3-digit octal escape."""
    return re.sub(r"\\([0-7]{3})", lambda code: chr(int(code[1], 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Every mount in `text`, in order; see proc(5): the fields after `-` start with the type."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if len(fields) > separator + 1:
            mounts.append(Mount(_unescape(fields[4]), fields[separator + 1]))
    return mounts


def mount_of(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount `path` (absolute, symlinks resolved) lies on: the longest mount point holding it, the last listed."""
    found: Mount | None = None
    for mount in mounts:
        point = Path(mount.point)
        if (point == path or point in path.parents) and (found is None or len(mount.point) >= len(found.point)):
            found = mount
    return found


def is_shared(fstype: str) -> bool:
    """Whether a filesystem of type `fstype` may be mounted by more than one host."""
    return fstype in SHARED_FILESYSTEMS or (fstype.startswith("fuse.") and fstype not in LOCAL_FUSE)


def read_mountinfo() -> str | None:
    """The mount table of this process, or None where the system has none to read."""
    try:
        return MOUNTINFO.read_text()
    except OSError:
        return None


def refuse_shared_directory(directory: Path, mountinfo: str | None) -> None:
    """Raise `SharedRecoveryDirectoryError` when `directory` lies on a filesystem other hosts can mount."""
    if mountinfo is None:
        logger.debug("no mount table; the recovery directory is taken as this host's %s", kv(directory=directory))
        return
    mount = mount_of(directory.resolve(), parse_mountinfo(mountinfo))
    if mount is None or not is_shared(mount.fstype):
        return
    msg = (
        f"the recovery directory (-r/BYTEWAX_RECOVERY_DIRECTORY) '{directory}' is on a {mount.fstype} filesystem "
        f"mounted at {mount.point}, which more than one host can see: SQLite's WAL, which Bytewax's recovery "
        "partitions use, does not work there, and every process would prune every partition at start. "
        "Give each host its own local volume holding its own partitions (docs/operations.md, Recovery per host)"
    )
    raise SharedRecoveryDirectoryError(msg)


def prepare_recovery_store(directory: Path, mountinfo: str | None) -> Pruned:
    """Refuse a directory several hosts can see, else drop the stopped run's unfinished epochs' snapshots."""
    refuse_shared_directory(directory, mountinfo)
    return drop_abandoned_snapshots(directory)
