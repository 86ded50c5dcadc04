"""Static checks of the container files: Dockerfile, .dockerignore, docker-compose.yaml, deploy/.

The build machines have no Docker engine, so nothing here builds an image or
starts a container. Instead every claim the files make is checked against the
code they run: compose environment variables must be settings loginflow,
Bytewax or the wrapper scripts really read (with values `Settings.from_env`
accepts); service commands must parse with the generator's and `bytewax.run`'s
own argument parsers, the dataflow's through the real `scripts/run-dataflow`;
`scripts/init-recovery` is run twice for real; the topics, ports, volumes and
Prometheus targets must agree with each other; the Dockerfile must install
exactly requirements.txt on a pinned CPython 3.12 slim base, as a non-root
user, and copy only paths that exist and that .dockerignore lets through.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import bytewax.run as bytewax_run
import pytest
import yaml

from devkit.generator import cli as generator_cli
from operators.kafka.topics import metrics_topic_config
from operators.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RUN_DATAFLOW = ROOT / "scripts" / "run-dataflow"
INIT_RECOVERY = ROOT / "scripts" / "init-recovery"


@cache
def compose() -> dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), "docker-compose.yaml is not a mapping"
    return data


# One service per Bytewax process: dataflow-0, dataflow-1, ... (README: scale out
# by adding one and extending BYTEWAX_ADDRESSES).
DATAFLOW_SERVICES = tuple(
    sorted((n for n in compose()["services"] if re.fullmatch(r"dataflow-\d+", n)), key=lambda n: int(n[9:]))
)
APP_SERVICES = ("recovery-init", "generator", *DATAFLOW_SERVICES)
ONE_SHOT_SERVICES = ("topic-init", "recovery-init")
ALL_SERVICES = ("kafka", *ONE_SHOT_SERVICES, "generator", "dataflow-0", "dataflow-1", "prometheus", "grafana")

# Bytewax reads these at run time in its native extension (the dataflow API
# and its /metrics endpoint); `bytewax.run --help` does not list them. The test
# below checks that each name really occurs in the installed extension.
BYTEWAX_RUNTIME_ENV = (
    "BYTEWAX_DATAFLOW_API_ENABLED",
    "BYTEWAX_DATAFLOW_API_PORT",
    "BYTEWAX_DATAFLOW_API_CACHE_PATH",
)
BYTEWAX_API_DEFAULT_PORT = 3030


# --------------------------------------------------------------------------- loading


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yaml has no service {name!r}"
    return services[name]


@cache
def dockerfile_instructions() -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment line inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued instruction"
    return tuple(instructions)


def instructions(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile_instructions() if kw == keyword]


@cache
def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions("ENV"):
        for word in shlex.split(args):
            name, sep, value = word.partition("=")
            assert sep, f"ENV {args!r}: use the NAME=value form"
            env[name] = value
    return env


def exec_form(keyword: str) -> list[str]:
    """The last ENTRYPOINT/CMD, which must be in exec (JSON) form."""
    found = instructions(keyword)
    assert found, f"Dockerfile has no {keyword}"
    value = json.loads(found[-1])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{keyword} is not in exec form"
    return value


def copy_instructions() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY, flags such as --chmod dropped."""
    copies = []
    for args in instructions("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        assert len(words) >= 2, f"COPY {args!r}"
        copies.append((words[:-1], words[-1]))
    return copies


def workdir() -> PurePosixPath:
    dirs = instructions("WORKDIR")
    assert dirs, "Dockerfile has no WORKDIR"
    return PurePosixPath(dirs[-1])


@cache
def image_files() -> dict[PurePosixPath, Path]:
    """Every file the image gets from the build context: image path -> repo path."""
    files: dict[PurePosixPath, Path] = {}
    for sources, dest in copy_instructions():
        dest_path = PurePosixPath(dest) if dest.startswith("/") else workdir() / dest
        for source in sources:
            src = ROOT / source
            if src.is_dir():
                for path in sorted(src.rglob("*")):
                    rel = path.relative_to(ROOT).as_posix()
                    if path.is_file() and not dockerignored(rel):
                        files[dest_path / path.relative_to(src).as_posix()] = path
            elif src.is_file() and not dockerignored(source):
                to_dir = dest.endswith("/") or len(sources) > 1
                files[dest_path / src.name if to_dir else dest_path] = src
    return files


def service_env(name: str) -> dict[str, str]:
    """The environment a compose service sets, values as strings."""
    env = service(name).get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def container_env(name: str) -> dict[str, str]:
    """What a loginflow-image container sees: the image's ENV, then the service's."""
    return {**dockerfile_env(), **service_env(name)}


def volume_mounts(name: str) -> dict[str, str]:
    """Container path -> named volume or host path, for short-syntax volumes."""
    mounts = {}
    for spec in service(name).get("volumes") or []:
        source, target = spec.split(":")[:2]
        mounts[target] = source
    return mounts


def published_ports(name: str) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) for short-syntax ports."""
    ports = []
    for spec in service(name).get("ports") or []:
        parts = str(spec).split(":")
        assert len(parts) == 3, f"{name}: publish as 'IP:HOST:CONTAINER', got {spec!r}"
        ports.append((parts[0], int(parts[1]), int(parts[2])))
    return ports


# --------------------------------------------------------------------------- .dockerignore


def _ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated context paths."""
    pattern = pattern.strip().strip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


@cache
def dockerignore_rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _ignore_pattern(line[1:] if negate else line)))
    return tuple(rules)


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in dockerignore_rules():
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


# --------------------------------------------------------------------------- names that exist


@cache
def readme_settings() -> tuple[frozenset[str], tuple[str, ...]]:
    """Names in the README settings table, and the prefixes written as `NAME_*`."""
    names = re.findall(r"^\| `([A-Z][A-Z0-9_]*\*?)` \|", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    assert "KAFKA_BROKERS" in names, "README settings table not found"
    return (
        frozenset(n for n in names if not n.endswith("*")),
        tuple(n[:-1] for n in names if n.endswith("*")),
    )


@cache
def bytewax_cli_env() -> frozenset[str]:
    """The `[env: NAME]` variables `python -m bytewax.run --help` lists."""
    out = subprocess.run(
        [sys.executable, "-m", "bytewax.run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "500"},
    ).stdout
    names = frozenset(re.findall(r"\[env:\s+([A-Z0-9_]+)\]", out))
    assert {"BYTEWAX_PROCESS_ID", "BYTEWAX_ADDRESSES"} <= names, out
    return names


@cache
def bytewax_extension_bytes() -> bytes:
    spec = importlib.util.find_spec("bytewax._bytewax")
    assert spec is not None and spec.origin, "bytewax's native extension is not installed"
    return Path(spec.origin).read_bytes()


def script_env(path: Path) -> frozenset[str]:
    """Variables a wrapper script reads: every `${NAME:-default}`."""
    return frozenset(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", path.read_text(encoding="utf-8")))


@cache
def python_env() -> frozenset[str]:
    out = subprocess.run([sys.executable, "--help-env"], capture_output=True, text=True, check=True).stdout
    return frozenset(re.findall(r"^(PYTHON[A-Z0-9_]+)", out, re.M))


def unknown_env(names: set[str], *, python_too: bool = False) -> list[str]:
    settings, prefixes = readme_settings()
    known = settings | bytewax_cli_env() | set(BYTEWAX_RUNTIME_ENV) | script_env(RUN_DATAFLOW)
    known |= script_env(INIT_RECOVERY)
    if python_too:
        known |= python_env()
    return sorted(n for n in names if n not in known and not n.startswith(prefixes))


# --------------------------------------------------------------------------- topic-init


def topic_init_commands() -> Iterator[list[str]]:
    svc = service("topic-init")
    assert svc.get("entrypoint") == ["/bin/sh", "-ec"], "topic-init must stop at the first failing command"
    (script,) = svc["command"]
    for line in script.splitlines():
        if line.strip():
            yield shlex.split(line)


def _option(words: list[str], flag: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words) if w == flag]


@cache
def created_topics() -> dict[str, dict[str, Any]]:
    topics: dict[str, dict[str, Any]] = {}
    for words in topic_init_commands():
        assert words[0].endswith("/kafka-topics.sh"), words
        assert _option(words, "--bootstrap-server") == ["kafka:9092"], words
        if "--create" not in words:
            continue
        assert "--if-not-exists" in words, f"{words}: topic-init must be a no-op on a second run"
        (topic,) = _option(words, "--topic")
        configs = dict(c.split("=", 1) for c in _option(words, "--config"))
        topics[topic] = {"partitions": int(_option(words, "--partitions")[0]), "config": configs}
    return topics


# =========================================================================== compose


def test_compose_file_parses_and_has_every_service() -> None:
    services = compose()["services"]
    assert set(ALL_SERVICES) <= set(services), sorted(set(ALL_SERVICES) - set(services))
    for name in APP_SERVICES:
        svc = service(name)
        assert svc.get("image") == "loginflow:local", name
        assert svc.get("build", {}).get("context") == ".", f"{name} must build the repo's Dockerfile"
        assert svc.get("init") is True, f"{name}: run under an init so Python is not PID 1"
    for name in ONE_SHOT_SERVICES:
        assert service(name).get("restart") == "no", name


def test_every_bind_mount_is_a_path_in_the_repo() -> None:
    for name in compose()["services"]:
        for source in volume_mounts(name).values():
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source!r}, which does not exist"


def test_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name in compose()["services"]:
        for source in volume_mounts(name).values():
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source!r}"


def test_kafka_is_a_single_kraft_node_with_internal_and_host_listeners() -> None:
    kafka = service("kafka")
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", kafka["image"]), kafka["image"]
    env = service_env("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {url.split("://")[0]: url.split("://")[1] for url in env["KAFKA_LISTENERS"].split(",")}
    advertised = {url.split("://")[0]: url.split("://")[1] for url in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert set(listeners) <= set(protocols) and set(advertised) <= set(protocols)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert listeners[controller] == ":9093" and controller not in advertised
    # Containers reach the broker as kafka:9092, the host as localhost:29092.
    assert advertised["PLAINTEXT"] == "kafka:9092" and listeners["PLAINTEXT"] == ":9092"
    assert advertised["PLAINTEXT_HOST"] == "localhost:29092" and listeners["PLAINTEXT_HOST"] == ":29092"
    assert ("127.0.0.1", 29092, 29092) in published_ports("kafka")
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[name] == "1", name
    assert env["KAFKA_LOG_DIRS"] in volume_mounts("kafka")


def test_kafka_image_matches_the_broker_the_tests_run() -> None:
    pom = (ROOT / "kafka" / "pom.xml").read_text(encoding="utf-8")
    (version,) = re.findall(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert service("kafka")["image"] == f"apache/kafka:{version}"
    assert service("topic-init")["image"] == service("kafka")["image"]


def test_kafka_has_a_healthcheck_that_others_wait_for() -> None:
    health = service("kafka")["healthcheck"]
    test = " ".join(health["test"])
    assert "kafka-broker-api-versions.sh" in test and "--bootstrap-server localhost:9092" in test
    assert health["retries"] >= 3
    for name in ("topic-init", *DATAFLOW_SERVICES):
        assert service(name)["depends_on"]["kafka"]["condition"] == "service_healthy", name


def test_topic_init_creates_every_topic_the_dataflow_uses() -> None:
    topics = created_topics()
    settings = Settings.from_env(container_env("dataflow-0"))
    assert topics[settings.input_topic]["partitions"] == 3
    assert topics[settings.output_topic]["config"] == metrics_topic_config(settings)
    assert {settings.dlq_topic, settings.late_topic} <= set(topics)
    # The dataflow would give missing output topics the input's partition count.
    assert {t["partitions"] for t in topics.values()} == {3}


def test_dataflow_runs_as_two_processes_of_one_cluster() -> None:
    assert DATAFLOW_SERVICES == tuple(f"dataflow-{i}" for i in range(len(DATAFLOW_SERVICES)))
    assert len(DATAFLOW_SERVICES) >= 2, "the dataflow runs as (at least) two processes"
    envs = {name: container_env(name) for name in DATAFLOW_SERVICES}
    ids = {name: int(env["BYTEWAX_PROCESS_ID"]) for name, env in envs.items()}
    assert sorted(ids.values()) == list(range(len(DATAFLOW_SERVICES)))
    (addresses,) = {env["BYTEWAX_ADDRESSES"] for env in envs.values()}
    hosts = addresses.split(";")
    assert len(hosts) == len(DATAFLOW_SERVICES)
    for name, pid in ids.items():
        host, port = hosts[pid].rsplit(":", 1)
        assert host == name, f"process {pid} must listen on its own service name, got {hosts[pid]!r}"
        assert int(port) > 0
    for name in DATAFLOW_SERVICES:
        svc = service(name)
        assert svc["restart"] == "always", "README 'Restart policy': restart always"
        depends = svc["depends_on"]
        assert depends["topic-init"]["condition"] == "service_completed_successfully"
        assert depends["recovery-init"]["condition"] == "service_completed_successfully"
        assert "entrypoint" not in svc, "the image's entrypoint (scripts/run-dataflow) runs the dataflow"


def test_recovery_volume_is_shared_by_init_and_every_process() -> None:
    recovery_dir = dockerfile_env()["RECOVERY_DIR"]
    sources = {name: volume_mounts(name).get(recovery_dir) for name in ("recovery-init", *DATAFLOW_SERVICES)}
    assert None not in sources.values(), sources
    (volume,) = set(sources.values())
    assert volume in compose()["volumes"]
    for name in ("recovery-init", *DATAFLOW_SERVICES):
        assert container_env(name)["RECOVERY_DIR"] == recovery_dir, name


@pytest.mark.parametrize("name", DATAFLOW_SERVICES)
def test_dataflow_settings_are_accepted(name: str) -> None:
    settings = Settings.from_env(container_env(name))
    assert settings.brokers == "kafka:9092"
    assert settings.stop_at_end is False, "the compose dataflow tails the input"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_env_var_of_an_app_service_is_read_by_something(name: str) -> None:
    assert unknown_env(set(service_env(name))) == []


def test_every_env_var_of_the_image_is_read_by_something() -> None:
    assert unknown_env(set(dockerfile_env()), python_too=True) == []


def test_bytewax_runtime_env_names_exist_in_the_installed_bytewax() -> None:
    extension = bytewax_extension_bytes()
    for name in BYTEWAX_RUNTIME_ENV:
        assert name.encode() in extension, name


def _run_dataflow_argv(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """What scripts/run-dataflow passes to Python, captured by a stand-in interpreter."""
    calls = tmp_path / "calls"
    calls.mkdir()
    stub = tmp_path / "python-stub"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" > "{calls}/$(date +%s%N)-$$"\n', encoding="utf-8")
    stub.chmod(0o755)
    recovery = tmp_path / "recovery"
    run_env = {**env, "PATH": os.environ["PATH"], "RECOVERY_DIR": str(recovery), "PYTHON": str(stub)}
    subprocess.run([str(RUN_DATAFLOW)], env=run_env, check=True, timeout=60)
    argvs = [p.read_text(encoding="utf-8").split("\0")[:-1] for p in sorted(calls.iterdir())]
    runs = [argv for argv in argvs if argv[:2] == ["-m", "bytewax.run"]]
    assert len(runs) == 1, argvs
    return runs[0][2:]


@pytest.mark.parametrize("name", DATAFLOW_SERVICES)
def test_dataflow_command_is_accepted_by_bytewax_run(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert exec_form("ENTRYPOINT") == [str(workdir() / "scripts" / "run-dataflow")]
    svc = service(name)
    env = container_env(name)
    extra = svc.get("command", exec_form("CMD"))
    assert isinstance(extra, list)
    argv = _run_dataflow_argv(tmp_path, env) + extra

    for var in [v for v in os.environ if v.startswith("BYTEWAX_")]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(sys, "argv", ["python -m bytewax.run", *argv])
    args = bytewax_run._parse_args()  # exits on anything bytewax.run would refuse

    assert args.import_str == "dataflow" and workdir() / "dataflow.py" in image_files()
    assert args.recovery_directory == tmp_path / "recovery", "run-dataflow must pass RECOVERY_DIR as -r"
    assert args.snapshot_interval is not None and args.backup_interval is not None
    assert args.process_id == int(env["BYTEWAX_PROCESS_ID"])
    assert args.addresses == env["BYTEWAX_ADDRESSES"]


def test_generator_command_matches_its_cli() -> None:
    svc = service("generator")
    assert svc["entrypoint"] == ["python", "-m", "devkit.generator"]
    assert workdir() / "devkit" / "generator" / "__main__.py" in image_files()
    assert svc["restart"] == "unless-stopped"
    assert svc["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
    command = [str(word) for word in svc["command"]]
    parser = generator_cli.build_parser()
    parser.allow_abbrev = False  # the flags as the generator spells them, not prefixes
    args = parser.parse_args(command)  # exits on an unknown or malformed flag
    config = generator_cli.config_from_args(args)  # raises on inconsistent flags
    assert config.realtime and config.count is None, "the compose generator runs until stopped"
    assert args.rate > 0 and not args.to_file and not args.from_file
    assert args.brokers == "kafka:9092"
    settings = Settings.from_env(container_env("dataflow-0"))
    assert args.topic == settings.input_topic
    assert config.partitions == created_topics()[args.topic]["partitions"]


def test_recovery_init_creates_partitions_once(tmp_path: Path) -> None:
    svc = service("recovery-init")
    (entrypoint,) = svc["entrypoint"]
    assert image_files()[PurePosixPath(entrypoint)] == INIT_RECOVERY
    assert os.access(INIT_RECOVERY, os.X_OK)
    env = container_env("recovery-init")
    partitions = int(env["RECOVERY_PARTITIONS"])
    recovery = tmp_path / "recovery"
    run_env = {**env, "PATH": os.environ["PATH"], "RECOVERY_DIR": str(recovery), "PYTHON": sys.executable}

    subprocess.run([str(INIT_RECOVERY)], env=run_env, check=True, timeout=120)
    created = {p.name: p.stat().st_mtime_ns for p in recovery.glob("*.sqlite3")}
    assert len(created) == partitions

    subprocess.run([str(INIT_RECOVERY)], env=run_env, check=True, timeout=120)  # a second `up`
    assert {p.name: p.stat().st_mtime_ns for p in recovery.glob("*.sqlite3")} == created


def test_each_dataflow_process_publishes_its_metrics_port() -> None:
    host_ports = []
    for name in DATAFLOW_SERVICES:
        env = container_env(name)
        assert env["BYTEWAX_DATAFLOW_API_ENABLED"] == "true"
        port = int(env.get("BYTEWAX_DATAFLOW_API_PORT", BYTEWAX_API_DEFAULT_PORT))
        published = [(ip, host) for ip, host, container in published_ports(name) if container == port]
        assert len(published) == 1, f"{name} must publish its metrics port {port}"
        assert published[0][0] == "127.0.0.1"
        host_ports.append(published[0][1])
    assert len(set(host_ports)) == len(host_ports), host_ports


def test_prometheus_scrapes_both_dataflow_processes() -> None:
    prom = service("prometheus")
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prom["image"]), prom["image"]
    mounts = volume_mounts("prometheus")
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert ("127.0.0.1", 9090, 9090) in published_ports("prometheus")
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    targets = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]:
            targets.update(static["targets"])
    expected = set()
    for name in DATAFLOW_SERVICES:
        port = container_env(name).get("BYTEWAX_DATAFLOW_API_PORT", BYTEWAX_API_DEFAULT_PORT)
        expected.add(f"{name}:{port}")
    assert targets == expected
    # rule_files are relative to the config file, in the container as here.
    for rule_file in config["rule_files"]:
        container_path = PurePosixPath("/etc/prometheus") / rule_file
        assert mounts[str(container_path)] == f"./deploy/prometheus/{rule_file}", rule_file


# =========================================================================== Dockerfile


def test_dockerfile_base_is_a_precisely_tagged_python_312_slim() -> None:
    (base,) = instructions("FROM")
    assert re.fullmatch(r"python:3\.12\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base


def test_dockerfile_installs_exactly_requirements_txt_first() -> None:
    order = [(kw, args) for kw, args in dockerfile_instructions() if kw in {"COPY", "RUN"}]
    first_copy = next(i for i, (kw, _) in enumerate(order) if kw == "COPY")
    assert shlex.split(order[first_copy][1]) == ["requirements.txt", "./"]
    runs = [(i, args) for i, (kw, args) in enumerate(order) if kw == "RUN"]
    pip_calls = [(i, shlex.split(args)) for i, args in runs for word in shlex.split(args) if word in {"pip", "pip3"}]
    assert len(pip_calls) == 1, "exactly one pip command, in its own RUN"
    index, words = pip_calls[0]
    assert index == first_copy + 1, "install the dependencies before copying the app (layer caching)"
    assert words[:2] == ["pip", "install"] and not {"&&", ";", "||", "|"} & set(words), words
    assert [w for w in words[2:] if not w.startswith("-")] == ["requirements.txt"], words
    assert words[words.index("requirements.txt") - 1] == "-r", words
    for raw in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        assert not line or re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.]+", line), f"unpinned: {line!r}"


def test_dockerfile_runs_as_a_fixed_non_root_user() -> None:
    users = instructions("USER")
    assert users, "Dockerfile has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, f"use a fixed numeric uid, got {users[-1]!r}"
    runs = " ".join(instructions("RUN"))
    assert f"--uid {uid}" in runs
    recovery_dir = dockerfile_env()["RECOVERY_DIR"]
    api_dir = dockerfile_env()["BYTEWAX_DATAFLOW_API_CACHE_PATH"]
    chowned = re.findall(r"chown -R \S+ (\S+)", runs)
    for path in (recovery_dir, api_dir):
        assert any(path.startswith(c.rstrip("/") + "/") or path == c for c in chowned), path
    volumes = [json.loads(v) if v.startswith("[") else v.split() for v in instructions("VOLUME")]
    assert [recovery_dir] in volumes
    # The entrypoint runs after USER: the last USER applies to every container.
    keywords = [kw for kw, _ in dockerfile_instructions()]
    assert max(i for i, kw in enumerate(keywords) if kw == "USER") < keywords.index("ENTRYPOINT")


def test_dockerfile_environment() -> None:
    env = dockerfile_env()
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert workdir() == PurePosixPath("/app")


def test_dockerfile_copies_only_existing_paths_the_context_keeps() -> None:
    for sources, _ in copy_instructions():
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such path in the repo"
            assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
            if path.is_dir():
                assert any(p.endswith(".py") for p in map(str, image_files().values()) if p.startswith(str(path)))
    for script in (RUN_DATAFLOW, INIT_RECOVERY):
        assert script in image_files().values()


def test_dockerignore_keeps_the_context_clean() -> None:
    for path in (
        ".venv/bin/python",
        ".cache/kafka/x.jar",
        ".git/HEAD",
        "tests/unit/test_settings.py",
        "bench/run.py",
        "operators/__pycache__/settings.cpython-312.pyc",
        ".mypy_cache/x",
        ".ruff_cache/x",
        "README.md",
        "docker-compose.yaml",
    ):
        assert dockerignored(path), path
    for path in ("requirements.txt", "dataflow.py", "operators/runtime/settings.py", "devkit/generator/events.py"):
        assert not dockerignored(path), path
