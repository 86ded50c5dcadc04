"""The chaos grammar: scenarios as plain step lists, and a seeded random generator of them.

Pure: nothing here touches a broker, a clock or a process. A scenario is a
function of its seed, so a failing seed replays the same steps (event values
are built from the steps when they are produced; only the far-ahead events
read the wall clock then, as they must be ahead of their record's timestamp).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

RowKind = Literal["valid", "late", "garbage", "missing", "ahead", "y2030"]
"""`ahead`: stamped a year after the wall clock at produce time; `y2030`: stamped 2030-01-01."""
ProducerKind = Literal["plain", "idempotent", "transactional"]
TxnEnd = Literal["commit", "abort"]
Signal = Literal["KILL", "TERM"]
Base = Literal["now", "2024"]
Final = Literal["bounded", "tail", "none"]

WINDOW = 5
LATENESS = 2
RECOVERY_PARTITIONS = 4
"""Fixed for every run of a scenario: restarts change -w/-i, never the recovery partitions."""


@dataclass(frozen=True)
class Row:
    """One input message. `t` is its event time in seconds after the scenario's base (valid and late rows)."""

    partition: int
    kind: RowKind
    t: float = 0.0


@dataclass(frozen=True)
class Send:
    """Produce `rows` with one producer; a transactional one commits or aborts them."""

    rows: tuple[Row, ...]
    producer: ProducerKind
    end: TxnEnd = "commit"


@dataclass(frozen=True)
class OpenTxn:
    """Begin a transaction and produce `rows` into it; a later `CloseTxn` ends it."""

    rows: tuple[Row, ...]


@dataclass(frozen=True)
class CloseTxn:
    end: TxnEnd


@dataclass(frozen=True)
class Start:
    """Start the dataflow on the scenario's recovery directory; `clock` shifts its wall clock by that many seconds."""

    bounded: bool
    processes: int = 1
    workers: int = 1
    clock: int | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Stop:
    signal: Signal


@dataclass(frozen=True)
class AwaitExit:
    """The running bounded run must end by itself, with exit code 0."""


@dataclass(frozen=True)
class Recreate:
    """Delete the input topic and create it again under the same name and partition count."""


@dataclass(frozen=True)
class ExpectFailure:
    """The running dataflow must exit non-zero, with a stderr line `loginflow: INPUT_TOPIC='<topic>' ...text...`."""

    text: str


@dataclass(frozen=True)
class KeepSending:
    """Tail mode: keep sending `kind` rows to `partition` until login-metrics equals the reference (rejects and
    late rows change no count), failing after `timeout` seconds."""

    partition: int
    kind: RowKind
    timeout: float


Step = Send | OpenTxn | CloseTxn | Start | Sleep | Stop | AwaitExit | Recreate | ExpectFailure | KeepSending


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: int | None
    partitions: int
    guarantee: str
    base: Base
    steps: tuple[Step, ...]
    final: Final = "bounded"
    final_layout: tuple[int, int] = (1, 1)
    final_clock: int | None = None
    output_partitions: int = 1


def describe(step: Step) -> str:
    """One short line for a step, for failure messages."""
    if isinstance(step, Send | OpenTxn):
        kinds: dict[str, int] = {}
        for row in step.rows:
            name = f"p{row.partition}:{row.kind}"
            kinds[name] = kinds.get(name, 0) + 1
        what = ", ".join(f"{n} {name}" for name, n in sorted(kinds.items()))
        if isinstance(step, OpenTxn):
            return f"open a transaction with {what}"
        end = f" ({step.end})" if step.producer == "transactional" else ""
        return f"send {step.producer}{end}: {what}"
    if isinstance(step, Start):
        clock = f" with the wall clock shifted {step.clock:+d} s" if step.clock else ""
        mode = "bounded" if step.bounded else "tail"
        return f"start {mode} run {step.processes}x{step.workers}{clock}"
    return repr(step)


def description(scenario: Scenario) -> str:
    head = (
        f"{scenario.name}: {scenario.partitions} input partitions, {scenario.guarantee}, base {scenario.base}, "
        f"final {scenario.final} {scenario.final_layout[0]}x{scenario.final_layout[1]}"
    )
    return "\n".join([head, *(f"  {i + 1}. {describe(step)}" for i, step in enumerate(scenario.steps))])


class _Times:
    """Each partition's event-time cursor: rows move forward from it, late rows fall far behind it."""

    def __init__(self, rng: random.Random, partitions: int) -> None:
        self.rng = rng
        self.cursor = {p: 0.0 for p in range(partitions)}
        self.backfill: int | None = None
        if partitions > 1 and rng.random() < 0.35:
            # A backfilled partition, many windows behind the others.
            self.backfill = rng.randrange(partitions)
            self.cursor[self.backfill] = -float(rng.randint(40, 400) * WINDOW)

    def row(self, partition: int, kind: RowKind) -> Row:
        if kind == "valid":
            step = self.rng.uniform(0.0, 0.5)
            self.cursor[partition] += step
            # Some disorder within the allowed lateness, which must still count.
            jitter = self.rng.uniform(-LATENESS, 0.0) if self.rng.random() < 0.2 else 0.0
            return Row(partition, kind, round(self.cursor[partition] + jitter, 3))
        if kind == "late":
            return Row(partition, kind, round(self.cursor[partition] - self.rng.uniform(3, 20) * WINDOW, 3))
        return Row(partition, kind)


def _rows(rng: random.Random, times: _Times, partitions: int) -> tuple[Row, ...]:
    """A batch: mostly valid rows, a few rejects; sometimes one partition gets only rejects or only late rows."""
    only: tuple[RowKind, ...] = ("garbage", "missing", "late")
    mixed: tuple[RowKind, ...] = ("valid", "late", "garbage", "missing", "ahead")
    special = {rng.randrange(partitions): rng.choice(only)} if rng.random() < 0.3 else {}
    rows = []
    for _ in range(rng.randint(10, 50)):
        partition = rng.randrange(partitions)
        kind = special.get(partition) or rng.choices(mixed, weights=(90, 4, 3, 2, 1))[0]
        rows.append(times.row(partition, kind))
    return tuple(rows)


def _start(rng: random.Random) -> Start:
    processes = rng.choice((1, 1, 2))
    clock = rng.choice((None, None, None, 7200, -3600, 86400))
    return Start(bounded=rng.random() < 0.5, processes=processes, workers=rng.choice((1, 2)), clock=clock)


def generate(seed: int) -> Scenario:
    """A random scenario of a few sends, runs and failures, ending with no transaction open and nothing running."""
    rng = random.Random(seed)
    partitions = rng.randint(1, 4)
    times = _Times(rng, partitions)
    steps: list[Step] = []
    running: Start | None = None
    txn_left = 0  # steps until the open transaction, if any, ends

    for _ in range(rng.randint(4, 8)):
        action = rng.choices(("send", "open", "start", "stop", "sleep"), weights=(5, 1, 3, 2, 1))[0]
        if action == "open" and txn_left == 0:
            steps.append(OpenTxn(_rows(rng, times, partitions)))
            txn_left = rng.randint(1, 3)
            continue
        if action == "start" and running is None:
            running = _start(rng)
            steps.append(running)
        elif action == "stop" and running is not None:
            steps.append(Sleep(round(rng.uniform(0.5, 4.0), 1)))
            steps.append(Stop(rng.choice(("KILL", "TERM"))))
            running = None
        elif action == "sleep":
            steps.append(Sleep(round(rng.uniform(1.0, 4.0), 1)))
        else:
            producer: ProducerKind = rng.choice(("plain", "idempotent", "transactional"))
            end: TxnEnd = "abort" if producer == "transactional" and rng.random() < 0.25 else "commit"
            steps.append(Send(_rows(rng, times, partitions), producer, end))
        if txn_left:
            txn_left -= 1
            if txn_left == 0:
                steps.append(CloseTxn(rng.choice(("commit", "abort"))))
    if txn_left:
        steps.append(Sleep(round(rng.uniform(1.0, 3.0), 1)))
        steps.append(CloseTxn(rng.choice(("commit", "abort"))))
    if running is not None:
        # A bounded run ends by itself; a tail run is stopped, as a deploy would.
        steps.append(AwaitExit() if running.bounded else Stop(rng.choice(("KILL", "TERM"))))
    return Scenario(
        name=f"seed-{seed}",
        seed=seed,
        partitions=partitions,
        guarantee=rng.choice(("at-least-once", "at-least-once", "exactly-once")),
        base=rng.choice(("now", "2024")),
        steps=tuple(steps),
        # A tail run flushes by idle progress, which a backfilled partition holds back for its whole lag.
        final=rng.choice(("bounded", "bounded", "tail")) if times.backfill is None else "bounded",
        final_layout=(rng.choice((1, 2)), rng.choice((1, 2))),
        output_partitions=rng.randint(1, 3),
    )
