"""`make demo`: broker, topics, a live generator and a 2-process dataflow, watched live.

Starts the local broker (unless KAFKA_BROKERS already answers), creates the
topics, runs the dataflow as two Bytewax processes and the event generator in
realtime mode, and shows the latest closed window of every slice until Ctrl-C
or DEMO_SECONDS, then writes the results report of the run's windows
(`.cache/demo/report.html`, see `report`) and prints its path. Everything it
started is stopped on the way out, whatever the reason: children run in their
own sessions and are signalled by process group, from a `finally`.

Environment (besides the dataflow's own settings, passed through):
    DEMO_SECONDS      stop this many seconds after the generator starts
                      (broker start-up not counted) and judge the run  [until Ctrl-C]
    DEMO_RATE         generator events per second                      [200]
    DEMO_KEEP_BROKER  1 = leave a broker the demo started running      [0]
    KAFKA_PORT        port of the local broker                         [9092]
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import KafkaException

from devkit.broker import LocalBroker, broker_reachable, free_ports
from devkit.demo_monitor import Monitor, ensure_topics
from devkit.demo_view import CLEAR_HOME, DemoStats, RecentLog, render_screen, render_status, render_summary
from devkit.processes import Children, Interrupted, StopSignals, killpg
from operators.runtime.settings import ConfigError, Settings
from report.cli import parse_args, write_report
from report.read import ReadError

log = logging.getLogger("demo")

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / ".cache" / "demo"
REPORT = LOG_DIR / "report.html"
PARTITIONS = 3
PROCESSES = 2
REFRESH = 1.0  # seconds between frames of the live view
STATUS_EVERY = 5.0  # seconds between status lines when stdout is not a terminal
READY_TIMEOUT = 60.0  # seconds to wait for the dataflow to open its partitions
LATE_BY = 60.0  # seconds the generator's late events lag behind

# Demo-sized event time. With the production defaults (60 s windows, 10 s of
# allowed lateness) the first window could need up to 70 s to close, more than
# a 60 s demo lasts; 10 s windows with 5 s lateness close within ~15 s.
DEMO_DEFAULTS = {
    "WINDOW_SECONDS": "10",
    "ALLOWED_LATENESS_SECONDS": "5",
    "START_OFFSET": "latest",
    # Exactly-once output becomes visible at each snapshot: commit every 2 s.
    "SNAPSHOT_INTERVAL_SECONDS": "2",
}


class DemoBroker:
    """The demo's broker: KAFKA_BROKERS when it answers, else the local one, stopped only if the demo started it."""

    def __init__(self, env: Mapping[str, str], signals: StopSignals) -> None:
        """Use KAFKA_PORT (and KAFKA_STATE_DIR, via `env`) like the script does."""
        self.env = dict(env)
        self.signals = signals
        # The script's own defaults for the controller port and the state dir.
        self.local = LocalBroker(_port(env), env=self.env)
        self.started = False
        self._up: subprocess.Popen[bytes] | None = None
        self._log = LOG_DIR / "kafka.log"

    def ensure(self) -> str:
        """Bootstrap servers of a broker that answers, starting the local one if needed."""
        given = self.env.get("KAFKA_BROKERS")
        if given:
            if broker_reachable(given, Settings.from_env(self.env).kafka_props):
                log.info("using KAFKA_BROKERS=%s (no local broker started)", given)
                return given
            log.warning("KAFKA_BROKERS=%s does not answer; starting the local broker instead", given)
        local = self.local.bootstrap
        if broker_reachable(local):
            log.info("a broker already answers on %s; using it and leaving it running", local)
            return local
        log.info("starting the local broker on %s (scripts/kafka up, log %s)", local, self._log)
        with self._log.open("ab") as out, self.signals.critical():
            self.started = True
            self._up = self.local.spawn("up", out)
        if self._up.wait() != 0:
            msg = f"scripts/kafka up failed:\n{_tail(self._log)}"
            raise RuntimeError(msg)
        log.info("%s", _tail(self._log, 1))
        return local

    def stop(self) -> None:
        """Stop the broker if this demo started it, unless DEMO_KEEP_BROKER is set."""
        if not self.started:
            return
        if self._up is not None and self._up.poll() is None:
            # Interrupted during `up`: let it finish (it has its own timeout) so `down` finds the pid.
            log.info("waiting for scripts/kafka up to finish before stopping the broker")
            while self._up.poll() is None and not self.signals.hurry:
                time.sleep(0.1)
            if self._up.poll() is None:
                killpg(self._up.pid, signal.SIGKILL)
                self._up.wait()
        port = self.local.port
        if _truthy(self.env.get("DEMO_KEEP_BROKER", "")):
            how = "scripts/kafka down" if port == 9092 else f"KAFKA_PORT={port} scripts/kafka down"
            log.info("broker left running on 127.0.0.1:%s (DEMO_KEEP_BROKER); stop it with: %s", port, how)
            return
        with self._log.open("ab") as out:
            code = self.local.spawn("down", out).wait()
        if code == 0:
            log.info("stopped the local broker (set DEMO_KEEP_BROKER=1 to keep it running between demos)")
        else:
            log.error("scripts/kafka down failed (exit %d), see %s", code, self._log)


def _port(env: Mapping[str, str]) -> int:
    text = env.get("KAFKA_PORT", "9092").strip()
    if not (text.isdigit() and 1 <= int(text) <= 65535):
        sys.exit(f"demo: KAFKA_PORT must be a TCP port number, got {text!r}")
    return int(text)


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _truthy(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def wait_for_readers(children: Children, partitions: int) -> None:
    """Wait until the dataflow opened every input partition, so START_OFFSET=latest misses no event."""
    # The INFO "reading partition" log line is the only outside sign of it;
    # go on with a warning if it does not show up in time.
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if children.dead():
            return
        logs = [path.read_text(errors="replace") for _, path in children.procs.values()]
        if sum(text.count("reading partition") for text in logs) >= partitions:
            return
        time.sleep(0.2)
    log.warning("dataflow did not report all %d partitions open within %.0f s; going on", partitions, READY_TIMEOUT)


def setup_logging() -> tuple[logging.Handler, RecentLog]:
    """Log to stderr and `LOG_DIR/demo.log`; returns the stderr handler and the view's handler."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    to_stderr = logging.StreamHandler()
    to_file = logging.FileHandler(LOG_DIR / "demo.log", mode="w")
    recent = RecentLog()
    for handler in (to_stderr, to_file, recent):
        handler.setFormatter(fmt)
    recent.setLevel(logging.CRITICAL + 1)  # switched on while the live view owns the screen
    logging.basicConfig(level=logging.INFO, handlers=[to_stderr, to_file, recent], force=True)
    return to_stderr, recent


def _number(env: Mapping[str, str], name: str, default: float | None) -> float | None:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        sys.exit(f"demo: {name} must be a positive number, got {text!r}")
    return value


class Demo:
    """One demo run: start everything, show it, stop everything, judge it."""

    def __init__(self, env: dict[str, str], signals: StopSignals, handlers: tuple[logging.Handler, RecentLog]) -> None:
        """Take the demo's environment (settings already checked) and its log handlers."""
        self.env = env
        self.settings = Settings.from_env(env)
        self.signals = signals
        self.to_stderr, self.recent = handlers
        self.seconds = _number(env, "DEMO_SECONDS", None)
        self.rate = _number(env, "DEMO_RATE", 200.0)
        self.tty = sys.stdout.isatty()
        self.broker = DemoBroker(env, signals)
        self.children = Children(signals, env, log_dir=LOG_DIR, cwd=REPO)
        self.monitor: Monitor | None = None
        self.stats = DemoStats([spec.name for spec in self.settings.slices], self.settings.input_topic, time.time())
        self.problem = ""
        self.ran = 0.0  # seconds the generator and dataflow ran side by side
        self.watched = False  # whether it got that far: else there is nothing to sum up
        self.report: Path | None = None

    def run(self) -> int:
        """The whole run; returns the exit status."""
        try:
            self._start()
            self._watch()
        except Interrupted as exc:
            log.info("%s: stopping", exc)
        except (KafkaException, RuntimeError, OSError) as exc:
            self.problem = f"{type(exc).__name__}: {exc}"
        finally:
            self._stop()
        return self._verdict()

    def _start(self) -> None:
        self.env["KAFKA_BROKERS"] = self.broker.ensure()
        self.settings = settings = Settings.from_env(self.env)
        topics = ensure_topics(settings, PARTITIONS)
        partitions = len(topics[settings.input_topic])
        self.monitor = Monitor(settings, topics)
        # The baseline for "events produced", taken before the generator exists.
        self.stats.sample_input(self.monitor.input_total(), time.time())
        # Recovery on, as in production. Each demo starts at the latest offsets,
        # so the previous run's state is wiped rather than resumed.
        recovery_dir = REPO / ".cache" / "demo" / "recovery"
        shutil.rmtree(recovery_dir, ignore_errors=True)
        self.children.env = {
            **self.env,
            "PYTHONUNBUFFERED": "1",
            "PYTHON": sys.executable,
            "RECOVERY_DIR": str(recovery_dir),
        }
        addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(PROCESSES))
        for index in range(PROCESSES):
            argv = [str(REPO / "scripts" / "run-dataflow"), "-i", str(index), "-a", addresses]
            self.children.start(f"dataflow-{index}", argv)
        if logging.getLevelName(settings.log_level) <= logging.INFO:
            wait_for_readers(self.children, partitions)
        else:
            log.info("LOG_LEVEL=%s hides the dataflow's readiness line; not waiting for it", settings.log_level)
        # ~500 users with 2 devices and 2 IPs each: user+device and user+ip keys repeat within a window.
        self.children.start(
            "generator",
            [
                sys.executable,
                "-m",
                "devkit.generator",
                "--realtime",
                "--rate",
                f"{self.rate:g}",
                "--users",
                "500",
                "--bad-fraction",
                "0.01",
                "--late-fraction",
                "0.01",
                "--late-by",
                f"{LATE_BY:g}",
                "--partitions",
                str(partitions),
                "--topic",
                settings.input_topic,
                "--brokers",
                settings.brokers,
                "--no-progress",
            ],
        )
        log.info(
            "running: %s events/s, window %d s, allowed lateness %g s, %s",
            f"{self.rate:g}",
            settings.window_seconds,
            settings.allowed_lateness_seconds,
            f"for {self.seconds:g} s" if self.seconds else "until Ctrl-C",
        )

    def _watch(self) -> None:
        assert self.monitor is not None
        self.stats.started = started = time.time()
        self.watched = True
        if self.tty:
            # The view owns the screen now and shows recent log lines itself.
            self.to_stderr.setLevel(logging.CRITICAL + 1)
            self.recent.setLevel(logging.INFO)
        next_frame, next_status = time.monotonic(), time.monotonic() + STATUS_EVERY
        try:
            while self.seconds is None or time.time() - started < self.seconds:
                dead = self.children.dead()
                if dead:
                    self.problem = f"{dead} exited early; last lines of its log:\n{self.children.tail(dead)}"
                    return
                self.monitor.poll(self.stats, max(0.0, min(0.2, next_frame - time.monotonic())))
                if time.monotonic() < next_frame:
                    continue
                next_frame += REFRESH
                now = time.time()
                self.stats.sample_input(self.monitor.input_total(), now)
                if self.tty:
                    sys.stdout.write(self._frame(now))
                    sys.stdout.flush()
                elif time.monotonic() >= next_status:
                    next_status += STATUS_EVERY
                    print(render_status(self.stats, now), flush=True)
        finally:
            # The last frame may end a moment past DEMO_SECONDS; the summary reports the bound.
            self.ran = min(time.time() - started, self.seconds or float("inf"))

    def _frame(self, now: float, *, final: bool = False) -> str:
        settings = self.settings
        header = (
            "final state, as the run ended"
            if final
            else (
                f"loginflow demo: {PROCESSES} dataflow processes, {settings.window_seconds} s windows, "
                f"{settings.allowed_lateness_seconds:g} s allowed lateness (Ctrl-C stops)"
            )
        )
        logs = [] if final else list(self.recent.lines)
        size = shutil.get_terminal_size()
        # The final frame is printed below the shutdown log, not over the screen: no height limit.
        height = 10_000 if final else size.lines
        return render_screen(self.stats, now, header, logs, (size.columns, height), final=final)

    def _stop(self) -> None:
        """Stop children, read what they wrote last, stop the broker; each step runs even if one before fails."""
        self.signals.stopping = True
        self.to_stderr.setLevel(logging.NOTSET)
        self.recent.setLevel(logging.CRITICAL + 1)
        try:
            self.children.stop_all()
            if self.monitor is not None:
                try:
                    self.monitor.drain(self.stats)
                    self.stats.sample_input(self.monitor.input_total(), time.time())
                except KafkaException as exc:
                    log.warning("could not read the last records: %s", exc)
                finally:
                    self.monitor.consumer.close()
                # The results page needs the broker, which is stopped next.
                self._write_report()
        finally:
            self.broker.stop()

    def _write_report(self) -> None:
        if not self.watched:
            return
        window = self.settings.window_seconds
        # The windows of this run only (the demo's topics keep earlier demos'
        # records), from LATE_BY before its start, where its late events fall.
        first = datetime.fromtimestamp((self.stats.started - LATE_BY) // window * window, tz=timezone.utc)
        args = parse_args(["--from", first.isoformat(), "--output", str(REPORT)], self.settings)
        try:
            self.report = write_report(self.settings, args)
        except (ReadError, KafkaException, OSError) as exc:
            log.warning("could not write the report: %s", exc)

    def _verdict(self) -> int:
        try:
            if self.watched and self.tty:
                # No clear this time: the shutdown log lines above it stay readable.
                sys.stdout.write(self._frame(self.stats.started + self.ran, final=True).removeprefix(CLEAR_HOME))
            if self.watched:
                print(render_summary(self.stats, self.ran), flush=True)
            if self.report is not None:
                print(f"  report: {self.report}", flush=True)
        except OSError:
            pass  # the terminal went away (SIGHUP); the verdict still decides the exit status
        if self.problem:
            log.error("demo failed: %s", self.problem)
            return 1
        if self.signals.signum is not None:
            return 128 + self.signals.signum
        missing = self.stats.missing_slices()
        if missing:
            log.error("no closed window with a non-zero count for slice(s): %s", ", ".join(missing))
            return 1
        log.info("every slice (%d) showed closed windows with non-zero counts", len(self.stats.expected))
        return 0


def main() -> int:
    """Entry point of ``python -m devkit.demo``."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    handlers = setup_logging()
    env = {**DEMO_DEFAULTS, **os.environ}
    try:
        Settings.from_env(env)
    except ConfigError as exc:
        sys.exit(f"demo: bad setting: {exc}")
    signals = StopSignals()
    signals.install()
    log.info("logs: %s/{demo,kafka,dataflow-0,dataflow-1,generator}.log", LOG_DIR)
    return Demo(env, signals, handlers).run()


if __name__ == "__main__":
    sys.exit(main())
