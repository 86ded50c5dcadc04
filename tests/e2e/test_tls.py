"""A broker with SSL and SASL_SSL listeners, its CA made on the spot by scripts/kafka:
the dataflow and the generator connect through each with KAFKA_PROP_*, and a
CA that did not sign the broker's certificate stops the start with one line
naming KAFKA_PROP_SSL_CA_LOCATION."""

import subprocess
import sys
from pathlib import Path

import pytest

from devkit.broker import LocalBroker, free_ports
from devkit.records import create_topic
from devkit.reference import expected_output
from tests.dataflow_runner import REPO, DataflowCluster
from tests.evidence import read_to_end
from tests.outputs import assert_exact, collect, flow_env, read_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

USER, PASSWORD = "loginflow", "s3cret-for-tls-tests"


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory):
    ssl_port, sasl_ssl_port = free_ports(2)
    state_dir = tmp_path_factory.mktemp("tls-broker")
    broker = LocalBroker.on_free_ports(
        state_dir,
        {
            "KAFKA_SSL_PORT": str(ssl_port),
            "KAFKA_SASL_SSL_PORT": str(sasl_ssl_port),
            "KAFKA_SASL_USERS": f"{USER}:{PASSWORD}",
        },
    )
    with broker:
        ca = state_dir / "tls" / "ca.pem"
        yield broker, {"SSL": f"127.0.0.1:{ssl_port}", "SASL_SSL": f"127.0.0.1:{sasl_ssl_port}"}, ca


def client_props(protocol: str, ca: Path) -> dict[str, str]:
    props = {"KAFKA_PROP_SECURITY_PROTOCOL": protocol, "KAFKA_PROP_SSL_CA_LOCATION": str(ca)}
    if protocol == "SASL_SSL":
        props |= {
            "KAFKA_PROP_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_PROP_SASL_USERNAME": USER,
            "KAFKA_PROP_SASL_PASSWORD": PASSWORD,
        }
    return props


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_dataflow_and_generator_over_tls(tls_broker, protocol: str, tmp_path: Path) -> None:
    broker, listeners, ca = tls_broker
    props = client_props(protocol, ca)
    input_topic = create_topic(broker.bootstrap, partitions=2)
    topics = {name: create_topic(broker.bootstrap) for name in ("metrics", "dlq", "late")}
    subprocess.run(
        [sys.executable, "-m", "devkit.generator", "--brokers", listeners[protocol], "--topic", input_topic]
        + ["--partitions", "2", "--count", "3000", "--bad-fraction", "0.02", "--no-progress"],
        cwd=REPO,
        env={**props, "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=120,
    )
    env = {**flow_env(listeners[protocol], input_topic, topics, bounded=True, LOG_FORMAT="kv"), **props}
    with DataflowCluster(env, tmp_path) as cluster:
        (finished,) = cluster.wait(120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # Read back through the plaintext listener: the check does not depend on TLS.
    inputs = read_partitions(broker.bootstrap, input_topic)
    assert sum(map(len, inputs.values())) == 3000
    assert read_to_end([finished.stderr]) == {partition: len(values) for partition, values in inputs.items()}
    assert_exact(collect(broker.bootstrap, topics), expected_output(inputs, 60, 10), inputs)


def test_a_wrong_ca_stops_with_one_line_naming_the_setting(tls_broker, tmp_path: Path) -> None:
    broker, listeners, _ = tls_broker
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=another CA"]
        + ["-keyout", str(tmp_path / "other-ca.key"), "-out", str(other_ca)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    input_topic = create_topic(broker.bootstrap, partitions=1)
    env = {
        **flow_env(listeners["SSL"], input_topic, {"metrics": "m", "dlq": "d", "late": "l"}),
        **client_props("SSL", other_ca),
    }
    with DataflowCluster(env, tmp_path) as cluster:
        (finished,) = cluster.wait(60)
    assert finished.returncode != 0
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("loginflow: cannot read metadata for INPUT_TOPIC="), finished.stderr[-3000:]
    # Only the untrusted-certificate path says this; the metadata timeout would give
    # librdkafka's "Broker transport failure" instead.
    assert "set KAFKA_PROP_SSL_CA_LOCATION to the PEM file of the CA that signed it" in last
