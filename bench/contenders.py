"""Who runs in the benchmark, and the exact command lines each one is started with."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

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
    # loginflow only: PROCESSING_GUARANTEE, and bytewax.run -s (0: its default epoch of 10 s).
    guarantee: str = "at-least-once"
    epoch_s: int = 0

    def available(self) -> str | None:
        """Why this contender cannot run here, or None."""
        if self.quix and not python_of(QUIX_VENV).exists():
            return f"no Quix venv at {QUIX_VENV} (pip install of bench/requirements-quix.txt failed?)"
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

# Measured on the full input (BENCH_EVENTS).
MAIN = (
    CEILING_RAW,
    CEILING_ORJSON,
    loginflow(1, 1),
    loginflow(2, 1),
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
    python = str(python_of(QUIX_VENV)) if contender.quix else sys.executable
    results = spec.run_dir / "results.json"
    # Quix calls allowed lateness "grace"; it may be set apart to try other values.
    lateness = spec.quix_grace_s if contender.quix else spec.lateness_s
    command = [
        python,
        "-m",
        contender.module,
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
    return Launch([command], results=results)


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
