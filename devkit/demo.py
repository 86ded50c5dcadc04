"""`make demo`: broker, topics, a live generator and a 2-process dataflow, watched live.

Starts the local broker (unless KAFKA_BROKERS already answers), creates the
topics, runs the dataflow as two Bytewax processes and the event generator in
realtime mode, and shows the latest closed window of every slice until Ctrl-C
or DEMO_SECONDS. Everything it started is stopped on the way out, whatever
the reason: children run in their own sessions and are signalled by process
group, from a `finally`.

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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devkit.broker import LocalBroker, broker_reachable, free_ports
from devkit.demo_view import CLEAR_HOME, DemoStats, RecentLog, render_screen, render_status, render_summary
from operators.kafka.topics import metrics_topic_config
from operators.runtime.settings import ConfigError, Settings

log = logging.getLogger("demo")

REPO = Path(__file__).resolve().parent.parent
LOG_DIR = REPO / ".cache" / "demo"
PARTITIONS = 3
PROCESSES = 2
REFRESH = 1.0  # seconds between frames of the live view
STATUS_EVERY = 5.0  # seconds between status lines when stdout is not a terminal
STOP_GRACE = 8.0  # seconds a child gets after SIGINT before SIGTERM, then SIGKILL
READY_TIMEOUT = 60.0  # seconds to wait for the dataflow to open its partitions

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

    def __init__(self, signals: StopSignals, env: Mapping[str, str]) -> None:
        """Start children with `env`; `signals` guards each start."""
        self.signals = signals
        self.env = dict(env)
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, name: str, argv: list[str]) -> None:
        """Start `argv` with output to `LOG_DIR/<name>.log`."""
        path = LOG_DIR / f"{name}.log"
        with path.open("wb") as out, self.signals.critical():
            # Own session: the terminal's Ctrl-C reaches only the demo, which then
            # stops every child itself (SIGINT first, so the generator flushes).
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
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
                _killpg(proc.pid, sig)
            deadline = time.monotonic() + grace
            while any(p.poll() is None for p in live) and time.monotonic() < deadline and not self.signals.hurry:
                time.sleep(0.05)
        for name, (proc, _) in self.procs.items():
            # Sweep anything the leader left behind in its group (pids are not
            # reused this fast), then reap.
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.info("stopped %s (exit %s)", name, proc.returncode)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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
                _killpg(self._up.pid, signal.SIGKILL)
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


def ensure_topics(settings: Settings) -> dict[str, list[int]]:
    """Create missing topics; returns the partition ids of each of the four."""
    admin = AdminClient(dict(settings.kafka_config()))
    # No replication factor given: the broker's default, so the demo also suits a bigger cluster.
    wanted = [
        NewTopic(settings.input_topic, PARTITIONS),
        NewTopic(settings.output_topic, PARTITIONS, config=metrics_topic_config(settings)),
        NewTopic(settings.dlq_topic, 1),
        NewTopic(settings.late_topic, 1),
    ]
    existing = admin.list_topics(timeout=15).topics
    missing = [topic for topic in wanted if topic.topic not in existing]
    for name, future in admin.create_topics(missing, request_timeout=15).items() if missing else []:
        try:
            future.result(timeout=30)
            log.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # A topic created a moment ago may take a little while to show in the metadata with leaders.
    deadline = time.monotonic() + 15
    while True:
        topics = admin.list_topics(timeout=15).topics
        found = {
            name: sorted(meta.partitions)
            for name, meta in ((t.topic, topics.get(t.topic)) for t in wanted)
            if meta is not None
            and meta.error is None
            and meta.partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        }
        if len(found) == len(wanted):
            break
        if time.monotonic() > deadline:
            msg = f"topics missing from the metadata: {sorted({t.topic for t in wanted} - set(found))}"
            raise RuntimeError(msg)
        time.sleep(0.2)
    if len(found[settings.input_topic]) != PARTITIONS:
        count = len(found[settings.input_topic])
        log.warning("%s already exists with %d partitions; using them", settings.input_topic, count)
    return found


class Monitor:
    """Reads what the demo shows: input high watermarks and the three output topics."""

    def __init__(self, settings: Settings, partitions: Mapping[str, list[int]]) -> None:
        """Pin every output partition at its current end, before the dataflow starts."""
        self.settings = settings
        self.consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": "loginflow-demo-monitor",
                "enable.auto.commit": "false",
                # The dataflow commits its output in transactions (exactly-once): show what is committed.
                "isolation.level": "read_committed",
            }
        )
        self.inputs = [TopicPartition(settings.input_topic, p) for p in partitions[settings.input_topic]]
        # assign() at offsets captured now: nothing produced after this point can be missed,
        # unlike a subscription whose offset reset happens only once the group settles.
        assigned = [
            TopicPartition(topic, p, self._high(TopicPartition(topic, p), patience=15))
            for topic in (settings.output_topic, settings.dlq_topic, settings.late_topic)
            for p in partitions[topic]
        ]
        self.consumer.assign(assigned)

    def _high(self, tp: TopicPartition, patience: float = 0.0) -> int:
        """The high watermark of `tp`, retrying for `patience` seconds.

        A partition created a moment ago can answer "not leader" for a little while.
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                return int(self.consumer.get_watermark_offsets(tp, timeout=5)[1])
            except KafkaException:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def input_total(self) -> int:
        """The input topic's high watermarks, summed over partitions."""
        return sum(self._high(tp) for tp in self.inputs)

    def poll(self, stats: DemoStats, timeout: float) -> int:
        """Feed whatever arrives within `timeout` into `stats`; returns how many messages came."""
        messages: list[Message] = self.consumer.consume(1000, timeout)
        for message in messages:
            if message.error() is not None:
                log.warning("monitor read error: %s", message.error())
            elif message.topic() == self.settings.output_topic:
                stats.add_metric(message.value())
            elif message.topic() == self.settings.dlq_topic:
                error = dict(message.headers() or []).get("error") or b"?"
                stats.add_dlq(error.decode(errors="replace") if isinstance(error, bytes) else str(error))
            else:
                stats.add_late()
        return len(messages)

    def drain(self, stats: DemoStats, quiet: float = 1.0) -> None:
        """Read until nothing has arrived for `quiet` seconds (bounded at 10 s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.poll(stats, quiet):
            pass


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
        self.children = Children(signals, env)
        self.monitor: Monitor | None = None
        self.stats = DemoStats([spec.name for spec in self.settings.slices], self.settings.input_topic, time.time())
        self.problem = ""
        self.ran = 0.0  # seconds the generator and dataflow ran side by side
        self.watched = False  # whether it got that far: else there is nothing to sum up

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
        topics = ensure_topics(settings)
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
                "60",
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
        finally:
            self.broker.stop()

    def _verdict(self) -> int:
        try:
            if self.watched and self.tty:
                # No clear this time: the shutdown log lines above it stay readable.
                sys.stdout.write(self._frame(self.stats.started + self.ran, final=True).removeprefix(CLEAR_HOME))
            if self.watched:
                print(render_summary(self.stats, self.ran), flush=True)
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
