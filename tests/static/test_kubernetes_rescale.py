"""The documented Kubernetes rescale, run for real on local directories (no cluster, no broker).

Each "pod" is a `bytewax.run` process with its own recovery directory, laid
out by the StatefulSet's init container script; `deploy/kubernetes/rescale/move-partitions`
moves the partitions between runs as docs/kubernetes.md "Scale" says. The
flow is a small running count over a TestingSource, so a resume that lost or
doubled a partition's state shows up as wrong counts. The expected counts are
computed from the input here, not written down.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.static.test_kubernetes import KUBE_DIR, KUBERNETES_VERSION, partitions, run_init

MOVE = KUBE_DIR / "rescale" / "move-partitions"
MOVER_POD = KUBE_DIR / "rescale" / "mover-pod.yaml"
KEYS = 5

FLOW = """
import os
import bytewax.operators as op
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource

flow = Dataflow("rescale")
items = op.input("inp", flow, TestingSource([(f"k{i % 5}", 1) for i in range(int(os.environ["ITEMS"]))]))
counts = op.stateful_map("count", items, lambda n, v: ((n or 0) + v, (n or 0) + v))
op.output("out", counts, StdOutSink())
"""


def move(volumes: Path, replicas: int) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "VOLUMES": str(volumes), "REPLICAS": str(replicas)}
    return subprocess.run(["bash", str(MOVE)], env=env, capture_output=True, text=True, check=False)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_cluster(tmp_path: Path, pods: int, items: int) -> Counter[str]:
    """Run the flow as `pods` processes, process i on volume recovery-i; the lines they print."""
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(pods))
    env = {**os.environ, "ITEMS": str(items), "PYTHONPATH": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bytewax.run", "rescale_flow:flow"]
            + ["-r", str(tmp_path / "volumes" / str(i)), "-s", "0", "-b", "0", "-i", str(i), "-a", addresses],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(pods)
    ]
    lines: Counter[str] = Counter()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        lines.update(line for line in out.splitlines() if line.startswith("("))
    return lines


def expected(start: int, end: int) -> Counter[str]:
    """The running count's output for items start..end-1 (key k{i % KEYS})."""
    return Counter(f"('k{i % KEYS}', {i // KEYS + 1})" for i in range(start, end))


def lay_out(tmp_path: Path, pods: int) -> Path:
    """The volumes the init container lays out for pods 0..pods-1, as tmp_path/volumes/<i>."""
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    for ordinal in range(pods):
        done = run_init(tmp_path, ordinal)
        assert done.returncode == 0, done.stderr
        (tmp_path / f"recovery-{ordinal}").rename(volumes / str(ordinal))
    return volumes


def test_mover_pod_validates_in_strict_mode() -> None:
    for doc in yaml.safe_load_all(MOVER_POD.read_text(encoding="utf-8")):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_move_spreads_partitions_and_refuses_a_broken_layout(tmp_path: Path) -> None:
    volumes = lay_out(tmp_path, 2)
    (volumes / "2").mkdir()
    done = move(volumes, 3)
    assert done.returncode == 0, done.stderr
    assert [partitions(volumes / str(i)) for i in range(3)] == [
        ["part-0.sqlite3", "part-3.sqlite3"],
        ["part-1.sqlite3"],
        ["part-2.sqlite3"],
    ]
    assert (volumes / "2" / ".loginflow-layout").exists()
    # More pods than partitions, a partition twice, or one missing: nothing moves.
    assert move(volumes, 5).returncode == 2
    (volumes / "1" / "part-2.sqlite3").write_bytes(b"")
    twice = move(volumes, 2)
    assert twice.returncode == 2
    assert "partition 2 is in both" in twice.stderr
    (volumes / "1" / "part-2.sqlite3").unlink()
    (volumes / "1" / "part-1.sqlite3").unlink()
    missing = move(volumes, 2)
    assert missing.returncode == 2
    assert missing.stderr == f"move-partitions: partition 1 of 3 is missing from {volumes}/*\n"
    assert partitions(volumes / "2") == ["part-2.sqlite3"]


@pytest.mark.timeout(300)
def test_two_pods_rescaled_to_three_and_back_resume_exactly(tmp_path: Path) -> None:
    (tmp_path / "rescale_flow.py").write_text(FLOW, encoding="utf-8")
    volumes = lay_out(tmp_path, 2)
    assert run_cluster(tmp_path, 2, 40) == expected(0, 40)
    # Scale 2 -> 3: stopped; add the new pod's volume; move; start 3 pods.
    (volumes / "2").mkdir()
    assert move(volumes, 3).returncode == 0
    done = run_init(tmp_path, 2, RECOVERY_DIR=str(volumes / "2"), LOGINFLOW_REPLICAS="3")
    assert done.returncode == 0, done.stderr
    assert run_cluster(tmp_path, 3, 75) == expected(40, 75)
    # And 3 -> 2: pod 2's volume is left empty, and its init would refuse it.
    assert move(volumes, 2).returncode == 0
    assert partitions(volumes / "2") == []
    assert run_init(tmp_path, 2, RECOVERY_DIR=str(volumes / "2")).returncode == 2
    assert run_cluster(tmp_path, 2, 100) == expected(75, 100)
