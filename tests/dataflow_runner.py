"""Run the real `python -m bytewax.run dataflow` as subprocesses, and never leak them."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devkit.broker import free_ports

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Finished:
    returncode: int
    stderr: str


BYTEWAX_RUN = (sys.executable, "-m", "bytewax.run", "dataflow")
RECOVERY_PARTITIONS = 4


def init_recovery(directory: Path, partitions: int = RECOVERY_PARTITIONS) -> list[str]:
    """Create a Bytewax recovery store; return the `bytewax.run` arguments that use it.

    Snapshot every second so short runs have something to resume from; keep
    no extra backups, nothing here copies the directory elsewhere.
    """
    directory.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(directory), str(partitions)], check=True)
    return ["-r", str(directory), "-s", "1", "-b", "0"]


RUN_SCRIPT = (str(REPO / "scripts" / "run-dataflow"),)


def run_script_env(recovery_dir: Path, partitions: int, snapshot_seconds: int | None = None) -> dict[str, str]:
    """The settings `scripts/run-dataflow` reads, with this interpreter (its default is .venv's)."""
    env = {"RECOVERY_DIR": str(recovery_dir), "RECOVERY_PARTITIONS": str(partitions), "PYTHON": sys.executable}
    if snapshot_seconds is not None:
        env["SNAPSHOT_INTERVAL_SECONDS"] = str(snapshot_seconds)
    return env


def _start(command: Sequence[str], args: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    try:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*command, *args],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        handle.close()


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the process group and reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class DataflowCluster:
    """One dataflow run as `processes` processes of `workers` workers each."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        processes: int = 1,
        workers: int = 1,
        extra_args: Sequence[str] = (),
        command: Sequence[str] = BYTEWAX_RUN,
        process_env: Sequence[Mapping[str, str]] = (),
    ) -> None:
        self.env = dict(env)
        # Settings for single processes, on top of `env`: process i gets process_env[i].
        self.process_env = list(process_env)
        self.log_dir = log_dir
        self.processes = processes
        self.workers = workers
        self.extra_args = list(extra_args)
        self.command = list(command)
        self.running: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self) -> "DataflowCluster":
        args = ["-w", str(self.workers), *self.extra_args]
        if self.processes == 1:
            plan = [args]
        else:
            addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(self.processes))
            plan = [[*args, "-i", str(index), "-a", addresses] for index in range(self.processes)]
        for index, process_args in enumerate(plan):
            log = self.log_dir / f"dataflow-{index}-{time.monotonic_ns()}.log"
            self.logs.append(log)
            env = {**self.env, **(self.process_env[index] if index < len(self.process_env) else {})}
            self.running.append(_start(self.command, process_args, env, log))
        return self

    def wait(self, timeout: float) -> list[Finished]:
        """Wait for every process to exit; kill all of them at the deadline."""
        deadline = time.monotonic() + timeout
        try:
            for process in self.running:
                remaining = max(0.1, deadline - time.monotonic())
                process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"dataflow did not finish in {timeout}s:\n{self.tail()}") from None
        return [
            Finished(process.returncode, log.read_text(errors="replace"))
            for process, log in zip(self.running, self.logs, strict=True)
        ]

    def any_exited(self) -> bool:
        return any(process.poll() is not None for process in self.running)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        for process in self.running:
            stop(process, sig)

    def tail(self, lines: int = 40) -> str:
        return "\n".join("\n".join(log.read_text(errors="replace").splitlines()[-lines:]) for log in self.logs)

    def __enter__(self) -> "DataflowCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
