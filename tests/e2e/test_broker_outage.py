"""A broker SIGKILLed under a live dataflow and a steady generator, back after ~10 s.

The dataflow rides it out: librdkafka reconnects its consumers and producers,
the sinks' idempotent producers retry, and an idle partition does not move its
watermark with wall time until the broker confirms the partition's head again.
The answer over the whole input is exact.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dataflow_runner import REPO, DataflowCluster, stop
from tests.kafka_harness import LocalBroker, create_topic, wait_until
from tests.outputs import assert_exact, collect, flow_env, read_partitions
from tests.reference import expected_output, metrics_from_records

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

WINDOW = 5
# Longer than the outage plus librdkafka's reconnect backoff, so events the
# generator buffered during the outage still count once they arrive.
LATENESS = 30
OUTAGE_S = 10
GENERATOR_SECONDS = 30


@pytest.fixture
def own_broker(tmp_path: Path):
    broker = LocalBroker.on_free_ports(tmp_path / "broker")
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


def kill_broker(broker: LocalBroker) -> None:
    pid = int((broker.state_dir / "broker.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: broker.status() != 0, timeout=30, message="the killed broker still reports running")


def test_dataflow_rides_out_a_broker_outage(own_broker: LocalBroker, tmp_path: Path) -> None:
    brokers = own_broker.bootstrap
    input_topic = create_topic(brokers, partitions=3)
    topics = {name: create_topic(brokers, partitions=1) for name in ("metrics", "dlq", "late")}
    env = flow_env(brokers, input_topic, topics, WINDOW_SECONDS=str(WINDOW),
                   ALLOWED_LATENESS_SECONDS=str(LATENESS))
    generator_log = (tmp_path / "generator.log").open("wb")
    generator = subprocess.Popen(  # noqa: S603 - our own generator
        [sys.executable, "-m", "tools.generator", "--realtime", "--rate", "100", "--duration",
         str(GENERATOR_SECONDS), "--brokers", brokers, "--topic", input_topic, "--partitions", "3",
         "--users", "50", "--bad-fraction", "0.02", "--no-progress", "--seed", "3"],
        cwd=REPO, stdout=generator_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        with DataflowCluster(env, tmp_path, processes=2, workers=1) as cluster:
            wait_until(lambda: len(collect(brokers, {"metrics": topics["metrics"]})["metrics"]) > 0,
                       timeout=WINDOW + LATENESS + 30, message="no window closed before the outage")
            kill_broker(own_broker)
            time.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
            own_broker.up()
            assert generator.wait(timeout=GENERATOR_SECONDS + 120) == 0, "the generator lost messages"
            assert not cluster.any_exited(), f"the dataflow exited during the outage:\n{cluster.tail()}"

            inputs = read_partitions(brokers, input_topic)
            expected = expected_output(inputs, WINDOW, LATENESS)
            # The last window closes by wall time once every partition is idle.
            wait_until(
                lambda: metrics_from_records([r.value for r in collect(brokers, topics)["metrics"]])
                == expected.metrics,
                timeout=WINDOW + LATENESS + 60, interval=1.0,
                message="the output never reached the batch answer",
            )
            assert_exact(collect(brokers, topics), expected, inputs)
            assert not cluster.any_exited()
    finally:
        stop(generator)
        generator_log.close()
