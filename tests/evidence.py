"""What a dataflow run says about itself: its log lines and its recovery store.

Tests use these to check claims the output topics alone cannot show: that a
resumed run started where its snapshot left off, that every partition was
read to its end, that no ERROR was logged.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from operators.runtime.resume import query_recovery_partitions
from tests.dataflow_runner import DataflowCluster

_KV = re.compile(r"(\w+)=(\S+)")
# The kv log format: "<date> <time>,<ms> LEVEL logger pid=N message".
_ERROR_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d+ (ERROR|CRITICAL) ", re.MULTILINE)


def _fields(line: str, marker: str) -> dict[str, str]:
    return dict(_KV.findall(line.split(marker, 1)[1]))


@dataclass(frozen=True)
class PartitionStart:
    """One `reading partition ...` line: where the source began a partition."""

    partition: int
    start_offset: int
    high: int
    resumed: bool


def log_texts(logs: Iterable[Path]) -> list[str]:
    return [path.read_text(errors="replace") for path in logs]


def partition_starts(texts: Iterable[str]) -> dict[int, PartitionStart]:
    """Every partition's start line across the logs of one run; each partition must start once."""
    starts: dict[int, PartitionStart] = {}
    for text in texts:
        for line in text.splitlines():
            if " reading partition " not in line:
                continue
            fields = _fields(line, " reading partition ")
            start = PartitionStart(
                int(fields["partition"]), int(fields["start_offset"]), int(fields["high"]), fields["resumed"] == "True"
            )
            assert start.partition not in starts, f"partition {start.partition} started twice in one run"
            starts[start.partition] = start
    return starts


def read_to_end(texts: Iterable[str]) -> dict[int, int]:
    """Partition -> next_offset from the `partition read to its end` lines of a bounded run."""
    ends: dict[int, int] = {}
    for text in texts:
        for line in text.splitlines():
            if " partition read to its end " in line:
                fields = _fields(line, " partition read to its end ")
                ends[int(fields["partition"])] = int(fields["next_offset"])
    return ends


def error_lines(texts: Iterable[str]) -> list[str]:
    """Log lines at ERROR or CRITICAL level (kv log format)."""
    return [match.string[match.start() :].split("\n", 1)[0] for text in texts for match in _ERROR_LINE.finditer(text)]


def committed_epoch(recovery_dir: Path) -> int:
    """The epoch every recovery partition has committed (0 before the first commit).

    A resume starts from the oldest partition's latest commit, so that is the
    most a crash right now could resume from.
    """
    rows = query_recovery_partitions(recovery_dir, "SELECT MAX(commit_epoch) FROM commits")
    assert rows, f"no recovery partitions in {recovery_dir}"
    return min((row[0] or 0) if row is not None else 0 for row in rows)


def assert_resumed(cluster: DataflowCluster, inputs: dict[int, list], nothing_left: bool = False) -> None:
    """The run started every partition from its snapshot, so it read less than the input holds.

    A run that ignored its snapshots and read from offset 0 again would read
    all of it; with `nothing_left` (the input was finished before), it must read nothing.
    """
    starts = partition_starts(log_texts(cluster.logs))
    assert sorted(starts) == sorted(inputs), f"not every partition logged its start: {starts}"
    assert all(start.resumed for start in starts.values()), f"a partition did not resume: {starts}"
    assert all(start.high == len(inputs[p]) for p, start in starts.items()), starts
    to_read = sum(start.high - start.start_offset for start in starts.values())
    total = sum(map(len, inputs.values()))
    if nothing_left:
        assert to_read == 0, f"the rerun read {to_read} message(s) again: {starts}"
    else:
        assert to_read < total, f"the resumed run read all {total} messages again: {starts}"


def finish_resumed(
    env: dict[str, str],
    log_dir: Path,
    layout: tuple[int, int],
    recovery_args: list[str],
    inputs: dict[int, list],
    timeout: float,
) -> DataflowCluster:
    """Run the last (processes, workers) layout of a crash test to the input's end; it must resume and succeed."""
    processes, workers = layout
    with DataflowCluster(env, log_dir, processes, workers, recovery_args) as cluster:
        results = cluster.wait(timeout)
    for finished in results:
        assert finished.returncode == 0, finished.stderr[-3000:]
    assert_resumed(cluster, inputs)
    return cluster
