"""Static checks of deploy/kubernetes/: schemas offline, and the manifests held to the code.

No cluster is needed. Every document is validated in strict mode (unknown
fields are errors) against the Kubernetes 1.31 schemas that
`kubernetes-validate` bundles. Then each claim the manifests make is checked
against what it relies on: the ConfigMap's and Secret's keys are variables
`Settings.from_env` reads (recorded by calling it, not listed here), the
command is the Dockerfile's entrypoint, every port and name the hostfile is
built from agrees with the Services and with what `bytewax.run` parses, the
probes hit the path and port the dataflow API serves, and the init container's
script is run for real on temporary directories.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import ItemsView, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import bytewax.run as bytewax_run
import kubernetes_validate
import pytest
import yaml

from operators.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBE_DIR = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
KUBERNETES_VERSION = "1.31.0"
REQUIREMENTS_DEV = ROOT / "requirements-dev.txt"


# --------------------------------------------------------------------------- loading


@cache
def kustomization() -> dict[str, Any]:
    data = yaml.safe_load((KUBE_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@cache
def documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, document) for every resource the kustomization lists."""
    docs = []
    for name in kustomization()["resources"]:
        for doc in yaml.safe_load_all((KUBE_DIR / name).read_text(encoding="utf-8")):
            assert isinstance(doc, dict), f"{name}: a document is not a mapping"
            docs.append((name, doc))
    return tuple(docs)


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for _, d in documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def statefulset() -> dict[str, Any]:
    return one("StatefulSet")


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = statefulset()["spec"]["template"]["spec"]
    return spec


def container(name: str, *, init: bool = False) -> dict[str, Any]:
    found = [c for c in pod_spec()["initContainers" if init else "containers"] if c["name"] == name]
    assert len(found) == 1, f"no container {name!r}"
    return found[0]


def dataflow() -> dict[str, Any]:
    return container("dataflow")


def init_container() -> dict[str, Any]:
    return container("init-recovery", init=True)


def plain_env(c: dict[str, Any]) -> dict[str, str]:
    """The container's `env` entries that have a literal value."""
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def field_env(c: dict[str, Any]) -> dict[str, str]:
    """The container's `env` entries set from the pod's own fields (downward API)."""
    return {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c.get("env", []) if "valueFrom" in e}


def settings_env() -> dict[str, str]:
    """What the dataflow container gets from the ConfigMap and the Secret (envFrom)."""
    env: dict[str, str] = {}
    for source in dataflow()["envFrom"]:
        if "configMapRef" in source:
            env.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(one("Secret", source["secretRef"]["name"])["stringData"])
    return env


def port(c: dict[str, Any], name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    return int(ports[name])


@cache
def dockerfile_env() -> dict[str, str]:
    """The image's ENV (the Dockerfile writes it as NAME=value pairs)."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in line[4:].split()))
    return env


def dockerfile_exec_form(keyword: str) -> list[str]:
    lines = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines() if line.startswith(keyword + " ")]
    value = json.loads(lines[-1][len(keyword) + 1 :])
    assert isinstance(value, list)
    return value


class RecordingEnv(Mapping[str, str]):
    """A Mapping that records every name it is asked for, and whether it was iterated."""

    def __init__(self, data: Mapping[str, str]) -> None:
        self.data = dict(data)
        self.asked: set[str] = set()
        self.iterated = False

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self.data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        self.iterated = True
        return iter(self.data)

    def items(self) -> ItemsView[str, str]:
        # Mapping.items() would look every name up, which is not asking for it.
        self.iterated = True
        return self.data.items()

    def __len__(self) -> int:
        return len(self.data)


def names_settings_reads(env: Mapping[str, str]) -> tuple[set[str], Settings]:
    recording = RecordingEnv(env)
    settings = Settings.from_env(recording)
    # KAFKA_PROP_* are read by iterating the environment; only those become client properties.
    assert recording.iterated
    read = set(recording.asked)
    read |= {name for name in env if name.startswith("KAFKA_PROP_") and len(name) > len("KAFKA_PROP_")}
    return read, settings


# --------------------------------------------------------------------------- schemas


def test_kubernetes_validate_is_pinned() -> None:
    pins = REQUIREMENTS_DEV.read_text(encoding="utf-8").splitlines()
    assert f"kubernetes-validate=={kubernetes_validate.__version__}" in pins


def test_kustomization_lists_every_manifest_file() -> None:
    files = {p.name for p in KUBE_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization()["resources"]) == sorted(files)
    assert kustomization()["namespace"] == one("Namespace")["metadata"]["name"]
    # The image name the kustomization retags is the one the pods run.
    assert [i["name"] for i in kustomization()["images"]] == ["loginflow"]
    assert {c["image"] for c in pod_spec()["initContainers"] + pod_spec()["containers"]} == {"loginflow"}


@pytest.mark.parametrize("index", range(len(documents())), ids=[f"{f}:{d['kind']}" for f, d in documents()])
def test_every_document_validates_in_strict_mode(index: int) -> None:
    _, doc = documents()[index]
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.31"


def test_strict_validation_rejects_an_unknown_nested_field() -> None:
    # The check above can fail: a misspelt field deep in the pod template is caught.
    doc = copy.deepcopy(statefulset())
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = doc["spec"]["template"]["spec"]["containers"][
        0
    ].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


# --------------------------------------------------------------------------- settings


def test_every_configmap_and_secret_key_is_a_setting() -> None:
    env = settings_env()
    read, _ = names_settings_reads(env)
    assert "NOT_A_SETTING" not in names_settings_reads({"NOT_A_SETTING": "x"})[0]
    assert sorted(set(env) - read) == []


def test_settings_are_accepted_and_exactly_once_with_a_release_prefix() -> None:
    env = settings_env()
    _, settings = names_settings_reads(env)
    assert settings.processing_guarantee == "exactly-once"
    # Set explicitly, not derived from the topic names: unique to the release.
    assert settings.transactional_id_prefix == env["TRANSACTIONAL_ID_PREFIX"]
    assert settings.transactional_id_prefix != Settings.from_env({}).transactional_id_prefix
    assert settings.kafka_props["sasl.username"] == env["KAFKA_PROP_SASL_USERNAME"]


def test_secret_holds_only_obvious_placeholders() -> None:
    secret = one("Secret")
    assert "data" not in secret
    assert set(secret["stringData"]) == {"KAFKA_PROP_SASL_USERNAME", "KAFKA_PROP_SASL_PASSWORD", "PSEUDONYMIZE_KEY"}
    assert all(value.startswith("CHANGE-ME") for value in secret["stringData"].values())
    assert not set(secret["stringData"]) & set(one("ConfigMap")["data"])


def test_every_other_env_var_is_read_by_the_scripts_or_bytewax() -> None:
    scripts = (ROOT / "scripts" / "run-dataflow").read_text(encoding="utf-8")
    scripts += (ROOT / "scripts" / "init-recovery").read_text(encoding="utf-8")
    bytewax_text = Path(bytewax_run.__file__).read_text(encoding="utf-8")
    extension = b"".join(p.read_bytes() for p in Path(bytewax_run.__file__).parent.glob("_bytewax*.so"))
    unread = [
        name
        for name in {**plain_env(dataflow()), **field_env(dataflow())}
        if "${" + name not in scripts and f'"{name}"' not in bytewax_text and name.encode() not in extension
    ]
    assert unread == []


# --------------------------------------------------------------------------- command, ports, probes


def test_command_is_the_image_entrypoint() -> None:
    assert dataflow()["command"] == dockerfile_exec_form("ENTRYPOINT")
    assert dataflow().get("args", []) == dockerfile_exec_form("CMD")


def test_bytewax_gets_the_pod_ordinal_and_the_hostfile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sts = statefulset()
    env = plain_env(dataflow())
    assert field_env(dataflow())["BYTEWAX_POD_NAME"] == "metadata.name"
    assert env["BYTEWAX_STATEFULSET_NAME"] == sts["metadata"]["name"]
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("a:1\nb:2\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["bytewax.run", "dataflow"])
    for name in ("BYTEWAX_PROCESS_ID", "BYTEWAX_ADDRESSES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BYTEWAX_POD_NAME", f"{sts['metadata']['name']}-1")
    monkeypatch.setenv("BYTEWAX_STATEFULSET_NAME", env["BYTEWAX_STATEFULSET_NAME"])
    monkeypatch.setenv("BYTEWAX_HOSTFILE_PATH", str(hostfile))
    args = bytewax_run._parse_args()
    assert (args.process_id, args.addresses) == (1, "a:1;b:2")
    # The hostfile the init container writes is where the dataflow reads it, in a shared volume.
    assert env["BYTEWAX_HOSTFILE_PATH"] == plain_env(init_container())["HOSTFILE"]
    mount_of = {m["name"]: m["mountPath"] for m in dataflow()["volumeMounts"]}
    assert str(Path(env["BYTEWAX_HOSTFILE_PATH"]).parent) == mount_of["cluster"]


def test_headless_service_and_the_hostfile_agree_on_names_and_port() -> None:
    sts = statefulset()
    svc = one("Service", sts["spec"]["serviceName"])
    init_env = plain_env(init_container())
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert init_env["SERVICE_NAME"] == svc["metadata"]["name"]
    assert init_env["STATEFULSET_NAME"] == sts["metadata"]["name"]
    assert int(init_env["LOGINFLOW_REPLICAS"]) == sts["spec"]["replicas"]
    assert int(init_env["RECOVERY_LAYOUT_REPLICAS"]) <= int(init_env["RECOVERY_PARTITIONS"])
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["port"] == port(dataflow(), "process") == int(init_env["PROCESS_PORT"])
    assert svc_port["targetPort"] == "process"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"


def test_metrics_port_and_probes_hit_what_the_dataflow_api_serves() -> None:
    env = plain_env(dataflow())
    assert env["BYTEWAX_DATAFLOW_API_ENABLED"] == "true"
    api_port = int(env["BYTEWAX_DATAFLOW_API_PORT"])
    assert port(dataflow(), "metrics") == api_port
    (svc_port,) = one("Service", "loginflow-metrics")["spec"]["ports"]
    assert (svc_port["port"], svc_port["targetPort"]) == (api_port, "metrics")
    extension = b"".join(p.read_bytes() for p in Path(bytewax_run.__file__).parent.glob("_bytewax*.so"))
    assert b"/metrics" in extension
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert dataflow()[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe


def test_services_and_budget_select_the_pods() -> None:
    labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert statefulset()["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for svc in (d for _, d in documents() if d["kind"] == "Service"):
        assert svc["spec"]["selector"].items() <= labels.items()
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --------------------------------------------------------------------------- security and volumes


def test_pod_is_non_root_with_a_read_only_root_and_volumes_where_it_writes() -> None:
    spec = pod_spec()
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    image = dockerfile_env()
    for c in spec["initContainers"] + spec["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
        assert "memory" in c["resources"]["limits"], c["name"]
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, c["name"]
    mounts = {m["mountPath"]: m["name"] for m in dataflow()["volumeMounts"]}
    # Every directory the image says the dataflow writes to is a volume.
    assert mounts[image["RECOVERY_DIR"]] == "recovery"
    assert mounts[image["BYTEWAX_DATAFLOW_API_CACHE_PATH"]] == "api"
    init_mounts = {m["mountPath"]: m["name"] for m in init_container()["volumeMounts"]}
    assert init_mounts[image["RECOVERY_DIR"]] == "recovery"


def test_one_read_write_once_recovery_volume_per_pod() -> None:
    (claim,) = statefulset()["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "recovery"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "recovery" not in {v["name"] for v in pod_spec()["volumes"]}
    assert statefulset()["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }


# --------------------------------------------------------------------------- the init container, run


def run_init(tmp_path: Path, ordinal: int, **overrides: str) -> subprocess.CompletedProcess[str]:
    """Run the init container's script as pod `loginflow-<ordinal>` with its recovery volume in tmp_path."""
    c = init_container()
    assert c["command"][:2] == ["bash", "-ec"]
    volume = tmp_path / f"recovery-{ordinal}"
    volume.mkdir(exist_ok=True)
    (tmp_path / "cluster").mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        **plain_env(c),
        "POD_NAME": f"{statefulset()['metadata']['name']}-{ordinal}",
        "POD_NAMESPACE": "ns",
        "RECOVERY_DIR": str(volume),
        "PYTHON": sys.executable,
        "HOSTFILE": str(tmp_path / "cluster" / "hostfile"),
        **overrides,
    }
    return subprocess.run(["bash", "-ec", c["command"][2]], env=env, capture_output=True, text=True, check=False)


def partitions(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("part-*.sqlite3"))


def test_init_writes_the_hostfile_from_the_headless_names(tmp_path: Path) -> None:
    done = run_init(tmp_path, 0)
    assert done.returncode == 0, done.stderr
    sts = statefulset()
    expected = [
        f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}.ns.svc.cluster.local:{port(dataflow(), 'process')}"
        for i in range(sts["spec"]["replicas"])
    ]
    assert (tmp_path / "cluster" / "hostfile").read_text(encoding="utf-8").splitlines() == expected


def test_init_gives_each_pod_its_partitions_once(tmp_path: Path) -> None:
    replicas = int(plain_env(init_container())["RECOVERY_LAYOUT_REPLICAS"])
    assert replicas == statefulset()["spec"]["replicas"]
    count = int(plain_env(init_container())["RECOVERY_PARTITIONS"])
    held = []
    for ordinal in range(replicas):
        done = run_init(tmp_path, ordinal)
        assert done.returncode == 0, done.stderr
        held.append(partitions(tmp_path / f"recovery-{ordinal}"))
        assert held[-1] == sorted(f"part-{k}.sqlite3" for k in range(ordinal, count, replicas))
    # The pods together hold every partition exactly once.
    assert sorted(sum(held, [])) == sorted(f"part-{k}.sqlite3" for k in range(count))
    # A restart leaves the volume as it is (the same files, untouched).
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "recovery-0").iterdir()}
    again = run_init(tmp_path, 0)
    assert again.returncode == 0, again.stderr
    assert "left as it is" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "recovery-0").iterdir()} == before


def test_init_recovers_from_a_cut_short_creation(tmp_path: Path) -> None:
    volume = tmp_path / "recovery-1"
    (volume / ".new").mkdir(parents=True)
    (volume / "part-1.sqlite3").write_bytes(b"")
    done = run_init(tmp_path, 1)
    assert done.returncode == 0, done.stderr
    assert partitions(volume) == ["part-1.sqlite3", "part-3.sqlite3"]
    assert not (volume / ".new").exists()


def test_init_does_not_create_partitions_for_a_pod_added_later(tmp_path: Path) -> None:
    # Fresh partitions there would duplicate another pod's, which Bytewax does not notice.
    done = run_init(tmp_path, 2, LOGINFLOW_REPLICAS="3")
    assert done.returncode == 2
    assert "loginflow-2 was added after RECOVERY_LAYOUT_REPLICAS=2" in done.stderr
    assert partitions(tmp_path / "recovery-2") == []


def test_init_refuses_a_laid_out_volume_left_without_partitions(tmp_path: Path) -> None:
    assert run_init(tmp_path, 1).returncode == 0
    for path in (tmp_path / "recovery-1").glob("part-*"):
        path.unlink()
    done = run_init(tmp_path, 1)
    assert done.returncode == 2
    assert "holds no recovery partition; move one here first" in done.stderr
    assert partitions(tmp_path / "recovery-1") == []


def test_init_refuses_partitions_it_did_not_lay_out(tmp_path: Path) -> None:
    volume = tmp_path / "recovery-0"
    volume.mkdir()
    (volume / "part-2.sqlite3").write_bytes(b"")
    done = run_init(tmp_path, 0)
    assert done.returncode == 2
    assert re.fullmatch(r"loginflow: .* holds partitions but no .*\n", done.stderr)
    assert partitions(volume) == ["part-2.sqlite3"]


def test_init_refuses_more_replicas_than_partitions(tmp_path: Path) -> None:
    done = run_init(tmp_path, 0, LOGINFLOW_REPLICAS="5", RECOVERY_PARTITIONS="4")
    assert done.returncode == 2
    assert done.stderr == "loginflow: LOGINFLOW_REPLICAS=5 exceeds RECOVERY_PARTITIONS=4; every pod needs a partition\n"
    assert partitions(tmp_path / "recovery-0") == []
