"""A broker SIGKILLed under a live dataflow and a live generator, back after ~10 s.

The outage starts by input progress (once the input topic holds
OUTAGE_AFTER_RECORDS records), while the generator is still sending, and the
generator goes on until the input has grown by AFTER_RESTART_RECORDS more
records after the broker is back. So the dataflow meets input before, during
(buffered by the generator's producer) and after the outage.

The dataflow rides it out: librdkafka reconnects its consumers and producers,
the sinks' idempotent producers retry. The answer over the whole input is
exact in the view a compacted topic keeps (the latest record per key): a
window closed by idle progress while the broker was away or before the
buffered input arrived may be revised once its on-time counts come in.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devkit.broker import LocalBroker, wait_until
from devkit.records import consume_all, create_topic
from devkit.reference import expected_output, metrics_from_records
from tests.dataflow_runner import REPO, DataflowCluster, stop
from tests.outputs import assert_exact, collect, flow_env, latest_by_key, read_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
# Longer than the outage plus librdkafka's reconnect backoff, so events the
# generator buffered during the outage still count once they arrive.
LATENESS = 30
OUTAGE_S = 10
RATE = 100
OUTAGE_AFTER_RECORDS = 1_000
AFTER_RESTART_RECORDS = 1_000


@pytest.fixture
def own_broker(tmp_path: Path):
    with LocalBroker.on_free_ports(tmp_path / "broker") as broker:
        yield broker


def kill_broker(broker: LocalBroker) -> None:
    pid = broker.pid()
    assert pid is not None, "the broker has no pid on record"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: broker.status() != 0, timeout=30, message="the killed broker still reports running")


def input_size(brokers: str, topic: str) -> int:
    return len(consume_all(brokers, topic))


def test_dataflow_rides_out_a_broker_outage(own_broker: LocalBroker, tmp_path: Path) -> None:
    brokers = own_broker.bootstrap
    input_topic = create_topic(brokers, partitions=3)
    topics = {name: create_topic(brokers, partitions=1) for name in ("metrics", "dlq", "late")}
    env = flow_env(brokers, input_topic, topics, window=WINDOW, lateness=LATENESS)
    generator_log = (tmp_path / "generator.log").open("wb")
    # No --duration: it sends until interrupted, and flushes before it exits.
    generator = subprocess.Popen(  # noqa: S603 - our own generator
        [
            sys.executable,
            "-m",
            "devkit.generator",
            "--realtime",
            "--rate",
            str(RATE),
            "--brokers",
            brokers,
            "--topic",
            input_topic,
            "--partitions",
            "3",
            "--users",
            "50",
            "--bad-fraction",
            "0.02",
            "--no-progress",
            "--seed",
            "3",
        ],
        cwd=REPO,
        stdout=generator_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with DataflowCluster(env, tmp_path, processes=2, workers=1) as cluster:
            wait_until(
                lambda: input_size(brokers, input_topic) >= OUTAGE_AFTER_RECORDS or generator.poll() is not None,
                timeout=OUTAGE_AFTER_RECORDS / RATE + 120,
                interval=0.5,
                message=f"the input never reached {OUTAGE_AFTER_RECORDS} records",
            )
            assert generator.poll() is None, "the generator stopped before the outage"
            kill_broker(own_broker)
            time.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
            assert generator.poll() is None, "the generator stopped during the outage"
            own_broker.up()
            assert generator.poll() is None, "the generator stopped before the broker came back"
            at_restart = input_size(brokers, input_topic)
            wait_until(
                lambda: input_size(brokers, input_topic) >= at_restart + AFTER_RESTART_RECORDS
                or generator.poll() is not None,
                timeout=AFTER_RESTART_RECORDS / RATE + 120,
                interval=1.0,
                message="the input did not grow after the broker came back",
            )
            assert generator.poll() is None, "the generator stopped after the outage"
            generator.send_signal(signal.SIGINT)
            assert generator.wait(timeout=120) == 0, "the generator lost messages"
            assert not cluster.any_exited(), f"the dataflow exited during the outage:\n{cluster.tail()}"

            inputs = read_partitions(brokers, input_topic)
            assert sum(map(len, inputs.values())) >= at_restart + AFTER_RESTART_RECORDS
            expected = expected_output(inputs, WINDOW, LATENESS)

            def latest_metrics() -> dict:
                latest = latest_by_key(collect(brokers, {"metrics": topics["metrics"]})["metrics"])
                return metrics_from_records([record.value for record in latest.values()])

            # The last window closes by wall time once every partition is idle.
            wait_until(
                lambda: latest_metrics() == expected.metrics,
                timeout=WINDOW + LATENESS + 60,
                interval=1.0,
                message="the output never reached the batch answer",
            )
            assert_exact(collect(brokers, topics), expected, inputs, revisions=True)
            assert not cluster.any_exited()
    finally:
        stop(generator)
        generator_log.close()
