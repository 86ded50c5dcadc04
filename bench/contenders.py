"""Who runs in the benchmark, and the exact command lines each one is started with."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from bench import setup_jvm
from bench.setup_venvs import QUIX_VENV, python_of
from devkit.broker import free_ports


class Kind(Enum):
    """How a contender is timed and checked."""

    # Reads only: timed by its own first/last message, checked by message count.
    CEILING = "ceiling"
    # The real `python -m bytewax.run dataflow`: timed from its first "reading
    # partition" log line to its last output's broker append time, checked exactly.
    LOGINFLOW = "loginflow"
    # A bench peer: timed from its own first-message stamp to its last output's
    # broker append time, checked on its metric records.
    PEER = "peer"


@dataclass(frozen=True)
class Contender:
    """One configuration to measure."""

    key: str
    label: str
    kind: Kind
    processes: int = 1
    workers: int = 1
    module: str = ""
    extra_args: tuple[str, ...] = ()
    quix: bool = False
    # A JVM peer: its Maven module under bench/peers/ (built by bench.setup_jvm); `module` is its main class.
    jvm: str = ""
    # loginflow only: PROCESSING_GUARANTEE, and bytewax.run -s (0: its default epoch of 10 s).
    guarantee: str = "at-least-once"
    epoch_s: int = 0

    def available(self) -> str | None:
        """Why this contender cannot run here, or None."""
        if self.quix and not python_of(QUIX_VENV).exists():
            return f"no Quix venv at {QUIX_VENV} (pip install of bench/requirements-quix.txt failed?)"
        if self.jvm and not setup_jvm.jar(self.jvm).exists():
            return f"no {setup_jvm.jar(self.jvm)} (python3 -m bench.setup_jvm: Java 17+ and Maven needed)"
        return None


CEILING_RAW = Contender(
    "ceiling-raw",
    "consume ceiling, no parse",
    Kind.CEILING,
    module="bench.peers.ceiling",
    extra_args=("--parse", "none"),
)
CEILING_ORJSON = Contender(
    "ceiling-orjson",
    "consume ceiling + orjson.loads",
    Kind.CEILING,
    module="bench.peers.ceiling",
    extra_args=("--parse", "orjson"),
)
# The fair yardstick: loginflow's own consumer settings and one consumer per partition.
CEILING_LOGINFLOW = Contender(
    "ceiling-loginflow",
    "consume ceiling, loginflow's consumers + orjson.loads",
    Kind.CEILING,
    module="bench.peers.ceiling",
    extra_args=("--parse", "orjson", "--consumer", "loginflow"),
)


def loginflow(processes: int, workers: int, guarantee: str = "at-least-once", epoch_s: int = 0) -> Contender:
    """loginflow as `processes` processes of `workers` worker threads."""
    key, label = f"loginflow-{processes}x{workers}", f"loginflow {processes} proc x {workers} worker"
    if guarantee == "exactly-once":
        key, label = f"{key}-eos-s{epoch_s}", f"{label}, exactly-once, -s {epoch_s}"
    elif epoch_s:
        key, label = f"{key}-s{epoch_s}", f"{label}, -s {epoch_s}"
    return Contender(
        key, label, Kind.LOGINFLOW, processes=processes, workers=workers, guarantee=guarantee, epoch_s=epoch_s
    )


PANDAS = Contender("pandas-batches", "pandas per 1 s batch (take-home)", Kind.PEER, module="bench.peers.pandas_batches")
QUIX = Contender(
    "quix-windows", "Quix Streams 3.28 tumbling_window", Kind.PEER, module="bench.peers.quix_windows", quix=True
)
BYTEWAX_NAIVE = Contender(
    "bytewax-naive", "Bytewax fold_window per key (naive)", Kind.PEER, module="bench.peers.bytewax_naive"
)


def flink(parallelism: int) -> Contender:
    """The Flink peer in a local MiniCluster at `parallelism`."""
    return Contender(
        f"flink-p{parallelism}",
        f"Apache Flink 2.2 DataStream, parallelism {parallelism}",
        Kind.PEER,
        module="loginflow.bench.flink.FlinkPeer",
        jvm="flink",
        extra_args=("--parallelism", str(parallelism)),
    )


def kstreams(threads: int) -> Contender:
    """The Kafka Streams peer with `threads` stream threads."""
    return Contender(
        f"kstreams-t{threads}",
        f"Kafka Streams 4.4, {threads} stream thread{'s' if threads > 1 else ''}",
        Kind.PEER,
        module="loginflow.bench.kstreams.KStreamsPeer",
        jvm="kstreams",
        extra_args=("--threads", str(threads)),
    )


# The table BENCHMARKS.md leads with: loginflow and the JVM frameworks against the fair ceiling.
PEERS = (CEILING_LOGINFLOW, loginflow(1, 1), loginflow(2, 1), flink(1), flink(2), kstreams(1), kstreams(2))
# Measured on the full input (BENCH_EVENTS).
MAIN = (
    CEILING_RAW,
    CEILING_ORJSON,
    *PEERS,
    PANDAS,
    # What exactly-once output costs: a transaction per output partition per epoch.
    loginflow(1, 1, "exactly-once", 1),
    loginflow(1, 1, "exactly-once", 10),
)
# Peers too slow for the full input within the run-time budget (Quix ~2-3k events/s
# on this box; Bytewax's per-key windows get slower as keys accumulate) run on a
# smaller input (BENCH_SLOW_EVENTS) with the same event density, next to loginflow
# and the ceiling on that same input.
SLOW = (CEILING_ORJSON, loginflow(1, 1), QUIX, BYTEWAX_NAIVE)
SCALING = (loginflow(1, 1), loginflow(1, 2), loginflow(2, 1))
ALL = {c.key: c for c in (*MAIN, *SLOW, *SCALING)}


@dataclass(frozen=True)
class RunSpec:
    """Everything one run of a contender needs to know."""

    brokers: str
    input_topic: str
    topics: dict[str, str]
    run_dir: Path
    window_s: int
    lateness_s: float
    slices: str
    quix_idle_s: float
    quix_grace_s: float
    # Run loginflow under `py-spy record`, writing collapsed stacks per process.
    profile: bool = False


@dataclass(frozen=True)
class Launch:
    """Command lines and environment for one run."""

    commands: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)
    results: Path | None = None


def launch(contender: Contender, spec: RunSpec) -> Launch:
    """The processes to start for `contender`."""
    if contender.kind is Kind.LOGINFLOW:
        return _loginflow_launch(contender, spec)
    results = spec.run_dir / "results.json"
    # Quix calls allowed lateness "grace"; it may be set apart to try other values.
    lateness = spec.quix_grace_s if contender.quix else spec.lateness_s
    if contender.jvm:
        program = jvm_command(contender.jvm, contender.module)
    else:
        program = [str(python_of(QUIX_VENV)) if contender.quix else sys.executable, "-m", contender.module]
    command = [
        *program,
        "--brokers",
        spec.brokers,
        "--input-topic",
        spec.input_topic,
        "--output-topic",
        spec.topics.get("metrics", ""),
        "--results",
        str(results),
        "--window",
        str(spec.window_s),
        "--lateness",
        str(lateness),
        "--slices",
        spec.slices,
        *contender.extra_args,
    ]
    if contender.quix:
        command += ["--state-dir", str(spec.run_dir / "quix-state"), "--idle-timeout", str(spec.quix_idle_s)]
    if contender.jvm == "kstreams":
        command += ["--state-dir", str(spec.run_dir / "kstreams-state")]
    return Launch([command], results=results)


# Flink serializes through reflection into the JDK's own classes; its launch
# scripts open these packages on Java 17 too.
_JVM_OPENS = (
    "java.base/java.lang",
    "java.base/java.lang.reflect",
    "java.base/java.io",
    "java.base/java.net",
    "java.base/java.nio",
    "java.base/sun.nio.ch",
    "java.base/java.text",
    "java.base/java.time",
    "java.base/java.util",
    "java.base/java.util.concurrent",
    "java.base/java.util.concurrent.atomic",
    "java.base/java.util.concurrent.locks",
)
JVM_HEAP = "-Xmx2g"


def jvm_command(module: str, main_class: str) -> list[str]:
    """`java` with the peer's class path, a bounded heap and quiet logging, running `main_class`."""
    opens = [f"--add-opens={package}=ALL-UNNAMED" for package in _JVM_OPENS]
    return [
        "java",
        JVM_HEAP,
        *opens,
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        setup_jvm.classpath(module),
        main_class,
    ]


def profile_path(run_dir: Path, index: int) -> Path:
    """Where process `index` of a profiled loginflow run leaves its py-spy samples."""
    return run_dir / f"py-spy-{index}.txt"


def _loginflow_launch(contender: Contender, spec: RunSpec) -> Launch:
    base = [sys.executable, "-m", "bytewax.run", "dataflow", "-w", str(contender.workers)]
    if contender.epoch_s:
        base += ["-s", str(contender.epoch_s)]
    if contender.processes == 1:
        commands = [base]
    else:
        addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(contender.processes))
        commands = [[*base, "-i", str(index), "-a", addresses] for index in range(contender.processes)]
    if spec.profile:
        py_spy = str(Path(sys.executable).parent / "py-spy")
        commands = [
            [py_spy, "record", "--rate", "100", "--format", "raw", "-o", str(profile_path(spec.run_dir, i)), "--", *c]
            for i, c in enumerate(commands)
        ]
    env = {
        "KAFKA_BROKERS": spec.brokers,
        "INPUT_TOPIC": spec.input_topic,
        "OUTPUT_TOPIC": spec.topics["metrics"],
        "DLQ_TOPIC": spec.topics["dlq"],
        "LATE_TOPIC": spec.topics["late"],
        "STOP_AT_END": "true",
        "START_OFFSET": "earliest",
        "WINDOW_SECONDS": str(spec.window_s),
        "ALLOWED_LATENESS_SECONDS": str(spec.lateness_s),
        "SLICES": spec.slices,
        "LOG_LEVEL": "INFO",
        "PROCESSING_GUARANTEE": contender.guarantee,
        # Each run writes fresh topics: its own transactional ids.
        "TRANSACTIONAL_ID_PREFIX": f"bench-{spec.run_dir.name}",
    }
    return Launch(commands, env=env)


def output_topic_names(contender: Contender, prefix: str) -> dict[str, str]:
    """Fresh output topics for one run: loginflow writes three, peers one, the ceiling none."""
    if contender.kind is Kind.CEILING:
        return {}
    names = ("metrics", "dlq", "late") if contender.kind is Kind.LOGINFLOW else ("metrics",)
    return {name: f"{prefix}-{name}" for name in names}
