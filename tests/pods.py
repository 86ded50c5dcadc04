"""The StatefulSet's pods run as a kubelet would run them, without a cluster.

Each pod is a network namespace with its own address on a private bridge,
reached through a veth pair, and a name the other pods resolve: the
headless Service's DNS becomes each namespace's /etc/hosts (`ip netns exec`
mounts /etc/netns/<namespace>/hosts there). Its containers are the
manifests' commands, with the environment the manifests give them (Dockerfile
ENV, ConfigMap, Secret, `env`, the downward API), the volume mount paths
mapped to directories of the pod's own. What a container image would hold
at /app is this checkout, and the container runs as root here, not as user
10001: the test directories are root's.

This needs root and iproute2 (`ip netns`, veth, bridge). Without them the
tests fail, saying so; they do not skip.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.dataflow_runner import REPO, stop
from tests.static.test_kubernetes import (
    dataflow,
    dockerfile_env,
    field_env,
    plain_env,
    pod_spec,
    settings_env,
    statefulset,
)

NETNS_ETC = Path("/etc/netns")
IMAGE_WORKDIR = "/app"


def ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed: {done.stderr.strip()} (the pod tests need root and iproute2)")


def require_network_namespaces() -> None:
    """Fail, with what is missing, on a machine where the pods cannot be made."""
    if os.geteuid() != 0:
        pytest.fail("the pod tests make network namespaces and need root (docs/development.md)")
    if shutil.which("ip") is None:
        pytest.fail("the pod tests need iproute2's `ip` (requirements-system.txt, scripts/system-packages)")


@dataclass
class Pod:
    """One pod of the StatefulSet: its name, its namespace and address, and the directories of its volumes."""

    name: str
    netns: str
    address: str
    root: Path
    volumes: dict[str, Path] = field(default_factory=dict)


class PodNetwork:
    """A bridge with the gateway address, and a network namespace per pod plugged into it."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 250)}"
        self.gateway = f"{self.subnet}.1"
        self.bridge = f"lfbr{tag}"
        self.namespaces: list[str] = []
        self.addresses: list[str] = []

    def __enter__(self) -> PodNetwork:
        require_network_namespaces()
        ip("link", "add", "name", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        return self

    def plug(self, index: int) -> tuple[str, str]:
        """A namespace with loopback and eth0 at the pod's address, routed through the bridge."""
        netns, address = f"lf{self.tag}-{index}", f"{self.subnet}.{10 + index}"
        host_end, pod_end = f"lfv{self.tag}{index}", f"lfp{self.tag}{index}"
        ip("netns", "add", netns)
        self.namespaces.append(netns)
        ip("link", "add", host_end, "type", "veth", "peer", "name", pod_end)
        ip("link", "set", host_end, "master", self.bridge, "up")
        ip("link", "set", pod_end, "netns", netns)
        ip("link", "set", "lo", "up", netns=netns)
        ip("link", "set", pod_end, "name", "eth0", netns=netns)
        ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
        ip("link", "set", "eth0", "up", netns=netns)
        ip("route", "add", "default", "via", self.gateway, netns=netns)
        self.addresses.append(address)
        return netns, address

    def publish(self, names: Mapping[str, str]) -> None:
        """Every namespace resolves these names (name -> address), as cluster DNS would."""
        hosts = "127.0.0.1 localhost\n" + "".join(f"{address} {name}\n" for name, address in names.items())
        for netns in self.namespaces:
            (NETNS_ETC / netns).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / netns / "hosts").write_text(hosts, encoding="utf-8")

    def __exit__(self, *exc: object) -> None:
        for netns in self.namespaces:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
            shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)


def pod_fqdn(ordinal: int, namespace: str) -> str:
    """The name the init container writes into the hostfile for pod `ordinal` (without the port)."""
    sts = statefulset()
    return f"{sts['metadata']['name']}-{ordinal}.{sts['spec']['serviceName']}.{namespace}.svc.cluster.local"


def container_env(
    container: dict[str, Any], pod: Pod, namespace: str, overrides: Mapping[str, str | None]
) -> dict[str, str]:
    """What the container's process gets: image ENV, envFrom, env, the downward API, then `overrides`."""
    fields = {"metadata.name": pod.name, "metadata.namespace": namespace}
    env = {**dockerfile_env(), **settings_env(), **plain_env(container)}
    env.update({name: fields[path] for name, path in field_env(container).items()})
    env = {name: mapped(value, container, pod) for name, value in env.items()}
    # An override of None removes the variable.
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return {"PATH": os.environ["PATH"], **env}


def mapped(value: str, container: dict[str, Any], pod: Pod) -> str:
    """A path under one of the container's mounts, or the image's /app, as the directory it is here."""
    for mount in container.get("volumeMounts", []):
        if value == mount["mountPath"] or value.startswith(mount["mountPath"] + "/"):
            return str(pod.volumes[mount["name"]]) + value[len(mount["mountPath"]) :]
    if value.startswith(IMAGE_WORKDIR + "/"):
        return str(REPO) + value[len(IMAGE_WORKDIR) :]
    return value


class Kubelet:
    """Starts the pods' dataflow containers in their namespaces and restarts those that fail."""

    def __init__(self, pods: list[Pod], namespace: str, overrides: Mapping[str, str | None], log_dir: Path) -> None:
        self.pods = pods
        self.namespace = namespace
        self.overrides = dict(overrides)
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, list[Path]] = {pod.name: [] for pod in pods}
        self.exits: dict[str, list[int]] = {pod.name: [] for pod in pods}

    def start(self, pod: Pod) -> None:
        c = dataflow()
        env = container_env(c, pod, self.namespace, {**self.overrides, "PYTHON": sys.executable})
        command = [mapped(part, c, pod) for part in [*c["command"], *c.get("args", [])]]
        # Numbered across kubelets in one directory: a later run keeps the earlier logs.
        log = self.log_dir / f"{pod.name}-{len(list(self.log_dir.glob(f'{pod.name}-*.log')))}.log"
        self.logs[pod.name].append(log)
        with log.open("wb") as handle:
            self.running[pod.name] = subprocess.Popen(  # noqa: S603 - our manifests' command
                ["ip", "netns", "exec", pod.netns, *command],
                cwd=mapped(IMAGE_WORKDIR + "/", c, pod),
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def init(self, pod: Pod, **overrides: str) -> subprocess.CompletedProcess[str]:
        """Run the pod's init container to its end, in the pod's namespace."""
        [c] = pod_spec()["initContainers"]
        env = container_env(c, pod, self.namespace, {"PYTHON": sys.executable, **overrides})
        command = [mapped(part, c, pod) for part in [*c["command"], *c.get("args", [])]]
        return subprocess.run(  # noqa: S603 - our manifests' command
            ["ip", "netns", "exec", pod.netns, *command], env=env, capture_output=True, text=True, check=False
        )

    def start_all(self) -> None:
        for pod in self.pods:
            self.start(pod)

    def kill(self, pod: Pod) -> None:
        stop(self.running[pod.name], signal.SIGKILL)

    def run_to_completion(self, timeout: float) -> None:
        """Restart every container that exits non-zero (restartPolicy Always) until all exit 0.

        Exit 0 is a bounded run (STOP_AT_END) that read its input to the end:
        here that ends the pod, where a kubelet would start it again to find
        nothing new.
        """
        deadline = time.monotonic() + timeout
        done: set[str] = set()
        while len(done) < len(self.pods):
            for pod in self.pods:
                process = self.running[pod.name]
                if pod.name in done or process.poll() is None:
                    continue
                self.exits[pod.name].append(process.returncode)
                if process.returncode == 0:
                    done.add(pod.name)
                else:
                    # A kubelet backs off before a restart (10 s at first; 1 s here).
                    time.sleep(1)
                    self.start(pod)
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"the pods did not finish in {timeout:.0f}s, exits {self.exits}:\n{self.tail()}")
            time.sleep(0.1)

    def ready(self, pod: Pod) -> bool:
        """The readiness probe: GET the container's probe path on the pod's address."""
        probe = dataflow()["readinessProbe"]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in dataflow()["ports"]}
        url = f"http://{pod.address}:{ports.get(probe['port'], probe['port'])}{probe['path']}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - http on a test bridge
                return response.status == 200
        except OSError:
            return False

    def tail(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
            for logs in self.logs.values()
            for log in logs
        )

    def stop(self) -> None:
        for process in self.running.values():
            stop(process, signal.SIGKILL)


@contextmanager
def kubelet(pods: list[Pod], namespace: str, overrides: Mapping[str, str | None], log_dir: Path) -> Iterator[Kubelet]:
    runner = Kubelet(pods, namespace, overrides, log_dir)
    try:
        yield runner
    finally:
        runner.stop()


def make_pods(network: PodNetwork, root: Path, count: int) -> list[Pod]:
    """`count` pods of the StatefulSet, pod i in the network's namespace i.

    A claim template's volume of pod i is root/volumes/<claim>-<i>, kept
    as a claim is; the emptyDirs are root/pods/<pod>/<volume>.
    """
    name = statefulset()["metadata"]["name"]
    claims = [t["metadata"]["name"] for t in statefulset()["spec"]["volumeClaimTemplates"]]
    pods = []
    for ordinal in range(count):
        netns, address = network.namespaces[ordinal], network.addresses[ordinal]
        pod = Pod(f"{name}-{ordinal}", netns, address, root / "pods" / f"{name}-{ordinal}")
        for volume in pod_spec()["volumes"]:
            pod.volumes[volume["name"]] = pod.root / volume["name"]
        for claim in claims:
            pod.volumes[claim] = root / "volumes" / f"{claim}-{pod.name}"
        for directory in pod.volumes.values():
            directory.mkdir(parents=True, exist_ok=True)
        pods.append(pod)
    return pods
