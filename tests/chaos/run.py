"""Execute a chaos scenario against the real broker and the real dataflow processes, then check it.

One scenario gets its own input and output topics, one recovery directory
for all its runs, and one transactional.id prefix. Every process it starts
is stopped when it ends, whatever happens (an ExitStack holds them).
"""

from __future__ import annotations

import functools
import json
import math
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from devkit.broker import wait_until
from devkit.records import create_topic, delete_topics, produce
from tests.chaos.checks import Outputs, check_final, tail_timeout
from tests.chaos.scenario import (
    LATENESS,
    RECOVERY_PARTITIONS,
    WINDOW,
    AwaitExit,
    CloseTxn,
    ExpectFailure,
    KeepSending,
    OpenTxn,
    ProducerKind,
    Recreate,
    Row,
    Scenario,
    Send,
    Sleep,
    Start,
    Step,
    Stop,
    description,
)
from tests.dataflow_runner import DataflowCluster, Finished, init_recovery
from tests.hardening import expected_for_log, read_log, varied_login, wait_accounted
from tests.outputs import collect, flow_env, latest_metrics

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z, a window boundary
YEAR_S = 365 * 86400
Y2030 = 1_893_456_000  # 2030-01-01T00:00:00Z
CLOCK_SHIFT_SOURCE = Path(__file__).with_name("clock_shift.c")
RUN_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


@functools.cache
def clock_shift_library() -> Path:
    """clock_shift.c built once per test session (libfaketime hangs Python 3.11 here; see the C file)."""
    target = Path(tempfile.mkdtemp(prefix="chaos-clock-")) / "clock_shift.so"
    command = ["cc", "-shared", "-fPIC", "-O2", "-o", str(target), str(CLOCK_SHIFT_SOURCE), "-ldl"]
    subprocess.run(command, check=True)  # noqa: S603 - the system compiler on our own file
    return target


def base_time(scenario: Scenario) -> float:
    """Where the scenario's relative event times start: in 2024, or ten minutes before now.

    Ten minutes back keeps every event behind its record's CreateTime however far the cursors move.
    """
    if scenario.base == "2024":
        return float(T0)
    return float(math.floor((time.time() - 600) / WINDOW) * WINDOW)


def value_of(row: Row, base: float, index: int) -> bytes:
    if row.kind in ("valid", "late"):
        return varied_login(base + row.t, index)
    if row.kind == "ahead":
        return varied_login(time.time() + YEAR_S, index, "ahead")
    if row.kind == "y2030":
        return varied_login(Y2030, index, "y2030")
    if row.kind == "garbage":
        return b'{"user_id": "g%d", garbage' % index
    # Alternate the missing field, so both checks are met.
    doc: dict[str, object] = {"user_id": f"m{index}"} if index % 2 else {"timestamp": base + row.t}
    return json.dumps(doc).encode()


def transactional_producer(brokers: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": brokers,
            "transactional.id": f"chaos-input-{uuid.uuid4().hex}",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            # Long enough that the broker never aborts a transaction the scenario holds open.
            "transaction.timeout.ms": 120_000,
        }
    )
    producer.init_transactions(30)
    return producer


PRODUCER_CONFIG: dict[ProducerKind, dict[str, object]] = {
    "plain": {"enable.idempotence": False, "acks": "1"},
    "idempotent": {"enable.idempotence": True, "acks": "all"},
}


class Execution:
    """The state of one scenario while it runs: its topics, its producers and its current dataflow run."""

    def __init__(self, brokers: str, scenario: Scenario, workdir: Path, stack: ExitStack) -> None:
        self.brokers = brokers
        self.scenario = scenario
        self.workdir = workdir
        self.stack = stack
        self.base = base_time(scenario)
        self.index = 0
        self.topic = self.new_topic(scenario.partitions)
        self.outputs = {name: self.new_topic(scenario.output_partitions) for name in ("metrics", "dlq", "late")}
        self.recovery_args = init_recovery(workdir / "recovery", RECOVERY_PARTITIONS)
        self.prefix = f"chaos-{uuid.uuid4().hex[:12]}"
        # Two transactional producers: one sends whole transactions while the other may hold one open.
        self.txn: Producer | None = None
        self.open_txn: Producer | None = None
        self.cluster: DataflowCluster | None = None
        self.bounded = False
        self.crashed = False

    def new_topic(self, partitions: int) -> str:
        topic = create_topic(self.brokers, partitions=partitions)
        self.stack.callback(delete_topics, self.brokers, [topic])
        return topic

    def env(self, outputs: dict[str, str], bounded: bool, clock: int | None, prefix: str) -> dict[str, str]:
        env = flow_env(
            self.brokers,
            self.topic,
            outputs,
            window=WINDOW,
            lateness=LATENESS,
            bounded=bounded,
            LOG_FORMAT="kv",
            BATCH_SIZE="25",
            PROCESSING_GUARANTEE=self.scenario.guarantee,
            TRANSACTIONAL_ID_PREFIX=prefix,
        )
        if clock is not None:
            # The wall clock of this run's processes only: against the previous run's it jumped, as a host's
            # clock does when it is set; their monotonic clock is left alone, as a host's is.
            env |= {"LD_PRELOAD": str(clock_shift_library()), "CHAOS_CLOCK_SHIFT": str(clock)}
        return env

    def messages(self, rows: tuple[Row, ...]) -> list[tuple[int, bytes, bytes]]:
        out = []
        for row in rows:
            self.index += 1
            out.append((row.partition, b"k%d" % row.partition, value_of(row, self.base, self.index)))
        return out

    def send(self, step: Send) -> None:
        messages = self.messages(step.rows)
        if step.producer != "transactional":
            produce(self.brokers, self.topic, messages, config=PRODUCER_CONFIG[step.producer])
            return
        if self.txn is None:
            self.txn = transactional_producer(self.brokers)
        producer = self.txn
        producer.begin_transaction()
        self.put(producer, messages)
        producer.commit_transaction(30) if step.end == "commit" else producer.abort_transaction(30)

    def put(self, producer: Producer, messages: list[tuple[int, bytes, bytes]]) -> None:
        for partition, key, value in messages:
            producer.produce(self.topic, value=value, key=key, partition=partition)
        assert producer.flush(30) == 0, "transactional messages undelivered after 30 s"

    def start(self, step: Start) -> None:
        assert self.cluster is None or self.cluster.any_exited(), "a scenario runs one dataflow at a time"
        env = self.env(self.outputs, step.bounded, step.clock, self.prefix)
        self.cluster = DataflowCluster(env, self.workdir, step.processes, step.workers, self.recovery_args)
        self.stack.callback(self.cluster.stop)
        self.cluster.start()
        self.bounded = step.bounded

    def running(self) -> DataflowCluster:
        assert self.cluster is not None, "no dataflow was started"
        return self.cluster

    def stop(self, step: Stop) -> None:
        cluster = self.running()
        exited = [p.poll() for p in cluster.running]
        if all(code is not None for code in exited):
            # It ended by itself before the signal: only a bounded run may, and only successfully.
            assert self.bounded and exited == [0] * len(exited), f"the run exited by itself {exited}:\n{cluster.tail()}"
            return
        sig = signal.SIGKILL if step.signal == "KILL" else signal.SIGTERM
        cluster.stop(sig)
        self.crashed = True

    def await_exit(self) -> list[Finished]:
        results = self.running().wait(RUN_TIMEOUT_S)
        codes = [finished.returncode for finished in results]
        assert codes == [0] * len(codes), f"bounded run exit codes {codes}:\n{self.running().tail()}"
        return results

    def expect_failure(self, step: ExpectFailure) -> None:
        results = self.running().wait(RUN_TIMEOUT_S)
        assert any(finished.returncode != 0 for finished in results), "the run should have failed, it exited 0"
        prefix = f"loginflow: INPUT_TOPIC={self.topic!r}"
        lines = [line for f in results for line in f.stderr.splitlines() if line.startswith(prefix)]
        assert any(step.text in line for line in lines), f"no '{prefix} ...{step.text}...' line:\n{self.tail()}"

    def recreate(self) -> None:
        delete_topics(self.brokers, [self.topic])
        admin = AdminClient({"bootstrap.servers": self.brokers})
        wait_until(lambda: self.topic not in admin.list_topics(timeout=5).topics, timeout=30)
        # The broker may still be removing the old log: retry until the name can be taken again.
        wait_until(
            lambda: create_topic(self.brokers, self.scenario.partitions, name=self.topic),
            timeout=30,
            interval=0.5,
            retry_on=(Exception,),
        )

    def keep_sending(self, step: KeepSending) -> None:
        """A row every 0.1 s from a thread, never a pause for idle time; pass once the metrics are exact."""
        stop = threading.Event()
        sender = threading.Thread(target=self.trickle, args=(step, stop), daemon=True)
        sender.start()
        try:
            self.await_metrics(step)
        finally:
            stop.set()
            sender.join(30)

    def trickle(self, step: KeepSending, stop: threading.Event) -> None:
        producer = Producer({"bootstrap.servers": self.brokers, "linger.ms": 0})
        index = 0
        while not stop.is_set():
            index += 1
            row = Row(step.partition, step.kind, -1000.0)
            producer.produce(self.topic, value=value_of(row, self.base, 10**6 + index), partition=step.partition)
            producer.poll(0)
            stop.wait(0.1)
        producer.flush(30)

    def await_metrics(self, step: KeepSending) -> None:
        deadline = time.monotonic() + step.timeout
        while True:
            log = read_log(self.brokers, self.topic)
            want = expected_for_log(log, WINDOW, LATENESS).metrics
            got = latest_metrics(r.value for r in collect(self.brokers, {"m": self.outputs["metrics"]})["m"])
            if got == want:
                return
            assert not self.running().any_exited(), f"the tail run exited:\n{self.tail()}"
            assert time.monotonic() < deadline, (
                f"login-metrics not exact within {step.timeout:.0f}s while p{step.partition} got {step.kind} rows:"
                f" {len(got)} metrics, want {len(want)}; missing e.g. {[k for k in want if got.get(k) != want[k]][:3]}"
            )
            time.sleep(0.3)

    def step(self, step: Step) -> None:
        if isinstance(step, Send):
            self.send(step)
        elif isinstance(step, OpenTxn):
            if self.open_txn is None:
                self.open_txn = transactional_producer(self.brokers)
            self.open_txn.begin_transaction()
            self.put(self.open_txn, self.messages(step.rows))
        elif isinstance(step, CloseTxn):
            assert self.open_txn is not None, "CloseTxn without OpenTxn"
            end = self.open_txn.commit_transaction if step.end == "commit" else self.open_txn.abort_transaction
            end(30)
        elif isinstance(step, Start):
            self.start(step)
        elif isinstance(step, Sleep):
            time.sleep(step.seconds)
        elif isinstance(step, Stop):
            self.stop(step)
        elif isinstance(step, AwaitExit):
            self.await_exit()
        elif isinstance(step, ExpectFailure):
            self.expect_failure(step)
        elif isinstance(step, Recreate):
            self.recreate()
        elif isinstance(step, KeepSending):
            self.keep_sending(step)

    def drain(self) -> None:
        """The final from-scratch-safe flush on the scenario's recovery directory."""
        final = self.scenario.final
        if final == "none":
            return
        processes, workers = self.scenario.final_layout
        self.start(Start(final == "bounded", processes, workers, self.scenario.final_clock))
        if final == "bounded":
            self.await_exit()
            return
        log = read_log(self.brokers, self.topic)
        wait_accounted(
            self.brokers,
            self.outputs,
            log,
            WINDOW,
            LATENESS,
            tail_timeout(log),
            self.running(),
            revisions=True,
            allow_duplicates=self.duplicates_allowed(),
        )
        self.running().stop(signal.SIGKILL)

    def duplicates_allowed(self) -> bool:
        """At-least-once repeats what a crashed run wrote since its snapshot; exactly-once never repeats."""
        return self.crashed and self.scenario.guarantee == "at-least-once"

    def scratch(self) -> Outputs:
        """One from-scratch bounded run over the final log, into fresh topics with a fresh recovery directory."""
        outputs = {name: self.new_topic(self.scenario.output_partitions) for name in ("metrics", "dlq", "late")}
        env = self.env(outputs, True, None, f"{self.prefix}-scratch")
        recovery = init_recovery(self.workdir / "scratch-recovery", RECOVERY_PARTITIONS)
        with DataflowCluster(env, self.workdir, 1, 1, recovery) as cluster:
            [finished] = cluster.wait(RUN_TIMEOUT_S)
        assert finished.returncode == 0, f"the from-scratch run failed:\n{cluster.tail()}"
        return collect(self.brokers, outputs)

    def tail(self) -> str:
        return self.cluster.tail(30) if self.cluster is not None else "(no dataflow started)"


def check(execution: Execution) -> None:
    brokers, topic = execution.brokers, execution.topic
    check_final(
        brokers,
        topic,
        collect(brokers, execution.outputs),
        read_log(brokers, topic),
        execution.scratch,
        allow_duplicates=execution.duplicates_allowed(),
        exactly_once=execution.scenario.guarantee == "exactly-once",
    )


def run_scenario(brokers: str, scenario: Scenario, workdir: Path, replay: str) -> None:
    """Run every step, drain, check; a failure names the seed, the replay command and the steps."""
    with ExitStack() as stack:
        execution = Execution(brokers, scenario, workdir, stack)
        done = 0
        try:
            for step in scenario.steps:
                execution.step(step)
                done += 1
            execution.drain()
            if scenario.final != "none":
                check(execution)
        except Exception as exc:  # noqa: BLE001 - whatever breaks, the failure must name its seed and steps
            msg = (
                f"chaos scenario {scenario.name} (seed {scenario.seed}) failed after step {done}: "
                f"{type(exc).__name__}: {exc}\n"
                f"replay: {replay}\n{description(scenario)}\n--- last dataflow log ---\n{execution.tail()}"
            )
            # The message carries the original one; a chained traceback would print it all twice.
            raise AssertionError(msg) from None
