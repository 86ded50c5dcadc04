"""deploy/kubernetes/ run as pods: network namespaces on a bridge, the manifests' commands and settings.

tests/pods.py makes the pods (see its docstring for what is faithful and what
is not). The broker is this module's own, with a listener on the bridge that
the pods reach by the ConfigMap's broker host name. The settings a test must
change are in `OVERRIDES` and `overrides()`; everything else is what the
manifests say, exactly-once included.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from devkit.broker import LocalBroker, free_ports, wait_until
from devkit.generator.events import GeneratorConfig, generate
from devkit.records import READ_COMMITTED, create_topic, produce
from tests.eos_helpers import duplicate_counts, read_outputs
from tests.evidence import PartitionStart, committed_epoch, log_texts, partition_starts, read_to_end
from tests.hardening import check_accounted, read_log
from tests.pods import Kubelet, Pod, PodNetwork, kubelet, make_pods, pod_fqdn
from tests.static.test_kubernetes import KUBE_DIR, settings_env

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

NAMESPACE = "loginflow"
WINDOW, LATENESS = 60, 10
RUN_TIMEOUT_S = 180
MOVE = KUBE_DIR / "rescale" / "move-partitions"

# What differs from the manifests, and why:
OVERRIDES: dict[str, str | None] = {
    # The test broker's listener is plaintext (TLS and SASL_SSL: tests/e2e/test_tls.py).
    "KAFKA_PROP_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_PROP_SASL_MECHANISM": None,
    "KAFKA_PROP_SASL_USERNAME": None,
    "KAFKA_PROP_SASL_PASSWORD": None,
    # devkit/reference.py answers in clear values.
    "PSEUDONYMIZE": None,
    "PSEUDONYMIZE_KEY": None,
    # The checks read the kv log lines; a bounded run ends, so a test does.
    "LOG_FORMAT": "kv",
    "STOP_AT_END": "true",
    # Snapshots (and so commits) every second, so a kill lands after one.
    "SNAPSHOT_INTERVAL_SECONDS": "1",
    "WINDOW_SECONDS": str(WINDOW),
    "ALLOWED_LATENESS_SECONDS": str(LATENESS),
}


class Cluster:
    """This module's bridge, pod namespaces and broker."""

    def __init__(self, network: PodNetwork, broker: LocalBroker, pod_bootstrap: str) -> None:
        self.network = network
        self.broker = broker
        self.pod_bootstrap = pod_bootstrap


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with PodNetwork(uuid.uuid4().hex[:4]) as network:
        for index in range(3):
            network.plug(index)
        broker_host = settings_env()["KAFKA_BROKERS"].split(",")[0].rsplit(":", 1)[0]
        network.publish(
            {broker_host: network.gateway, **{pod_fqdn(i, NAMESPACE): network.addresses[i] for i in range(3)}}
        )
        port, controller_port, pod_port = free_ports(3)
        listeners = f"PLAINTEXT://127.0.0.1:{port},PODS://{network.gateway}:{pod_port}"
        advertised = f"PLAINTEXT://127.0.0.1:{port},PODS://{broker_host}:{pod_port}"
        extra = (
            f"listeners={listeners},CONTROLLER://127.0.0.1:{controller_port}\n"
            f"advertised.listeners={advertised}\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PODS:PLAINTEXT\n"
        )
        state = tmp_path_factory.mktemp("pods-broker")
        with LocalBroker(port, controller_port, state, {"KAFKA_EXTRA_CONFIG": extra}) as broker:
            yield Cluster(network, broker, f"{broker_host}:{pod_port}")


class Job:
    """One test's topics, input and pods."""

    def __init__(self, cluster: Cluster, tmp_path: Path, pods: int) -> None:
        self.brokers = cluster.broker.bootstrap
        self.input = create_topic(self.brokers, partitions=3)
        self.topics = {name: create_topic(self.brokers) for name in ("metrics", "dlq", "late")}
        self.all_pods = make_pods(cluster.network, tmp_path, 3)
        self.pods = self.all_pods[:pods]
        self.tmp_path = tmp_path
        self.overrides: dict[str, str | None] = {
            **OVERRIDES,
            "KAFKA_BROKERS": cluster.pod_bootstrap,
            "INPUT_TOPIC": self.input,
            "OUTPUT_TOPIC": self.topics["metrics"],
            "DLQ_TOPIC": self.topics["dlq"],
            "LATE_TOPIC": self.topics["late"],
            # Unique to the test, as the manifests ask it to be unique to the release.
            "TRANSACTIONAL_ID_PREFIX": f"loginflow-{self.input}",
        }

    def produce(self, count: int, start: float, seed: int, batch_size: int | None = None) -> None:
        config = GeneratorConfig(
            count=count, users=300, partitions=3, skew=(3.0, 2.0, 1.0), start=start, span=1800.0,
            bad_fraction=0.02, late_fraction=0.01, late_by=120.0, seed=seed,
        )  # fmt: skip
        produce(self.brokers, self.input, [(m.partition, m.key, m.value) for m in generate(config)])

    def init_all(self, pods: list[Pod], runner: Kubelet, **overrides: str) -> None:
        for pod in pods:
            done = runner.init(pod, **overrides)
            assert done.returncode == 0, f"{pod.name} init: {done.stderr}"

    def run_bounded(self, pods: list[Pod], **init_overrides: str) -> Kubelet:
        """Init every pod, start them all, and restart failed ones until each read the input to its end."""
        with self.kubelet(pods) as runner:
            self.init_all(pods, runner, **init_overrides)
            runner.start_all()
            runner.run_to_completion(RUN_TIMEOUT_S)
        return runner

    def kubelet(self, pods: list[Pod], **settings: str) -> AbstractContextManager[Kubelet]:
        merged: dict[str, str | None] = {**self.overrides, **settings}
        return kubelet(pods, NAMESPACE, merged, self.tmp_path)

    def check_exact(self, *, revisions: bool) -> None:
        """read_committed, the output is the batch answer over the input, each result once."""
        out = read_outputs(self.brokers, self.topics, READ_COMMITTED)
        duplicates = duplicate_counts(out)
        # Revisions rewrite a metric's key; a reject or late event is still written once.
        assert duplicates["dlq"] == duplicates["late"] == 0, duplicates
        if not revisions:
            assert duplicates["metrics"] == 0, duplicates
        check_accounted(out, read_log(self.brokers, self.input), WINDOW, LATENESS, revisions=revisions)


def recovery_volume(pod: Pod) -> Path:
    return pod.volumes["recovery"]


def starts(runner: Kubelet, pods: list[Pod], run: int = -1) -> dict[int, PartitionStart]:
    """Where each input partition started in each pod's `run`-th container start."""
    return partition_starts(log_texts(runner.logs[pod.name][run] for pod in pods))


T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a window boundary


def test_two_pods_give_the_exact_answer(cluster: Cluster, tmp_path: Path) -> None:
    job = Job(cluster, tmp_path, 2)
    job.produce(12_000, T0, seed=5)
    runner = job.run_bounded(job.pods)
    assert runner.exits == {"loginflow-0": [0], "loginflow-1": [0]}, runner.tail()
    # Every input partition was read once, and each pod read some: a cluster, not two copies.
    assert sorted(starts(runner, job.pods)) == [0, 1, 2]
    assert all(starts(runner, [pod]) for pod in job.pods)
    job.check_exact(revisions=False)


def test_a_killed_pod_restarted_with_its_name_resumes(cluster: Cluster, tmp_path: Path) -> None:
    job = Job(cluster, tmp_path, 2)
    job.produce(60_000, T0, seed=6)
    pod0, pod1 = job.pods
    # Small batches stretch the run over several snapshots.
    with job.kubelet(job.pods, BATCH_SIZE="10") as runner:
        job.init_all(job.pods, runner)
        runner.start_all()

        def probed_and_snapshotted() -> bool:
            if any(process.poll() is not None for process in runner.running.values()):
                return True
            return runner.ready(pod0) and runner.ready(pod1) and committed_epoch(recovery_volume(pod1)) > 1

        wait_until(probed_and_snapshotted, timeout=RUN_TIMEOUT_S, interval=0.2, retry_on=(Exception,))
        assert all(process.poll() is None for process in runner.running.values()), runner.tail()
        runner.kill(pod1)
        runner.run_to_completion(RUN_TIMEOUT_S)
    # The peer of the killed pod lost its connection and exited on its own;
    # both were restarted (with their names, namespaces and volumes) and finished.
    assert runner.exits["loginflow-1"][0] == -9 and runner.exits["loginflow-1"][-1] == 0, runner.exits
    assert runner.exits["loginflow-0"][0] != 0 and runner.exits["loginflow-0"][-1] == 0, runner.exits
    resumed = starts(runner, job.pods)
    assert all(start.resumed for start in resumed.values()), resumed
    assert sum(start.start_offset for start in resumed.values()) > 0, resumed
    job.check_exact(revisions=False)


def test_two_pods_scaled_to_three_as_documented_resume_exactly(cluster: Cluster, tmp_path: Path) -> None:
    job = Job(cluster, tmp_path, 2)
    job.produce(12_000, T0, seed=7)
    runner = job.run_bounded(job.pods)
    job.check_exact(revisions=False)
    ends = read_to_end(log_texts(log for logs in runner.logs.values() for log in logs))
    assert sorted(ends) == [0, 1, 2], ends

    # docs/kubernetes.md "Scale": every pod stopped (above); the new pod's claim
    # and move-partitions with REPLICAS=3 over claims 0..2 mounted at /volumes/<i>.
    three = job.all_pods
    mover_view = tmp_path / "mover-volumes"
    mover_view.mkdir()
    for ordinal, pod in enumerate(three):
        (mover_view / str(ordinal)).symlink_to(recovery_volume(pod))
    moved = subprocess.run(
        ["bash", str(MOVE)],
        env={"PATH": "/usr/bin:/bin", "VOLUMES": str(mover_view), "REPLICAS": "3"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert moved.returncode == 0, moved.stderr
    # Then replicas: 3 and LOGINFLOW_REPLICAS: "3"; the pods start again.
    job.produce(6_000, T0 + 1800, seed=8)
    runner = job.run_bounded(three, LOGINFLOW_REPLICAS="3")
    hostfile = (three[0].volumes["cluster"] / "hostfile").read_text().splitlines()
    assert hostfile == [f"{pod_fqdn(i, NAMESPACE)}:2101" for i in range(3)]
    assert runner.exits == {f"loginflow-{i}": [0] for i in range(3)}, runner.tail()
    # Every partition resumed where the 2-pod run ended, whichever pod holds it now.
    resumed = starts(runner, three)
    assert {p: (s.resumed, s.start_offset) for p, s in resumed.items()} == {p: (True, end) for p, end in ends.items()}
    job.check_exact(revisions=True)
