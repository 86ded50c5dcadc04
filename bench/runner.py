"""Start contender processes, wait for them with a deadline, and account for their resources.

Each child runs in its own session so a timeout (or the harness being
interrupted) can signal the whole group. Children are reaped with
`os.wait4`, which gives that child's CPU time (the interpreter-wide
`RUSAGE_CHILDREN` only sums or maxes over all children so far).

Peak RSS cannot come from the same call: Linux carries a process's
high-water mark across `exec`, so a child forked from this harness (which
holds the whole input in memory) would report the harness's size. Each
command therefore runs under ``/usr/bin/time -f %M``, which forks it from a
small process and reports the child's own peak; without that binary the
harness polls the child's ``VmHWM`` instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POLL_S = 0.05
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GNU_TIME = Path("/usr/bin/time")


@dataclass(frozen=True)
class ProcessOutcome:
    """How one child ended and what it used."""

    returncode: int
    spawned_at: float
    exited_at: float
    peak_rss_kib: int
    cpu_s: float
    log: Path
    timed_out: bool

    @property
    def wall_s(self) -> float:
        """Spawn to exit, start-up and shutdown included."""
        return self.exited_at - self.spawned_at


# Children alive right now, so an interrupted harness can still stop them.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_group(process: subprocess.Popen[bytes], signum: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def kill_all() -> None:
    """SIGKILL every child group still running, and reap it."""
    for pid, process in list(_LIVE.items()):
        _kill_group(process)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        process.returncode = -signal.SIGKILL
        _LIVE.pop(pid, None)


def run(
    commands: Sequence[Sequence[str]],
    env: Mapping[str, str],
    log_dir: Path,
    timeout_s: float,
    cwd: Path = REPO,
    stop_when: Callable[[], bool] | None = None,
) -> list[ProcessOutcome]:
    """Run `commands` side by side until all exit, killing every one at the deadline.

    Once `stop_when()` is true, every child still running gets SIGINT: a clean
    stop for a process that never ends by itself (GNU time ignores SIGINT, so
    its peak RSS is still reported).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[tuple[subprocess.Popen[bytes], float, Path]] = []
    rss_files: dict[int, Path] = {}
    peaks: dict[int, int] = {}
    for index, command in enumerate(commands):
        log = log_dir / f"process-{index}.log"
        rss_file = log_dir / f"process-{index}.maxrss"
        argv = list(command)
        if GNU_TIME.exists():
            argv = [str(GNU_TIME), "-f", "%M", "-o", str(rss_file), *argv]
        with log.open("wb") as handle:
            spawned_at = time.time()
            process = subprocess.Popen(  # noqa: S603 - our own interpreters and modules
                argv,
                cwd=cwd,
                env={**os.environ, **env},
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _LIVE[process.pid] = process
        if GNU_TIME.exists():
            rss_files[process.pid] = rss_file
        started.append((process, spawned_at, log))

    deadline = time.monotonic() + timeout_s
    outcomes: dict[int, ProcessOutcome] = {}
    timed_out = killed = interrupted = False
    while len(outcomes) < len(started):
        for process, spawned_at, log in started:
            if process.pid in outcomes:
                continue
            if process.pid not in rss_files:
                peaks[process.pid] = max(peaks.get(process.pid, 0), _vm_hwm_kib(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid == 0:
                continue
            process.returncode = os.waitstatus_to_exitcode(status)
            _LIVE.pop(process.pid, None)
            reported = rss_files.get(process.pid)
            peak = _reported_kib(reported) if reported else peaks.get(process.pid, 0)
            outcomes[process.pid] = ProcessOutcome(
                process.returncode, spawned_at, time.time(), peak, usage.ru_utime + usage.ru_stime, log, timed_out
            )
        if len(outcomes) < len(started):
            if stop_when is not None and not interrupted and stop_when():
                interrupted = True
                for process, _spawned, _log in started:
                    if process.pid not in outcomes:
                        _kill_group(process, signal.SIGINT)
            # One failed process of a cluster would leave the others waiting for it.
            failed = any(outcome.returncode != 0 for outcome in outcomes.values())
            late = time.monotonic() > deadline
            if (failed or late) and not killed:
                killed, timed_out = True, late
                for process, _spawned, _log in started:
                    if process.pid not in outcomes:
                        _kill_group(process)
            time.sleep(POLL_S)
    return [outcomes[process.pid] for process, _spawned, _log in started]


def _reported_kib(path: Path) -> int:
    """The last number GNU time wrote (it may first note a signal the command died of)."""
    try:
        lines = path.read_text().split()
    except OSError:
        return 0
    numbers = [int(word) for word in lines if word.isdigit()]
    return numbers[-1] if numbers else 0


def _vm_hwm_kib(pid: int) -> int:
    """The process's peak resident set so far, from /proc (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a running process, from /proc (for the broker)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
