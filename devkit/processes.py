"""Child processes a dev tool starts and must stop, whatever makes it stop.

Each child runs in its own session and process group, so a terminal's
Ctrl-C reaches only the parent, which then stops every group itself:
SIGINT first (so a generator flushes), then SIGTERM, then SIGKILL, each with
a deadline. Stop signals are held back while a child is being started, so no
child is ever started without being recorded.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

STOP_GRACE = 8.0  # seconds a child gets after SIGINT before SIGTERM, then SIGKILL


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP asked the demo to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """Stop signals: raise while running, hurry the shutdown once stopping.

    Raising is deferred inside `critical()` so a signal never lands between
    starting a child and recording it, which would orphan the child.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopping = False
        self.hurry = False
        self._depth = 0
        self._pending = False

    def install(self) -> None:
        """Handle SIGINT, SIGTERM and SIGHUP (a closed terminal must not orphan the children).

        Caught (unlike ignored) signals reset to the default in an exec'd child,
        so children obey SIGINT even when the demo was started with SIGINT
        ignored, as a non-interactive shell does to its background jobs.
        """
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = self.signum or signum
        if self.stopping:
            self.hurry = True
            log.warning("%s while stopping: killing what is left now", signal.Signals(signum).name)
        elif self._depth:
            self._pending = True
        else:
            raise Interrupted(signum)

    @contextmanager
    def critical(self) -> Iterator[None]:
        """Hold back the Interrupted exception until the block ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if not self._depth and self._pending and not self.stopping and self.signum is not None:
            self._pending = False
            raise Interrupted(self.signum)


class Children:
    """The long-running child processes, each its own session and process group."""

    def __init__(self, signals: StopSignals, env: Mapping[str, str], *, log_dir: Path, cwd: Path) -> None:
        """Start children in `cwd` with `env`, logging to `log_dir`; `signals` guards each start."""
        self.signals = signals
        self.env = dict(env)
        self.log_dir = log_dir
        self.cwd = cwd
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, argv: list[str]) -> None:
        """Start `argv` with output to `<log_dir>/<name>.log`."""
        path = self.log_dir / f"{name}.log"
        with path.open("wb") as out, self.signals.critical():
            # Own session: the terminal's Ctrl-C reaches only the demo, which then
            # stops every child itself (SIGINT first, so the generator flushes).
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.procs[name] = (proc, path)
        log.info("started %s (pid %d), log %s", name, proc.pid, path)

    def dead(self) -> str | None:
        """The name of a child that has exited, if any."""
        return next((name for name, (proc, _) in self.procs.items() if proc.poll() is not None), None)

    def tail(self, name: str, lines: int = 15) -> str:
        """The end of a child's log."""
        return "\n".join(self.procs[name][1].read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> None:
        """SIGINT, then SIGTERM, then SIGKILL to every group, with deadlines; reaps everything."""
        for sig, grace in ((signal.SIGINT, STOP_GRACE), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            live = [proc for proc, _ in self.procs.values() if proc.poll() is None]
            if not live:
                break
            if sig != signal.SIGINT:
                log.warning("sending %s to %d children still running", sig.name, len(live))
            for proc in live:
                killpg(proc.pid, sig)
            deadline = time.monotonic() + grace
            while any(p.poll() is None for p in live) and time.monotonic() < deadline and not self.signals.hurry:
                time.sleep(0.05)
        for name, (proc, _) in self.procs.items():
            # Sweep anything the leader left behind in its group (pids are not
            # reused this fast), then reap.
            killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.info("stopped %s (exit %s)", name, proc.returncode)


def killpg(pgid: int, sig: int) -> None:
    """Signal a process group that may already be gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
