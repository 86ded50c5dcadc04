"""One measured run of one contender: topics, processes, timing, correctness, clean-up."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import hotspots, kafka_io, runner
from bench.broker import BenchBroker
from bench.contenders import Contender, Kind, RunSpec, launch, output_topic_names, profile_path
from bench.dataset import Dataset
from bench.score import contract_problems, decode_metrics, score
from devkit.records import Record, create_topics, delete_topics, list_topics

# loginflow logs this when it assigns a partition, right before its first read.
_READING = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*\breading partition\b")
_READ_TO_END = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*\bpartition read to its end\b")


@dataclass
class RunResult:
    """What one run measured; every field lands in the results JSON."""

    contender: str
    run: int
    input_topic: str
    partitions: int
    ok: bool
    error: str = ""
    messages: int = 0
    active_s: float | None = None
    events_per_s: float | None = None
    wall_s: float | None = None
    peak_rss_mib: float | None = None
    cpu_s: float | None = None
    broker_cpu_s: float | None = None
    timing: str = ""
    # loginflow only: first "reading partition" to last "partition read to its end".
    read_s: float | None = None
    # Profiled loginflow runs: share of samples per function, self and inclusive.
    hotspots: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    score: dict[str, Any] = field(default_factory=dict)
    verdict: str = "ERROR"
    notes: list[str] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HarnessSettings:
    """Harness-wide knobs that every run shares."""

    window_s: int
    lateness_s: float
    slices: str
    timeout_s: float
    quix_idle_s: float
    quix_grace_s: float
    work_dir: Path
    profile: bool = False


def _log_instants(logs: list[Path], pattern: re.Pattern[str]) -> list[float]:
    instants = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            match = pattern.match(line)
            if match:
                # asctime is local time with milliseconds after a comma.
                seconds = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
                instants.append(seconds + int(match.group(2)) / 1000)
    return instants


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_once(
    contender: Contender, dataset: Dataset, broker: BenchBroker, settings: HarnessSettings, run: int
) -> RunResult:
    """Run `contender` once over `dataset` and measure it; never raises for a contender's failure."""
    result = RunResult(contender.key, run, dataset.topic, dataset.spec.partitions, ok=False, messages=dataset.messages)
    unavailable = contender.available()
    if unavailable:
        result.error = unavailable
        result.verdict = "UNAVAILABLE"
        return result
    prefix = f"bench-{contender.key}-p{dataset.spec.partitions}-r{run}-{uuid.uuid4().hex[:8]}"
    topics = output_topic_names(contender, prefix)
    topics_before = set(list_topics(broker.bootstrap))
    if topics:
        create_topics(
            broker.bootstrap, dict.fromkeys(topics.values(), dataset.spec.partitions), kafka_io.OUTPUT_TOPIC_CONFIG
        )
    run_dir = settings.work_dir / prefix
    spec = RunSpec(
        broker.bootstrap,
        dataset.topic,
        topics,
        run_dir,
        settings.window_s,
        settings.lateness_s,
        settings.slices,
        settings.quix_idle_s,
        settings.quix_grace_s,
        settings.profile,
    )
    plan = launch(contender, spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        result.load_before = os.getloadavg()
        broker_cpu = runner.cpu_seconds(broker.pid())
        outcomes = runner.run(plan.commands, plan.env, run_dir, settings.timeout_s)
        broker_after = runner.cpu_seconds(broker.pid())
        if broker_cpu is not None and broker_after is not None:
            result.broker_cpu_s = round(broker_after - broker_cpu, 2)
        result.wall_s = round(max(o.exited_at for o in outcomes) - min(o.spawned_at for o in outcomes), 3)
        # Processes of one run are alive together, so their peaks add up.
        result.peak_rss_mib = round(sum(o.peak_rss_kib for o in outcomes) / 1024, 1)
        result.cpu_s = round(sum(o.cpu_s for o in outcomes), 2)
        failed = [o for o in outcomes if o.returncode != 0]
        if failed:
            first = failed[0]
            why = "timed out" if first.timed_out else f"exited {first.returncode}"
            result.error = f"{why}; log {first.log}:\n{_tail(first.log)}"
            return result
        _measure(
            result,
            contender,
            dataset,
            broker,
            topics,
            plan.results,
            [o.log for o in outcomes],
            min(o.spawned_at for o in outcomes),
        )
        if settings.profile and contender.kind is Kind.LOGINFLOW:
            result.hotspots = _hotspots([profile_path(run_dir, i) for i in range(len(outcomes))])
            result.notes.append("profiled with py-spy: timings perturbed")
    finally:
        runner.kill_all()
        # Logs stay for inspection; state directories (Quix RocksDB, Kafka Streams) go.
        for state in ("quix-state", "kstreams-state"):
            shutil.rmtree(run_dir / state, ignore_errors=True)
        leftovers = set(list_topics(broker.bootstrap)) - topics_before
        delete_topics(broker.bootstrap, leftovers - {dataset.topic}, timeout=kafka_io.ADMIN_TIMEOUT_S)
    return result


def _measure(
    result: RunResult,
    contender: Contender,
    dataset: Dataset,
    broker: BenchBroker,
    topics: dict[str, str],
    results_file: Path | None,
    logs: list[Path],
    spawned_at: float,
) -> None:
    counters: dict[str, Any] = {}
    if results_file is not None:
        counters = orjson.loads(results_file.read_bytes())
    result.counters = counters
    outputs = {name: kafka_io.read_topic(broker.bootstrap, topic) for name, topic in topics.items()}

    # Start of the active interval.
    if contender.kind is Kind.LOGINFLOW:
        reading = _log_instants(logs, _READING)
        ended = _log_instants(logs, _READ_TO_END)
        start = min(reading) if reading else spawned_at
        result.timing = "first 'reading partition' log line -> last output append time"
        if not reading:
            result.notes.append("no 'reading partition' log line: timed from process spawn")
        if reading and ended:
            result.read_s = round(max(ended) - start, 3)
    else:
        start = counters.get("first_message") or spawned_at
        result.timing = "own first-message stamp -> " + ("last message" if not topics else "last output append time")

    # End of the active interval: the broker's append time of the last output, else the peer's own stamp.
    appended = [r.timestamp_ms / 1000 for records in outputs.values() for r in records if r.log_append_time]
    end = max(appended) if appended else counters.get("last_output")
    if end is None:
        result.error = "no output and no last_output stamp"
        return
    result.active_s = round(end - start, 3)
    result.events_per_s = round(dataset.messages / result.active_s) if result.active_s > 0 else None

    if contender.kind is Kind.CEILING:
        consumed = counters.get("consumed")
        result.ok = consumed == dataset.messages
        result.verdict = "PASS" if result.ok else "FAILING"
        result.score = {"consumed": consumed, "expected": dataset.messages}
        return

    metrics = decode_metrics(r.value for r in outputs["metrics"])
    verdict = score(metrics, dataset.expected.metrics, dataset.scored_before)
    result.score = verdict.to_dict()
    result.verdict = verdict.verdict()
    result.ok = True
    if contender.kind is Kind.LOGINFLOW:
        problem = _exact_loginflow(outputs, dataset)
        result.score["full_contract_exact"] = problem is None
        if problem is not None:
            result.notes.append(f"full contract check: {problem}")
            if result.verdict == "PASS":
                result.verdict = "WRONG"


def _hotspots(paths: list[Path], top: int = 20) -> dict[str, list[tuple[str, float]]]:
    """The hottest functions over every process's py-spy samples."""
    total = 0
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    per_stage: Counter[str] = Counter()
    for path in paths:
        if path.exists():
            samples, path_own, path_inclusive = hotspots.summarize(path)
            total += samples
            own.update(path_own)
            inclusive.update(path_inclusive)
            per_stage.update(hotspots.stages(path))
    if not total:
        return {}
    return {
        "stages": [(name, round(per_stage[name] / total, 4)) for name in hotspots.STAGES],
        "self": [(name, round(n / total, 4)) for name, n in own.most_common(top)],
        "inclusive": [(name, round(n / total, 4)) for name, n in inclusive.most_common(top)],
    }


def _exact_loginflow(outputs: dict[str, list[Record]], dataset: Dataset) -> str | None:
    """Every metric, reject and late event, byte for byte, as the end-to-end tests check."""
    problems = contract_problems(
        ((r.key, r.value) for r in outputs["metrics"]),
        ((r.value, r.headers) for r in outputs["dlq"]),
        ((r.value, r.headers) for r in outputs["late"]),
        dataset.expected.metrics,
        dataset.expected.rejects,
        dataset.expected.late,
        dataset.partitions,
    )
    return "; ".join(problems) if problems else None
