"""A broker that requires SCRAM-SHA-512: the dataflow and the generator log in
through KAFKA_PROP_*, and a wrong password fails fast with a clear message."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from devkit.broker import LocalBroker, free_port
from devkit.records import create_topic
from devkit.reference import expected_output
from tests.dataflow_runner import REPO, DataflowCluster
from tests.evidence import read_to_end
from tests.outputs import assert_exact, collect, flow_env, read_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

USER, PASSWORD = "loginflow", "s3cret-for-tests"


def credentials(password: str) -> dict[str, str]:
    return {
        "KAFKA_PROP_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_PROP_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_PROP_SASL_USERNAME": USER,
        "KAFKA_PROP_SASL_PASSWORD": password,
    }


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory):
    sasl_port = free_port()
    broker = LocalBroker.on_free_ports(
        tmp_path_factory.mktemp("sasl-broker"),
        {"KAFKA_SASL_PORT": str(sasl_port), "KAFKA_SASL_USERS": f"{USER}:{PASSWORD}"},
    )
    with broker:
        yield broker, f"127.0.0.1:{sasl_port}"


def test_dataflow_and_generator_authenticate(sasl_broker, tmp_path: Path) -> None:
    broker, sasl = sasl_broker
    input_topic = create_topic(broker.bootstrap, partitions=2)
    topics = {name: create_topic(broker.bootstrap) for name in ("metrics", "dlq", "late")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "devkit.generator",
            "--brokers",
            sasl,
            "--topic",
            input_topic,
            "--partitions",
            "2",
            "--count",
            "3000",
            "--bad-fraction",
            "0.02",
            "--no-progress",
        ],
        cwd=REPO,
        env={**credentials(PASSWORD), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=120,
    )
    env = {**flow_env(sasl, input_topic, topics, bounded=True, LOG_FORMAT="kv"), **credentials(PASSWORD)}
    with DataflowCluster(env, tmp_path) as cluster:
        (finished,) = cluster.wait(120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # Read back through the plaintext listener: the check does not depend on SASL.
    inputs = read_partitions(broker.bootstrap, input_topic)
    assert sum(map(len, inputs.values())) == 3000
    assert read_to_end([finished.stderr]) == {partition: len(values) for partition, values in inputs.items()}
    assert_exact(collect(broker.bootstrap, topics), expected_output(inputs, 60, 10), inputs)


def test_wrong_password_fails_fast_with_a_clear_message(sasl_broker, tmp_path: Path) -> None:
    broker, sasl = sasl_broker
    input_topic = create_topic(broker.bootstrap, partitions=1)
    env = {**flow_env(sasl, input_topic, {"metrics": "m", "dlq": "d", "late": "l"}), **credentials("wrong")}
    started = time.monotonic()
    with DataflowCluster(env, tmp_path) as cluster:
        (finished,) = cluster.wait(60)
    elapsed = time.monotonic() - started
    assert finished.returncode != 0
    assert "Authentication failed" in finished.stderr and "KAFKA_BROKERS=" in finished.stderr
    # The contract: a clear error within 30 s rather than a retry loop that looks like a hang.
    assert elapsed < 30, f"took {elapsed:.1f}s"
