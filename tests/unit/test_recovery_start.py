"""A recovery directory more than one host can mount is told from the mount table, before anything is written."""

from pathlib import Path

import pytest

from operators.runtime.recovery_start import (
    Mount,
    SharedRecoveryDirectoryError,
    is_shared,
    mount_of,
    parse_mountinfo,
    prepare_recovery_store,
    refuse_shared_directory,
)
from tests.recovery_store import leftover_rows, store_with_a_leftover_row

# A container's /proc/self/mountinfo (proc(5)): optional fields before `-`, escaped spaces,
# a recovery volume on NFS, one on a local disk, an SMB share, and an sshfs mount.
MOUNTINFO = """\
1041 970 0:200 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
1042 1041 0:202 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1050 1041 0:44 /exports/loginflow /var/lib/loginflow rw,relatime shared:7 master:2 - nfs4 fs1:/exports rw,vers=4.2
1051 1041 8:17 / /data rw,relatime - ext4 /dev/sdb1 rw
1052 1051 0:50 / /data/team\\040share rw,relatime - cifs //fs2/team rw,vers=3.1.1
1053 1041 0:51 / /mnt/remote rw,nosuid,nodev,relatime - fuse.sshfs user@host:/srv rw,user_id=0
1054 1041 0:52 / /mnt/layers rw,relatime - fuse.fuse-overlayfs fuse-overlayfs rw
"""


def test_the_mount_table_is_read_with_its_escapes_and_optional_fields() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert Mount("/var/lib/loginflow", "nfs4") in mounts
    assert Mount("/data/team share", "cifs") in mounts
    assert [mount.point for mount in mounts][:2] == ["/", "/proc"]


@pytest.mark.parametrize(
    ("directory", "fstype"),
    [
        ("/var/lib/loginflow/recovery", "nfs4"),
        ("/var/lib/loginflow", "nfs4"),
        ("/data/recovery", "ext4"),
        ("/data/team share/recovery", "cifs"),
        ("/data/team", "ext4"),
        ("/mnt/remote/r", "fuse.sshfs"),
        ("/srv/recovery", "overlay"),
    ],
)
def test_a_directory_lies_on_the_longest_mount_point_holding_it(directory: str, fstype: str) -> None:
    mount = mount_of(Path(directory), parse_mountinfo(MOUNTINFO))
    assert mount is not None and mount.fstype == fstype


def test_of_mounts_stacked_on_one_point_the_last_listed_is_the_one_seen() -> None:
    stacked = MOUNTINFO + "1060 1051 0:60 / /data rw,relatime - nfs 10.0.0.5:/data rw\n"
    mount = mount_of(Path("/data/recovery"), parse_mountinfo(stacked))
    assert mount == Mount("/data", "nfs")


def test_network_cluster_and_unknown_fuse_filesystems_are_shared_local_ones_are_not() -> None:
    for fstype in ("nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "lustre", "gfs2", "fuse.sshfs", "fuse.gcsfuse"):
        assert is_shared(fstype), fstype
    for fstype in ("ext4", "xfs", "btrfs", "zfs", "overlay", "tmpfs", "fuseblk", "fuse.fuse-overlayfs"):
        assert not is_shared(fstype), fstype


def test_a_directory_on_nfs_is_refused_with_one_line_saying_what_to_do() -> None:
    with pytest.raises(SharedRecoveryDirectoryError) as refused:
        refuse_shared_directory(Path("/var/lib/loginflow/recovery"), MOUNTINFO)
    message = str(refused.value)
    assert "'/var/lib/loginflow/recovery' is on a nfs4 filesystem mounted at /var/lib/loginflow" in message
    assert "Recovery per host" in message and "\n" not in message


def test_a_local_directory_and_a_system_without_a_mount_table_are_accepted() -> None:
    refuse_shared_directory(Path("/data/recovery"), MOUNTINFO)
    refuse_shared_directory(Path("/mnt/layers/recovery"), MOUNTINFO)
    refuse_shared_directory(Path("/var/lib/loginflow/recovery"), None)


NFS_MOUNTINFO = "1050 1041 0:44 / {} rw,relatime shared:7 - nfs4 fs1:/exports rw,vers=4.2\n"


def test_a_directory_on_a_network_filesystem_is_refused_before_anything_is_deleted(tmp_path: Path) -> None:
    recovery = tmp_path / "recovery"
    epoch = store_with_a_leftover_row(recovery)
    with pytest.raises(SharedRecoveryDirectoryError, match="nfs4 filesystem"):
        prepare_recovery_store(recovery, NFS_MOUNTINFO.format(tmp_path.resolve()))
    assert leftover_rows(recovery, epoch) == 1
    # The same store on this host's own filesystem is pruned.
    assert prepare_recovery_store(recovery, None).dropped == 1
    assert leftover_rows(recovery, epoch) == 0
