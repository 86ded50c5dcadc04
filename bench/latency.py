"""Latency mode: how soon after a window may close do its counts reach login-metrics.

The project's generator produces at a steady rate into a fresh 3-partition
topic, stamping every event with the wall clock at send time, while loginflow
(1 process x 1 worker) tails it (``STOP_AT_END=false``). The output topics
stamp each record with the broker's append time, so for every login-metrics
record

    latency = append time - (window_end + allowed lateness)

is how long after the earliest moment the contract lets a window be emitted
its record appeared. Only windows lying wholly inside the generation period
count: the first one is partial. The one the generator stops in closes by
idle progress alone, as in tail mode at low traffic: its latency is
reported on its own (`idle_window`). loginflow is stopped (SIGINT) once that
window may close, plus lateness and a grace period.

Correctness: the records of the included windows, and every reject and late
event, against `devkit.reference.expected_output` over the input read back.

Where the latency comes from: every rejected message goes to the DLQ as soon
as it is read, through the same steps and sink code as the counts, and its
headers name the input record it came from. DLQ append time minus that
record's producer timestamp is the read lag, sampled 1% of events over the
whole run; its value as each window becomes closable says how much of the
window's latency is backlog rather than closing and writing the window.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from bench import dataset, kafka_io, runner
from bench.broker import BenchBroker
from bench.contenders import RunSpec, launch, loginflow, output_topic_names
from bench.harness import HarnessSettings
from bench.score import contract_problems, decode_metrics, score
from devkit.records import READ_COMMITTED, Record, create_topics, delete_topics, reader, values_by_partition
from devkit.reference import iso
from operators.runtime.settings import parse_slices

PARTITIONS = 3
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
SAMPLE_SIZE = 2000


@dataclass(frozen=True)
class LatencySpec:
    """What to produce and for how long; the event mix is the main benchmark's."""

    rate: float = 20_000.0
    seconds: float = 180.0
    # Generator processes sharing the rate, each with its own seed.
    producers: int = 1
    # Users drawn from: with the default rate and window each user logs in ~24 times a window,
    # so nearly every user key of the two user slices is emitted (~200,000 records a window).
    users: int = dataset.DatasetSpec.users
    # How long loginflow runs past generator end + lateness, for the last full window to be written.
    grace_s: float = 10.0
    # PROCESSING_GUARANTEE, and bytewax.run -s (0: its default).
    guarantee: str = "at-least-once"
    epoch_s: int = 0

    @property
    def label(self) -> str:
        """How the variant is named in tables: ``exactly-once, -s 1``."""
        return f"{self.guarantee}, -s {self.epoch_s or 10}"


class VisibilityWatcher:
    """Notes when each login-metrics record first becomes visible to a `read_committed` reader.

    With exactly-once, a record is appended when produced but visible only
    once its transaction commits; what a consumer waits for is visibility.
    """

    def __init__(self, brokers: str, topic: str) -> None:
        """Start reading `topic` from its beginning in a thread of its own."""
        self.seen: dict[tuple[bytes | None, bytes | None], float] = {}
        self._stop = threading.Event()
        self._consumer, _partitions = reader(brokers, topic, READ_COMMITTED)
        self._thread = threading.Thread(target=self._run, name="visibility", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seen = self.seen
        while not self._stop.is_set():
            for message in self._consumer.consume(10_000, 0.05):
                if message.error() is None:
                    seen.setdefault((message.key(), message.value()), time.time())

    def stop(self) -> None:
        """Stop reading; `seen` is final afterwards."""
        self._stop.set()
        self._thread.join(timeout=30)
        self._consumer.close()


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _sample(ordered: Sequence[float], size: int = SAMPLE_SIZE) -> list[float]:
    """Evenly spaced values of an ascending sequence, both ends included, for a CDF plot."""
    if len(ordered) <= size:
        return [round(v, 4) for v in ordered]
    return [round(ordered[round(i * (len(ordered) - 1) / (size - 1))], 4) for i in range(size)]


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def _generator_commands(brokers: str, topic: str, spec: LatencySpec) -> list[list[str]]:
    mix = dataset.DatasetSpec(events=0, users=spec.users)
    return [
        [
            sys.executable,
            "-m",
            "devkit.generator",
            "--realtime",
            "--rate",
            str(spec.rate / spec.producers),
            "--duration",
            str(spec.seconds),
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--users",
            str(mix.users),
            "--bad-fraction",
            str(mix.bad_fraction),
            "--late-fraction",
            str(mix.late_fraction),
            "--missing-device-type",
            str(mix.missing_device_type),
            "--seed",
            str(mix.seed + index),
            "--no-progress",
            "--log-level",
            "WARNING",
        ]
        for index in range(spec.producers)
    ]


def _wait_until_reading(log: Path, alive: Callable[[], bool]) -> None:
    """Until loginflow has assigned every input partition, so the generator's first events are read live."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not log.exists() or log.read_text(errors="replace").count("reading partition") < PARTITIONS:
        if not alive():
            msg = f"loginflow exited before reading; see {log}"
            raise RuntimeError(msg)
        if time.monotonic() > deadline:
            msg = f"loginflow did not assign {PARTITIONS} partitions within {READY_TIMEOUT_S:.0f}s; see {log}"
            raise TimeoutError(msg)
        time.sleep(0.2)


def _rates(stamps_ms: Sequence[int], starts: Sequence[int], window_s: int) -> tuple[float, float, float]:
    """Achieved rate over the whole production; the slowest and fastest second of the included windows.

    The generator builds its user pool after its clock starts and then catches
    up in a burst, so the extremes are taken where the latencies are.
    """
    overall = len(stamps_ms) / max((max(stamps_ms) - min(stamps_ms)) / 1000, 1e-3)
    if not starts:
        return overall, 0.0, 0.0
    per_second = Counter(ms // 1000 for ms in stamps_ms if starts[0] * 1000 <= ms < (starts[-1] + window_s) * 1000)
    seconds = range(starts[0], starts[-1] + window_s)
    return overall, float(min(per_second[s] for s in seconds)), float(max(per_second[s] for s in seconds))


def _windows(first_s: float, last_s: float, window_s: int) -> list[int]:
    """Starts of the windows lying wholly inside [first_s, last_s]."""
    start = math.ceil(first_s / window_s) * window_s
    return list(range(start, math.floor(last_s / window_s) * window_s - window_s + 1, window_s))


def _latencies(
    metrics: Sequence[Record],
    included: set[str],
    lateness_s: float,
    visible: dict[tuple[bytes | None, bytes | None], float] | None = None,
) -> tuple[list[Record], dict[str, list[float]]]:
    """The included windows' records; per window end, their append (or, given `visible`, visibility)
    times minus (window_end + lateness), ascending."""
    kept: list[Record] = []
    by_end: dict[str, list[float]] = {}
    for record in metrics:
        value = orjson.loads(record.value or b"{}")
        if value.get("window_start") in included:
            kept.append(record)
            end = value["window_end"]
            at = record.timestamp_ms / 1000
            if visible is not None:
                at = visible.get((record.key, record.value), math.inf)
            by_end.setdefault(end, []).append(at - (_epoch(end) + lateness_s))
    return kept, {end: sorted(values) for end, values in sorted(by_end.items())}


def _read_lags(inputs: Sequence[Record], dlq: Sequence[Record]) -> list[tuple[float, float]]:
    """(producer timestamp, DLQ append time minus it) of every rejected input record, by producer timestamp."""
    sent = {(r.partition, r.offset): r.timestamp_ms for r in inputs}
    lags = []
    for record in dlq:
        headers = record.headers
        source = (int(headers.get("source_partition") or b"-1"), int(headers.get("source_offset") or b"-1"))
        if source in sent:
            lags.append((sent[source] / 1000, (record.timestamp_ms - sent[source]) / 1000))
    return sorted(lags)


def _lag_near(lags: Sequence[tuple[float, float]], instant: float, half_width_s: float = 1.0) -> float | None:
    """Median read lag of the records produced within `half_width_s` of `instant`."""
    near = sorted(lag for sent, lag in lags if abs(sent - instant) <= half_width_s)
    return round(_percentile(near, 0.5), 3) if near else None


def _verdict(
    metrics: Sequence[Record],
    outputs: dict[str, list[Record]],
    partitions: dict[int, list[bytes | None]],
    included: set[str],
    settings: HarnessSettings,
) -> tuple[str, dict[str, Any]]:
    """The harness's checks; metrics only those of the included windows."""
    reference = dataset.reference(partitions, parse_slices(settings.slices), settings.window_s, settings.lateness_s)
    wanted = {key: n for key, n in reference.metrics.items() if key[0] in included}
    # Every ISO instant sorts before "~": nothing more is cut off by time here.
    verdict = score(decode_metrics(r.value for r in metrics), wanted, "~")
    problems = contract_problems(
        ((r.key, r.value) for r in metrics),
        ((r.value, r.headers) for r in outputs["dlq"]),
        ((r.value, r.headers) for r in outputs["late"]),
        wanted,
        reference.rejects,
        reference.late,
        partitions,
    )
    details = {**verdict.to_dict(), "full_contract_problems": problems, "expected_records": len(wanted)}
    result = verdict.verdict()
    return ("WRONG" if result == "PASS" and problems else result), details


def run(
    broker: BenchBroker, settings: HarnessSettings, spec: LatencySpec, log: Callable[[str], None]
) -> dict[str, Any]:
    """Produce, tail, stop, then measure latency and check the output; the results JSON's "latency"."""
    prefix = f"bench-latency-{uuid.uuid4().hex[:8]}"
    input_topic = f"{prefix}-input"
    contender = loginflow(1, 1, spec.guarantee, spec.epoch_s)
    topics = output_topic_names(contender, prefix)
    create_topics(broker.bootstrap, {input_topic: PARTITIONS})
    create_topics(broker.bootstrap, dict.fromkeys(topics.values(), PARTITIONS), kafka_io.OUTPUT_TOPIC_CONFIG)
    run_dir = settings.work_dir / prefix
    watcher = VisibilityWatcher(broker.bootstrap, topics["metrics"])
    plan = launch(
        contender,
        RunSpec(
            broker.bootstrap,
            input_topic,
            topics,
            run_dir,
            settings.window_s,
            settings.lateness_s,
            settings.slices,
            0.0,
            0.0,
        ),
    )
    env = {**plan.env, "STOP_AT_END": "false"}
    stop = threading.Event()
    try:
        with ThreadPoolExecutor(1) as pool:
            limit = spec.seconds + settings.window_s + settings.lateness_s + spec.grace_s + STOP_TIMEOUT_S
            tail = pool.submit(runner.run, plan.commands, env, run_dir, limit, stop_when=stop.is_set)
            try:
                _wait_until_reading(run_dir / "process-0.log", lambda: not tail.done())
                log(
                    f"latency: producing {spec.rate:,.0f} events/s for {spec.seconds:.0f} s "
                    f"({spec.producers} generator process(es)) while loginflow 1x1 ({spec.label}) tails "
                    f"{input_topic}"
                )
                generators = runner.run(
                    _generator_commands(broker.bootstrap, input_topic, spec),
                    {},
                    run_dir / "generators",
                    spec.seconds + 120,
                )
                # The window the input stopped in closes by idle progress alone:
                # keep tailing until it may close, plus the grace.
                stopped = time.time()
                last_end = math.ceil(stopped / settings.window_s) * settings.window_s
                time.sleep(max(0.0, last_end - stopped) + settings.lateness_s + spec.grace_s)
            except BaseException:
                runner.kill_all()
                raise
            finally:
                stop.set()
            (flow,) = tail.result()
        watcher.stop()
        log("latency: reading the input and outputs back, computing the reference")
        inputs = kafka_io.read_topic(broker.bootstrap, input_topic)
        outputs = {name: kafka_io.read_topic(broker.bootstrap, topic) for name, topic in topics.items()}
    finally:
        delete_topics(broker.bootstrap, [input_topic, *topics.values()], timeout=kafka_io.ADMIN_TIMEOUT_S)
    return _measure(spec, settings, inputs, outputs, flow, generators, watcher.seen)


def _measure(
    spec: LatencySpec,
    settings: HarnessSettings,
    inputs: list[Record],
    outputs: dict[str, list[Record]],
    flow: runner.ProcessOutcome,
    generators: list[runner.ProcessOutcome],
    visible: dict[tuple[bytes | None, bytes | None], float],
) -> dict[str, Any]:
    notes = [f"generator {i} exited {o.returncode}; log {o.log}" for i, o in enumerate(generators) if o.returncode]
    # SIGINT ends loginflow with 130 (or 1 through Bytewax); anything else happened before the stop.
    if flow.returncode not in (0, 1, 130, -2):
        notes.append(f"loginflow exited {flow.returncode}; log {flow.log}")
    stamps = [r.timestamp_ms for r in inputs]
    starts = _windows(min(stamps) / 1000, max(stamps) / 1000, settings.window_s) if stamps else []
    overall, slowest, fastest = _rates(stamps, starts, settings.window_s) if stamps else (0.0, 0.0, 0.0)
    included = {iso(start) for start in starts}
    # The window the input stopped in: no data closes it, only idle progress.
    idle_start = math.floor(max(stamps) / 1000 / settings.window_s) * settings.window_s if stamps else None
    idle_included = {iso(idle_start)} if idle_start is not None else set()
    idle_metrics, idle_by_end = _latencies(outputs["metrics"], idle_included, settings.lateness_s)
    idle = sorted(v for values in idle_by_end.values() for v in values)
    metrics, by_end = _latencies(outputs["metrics"], included, settings.lateness_s)
    _, visible_by_end = _latencies(outputs["metrics"], included, settings.lateness_s, visible)
    seen = sorted(v for values in visible_by_end.values() for v in values)
    _, idle_visible_by_end = _latencies(outputs["metrics"], idle_included, settings.lateness_s, visible)
    idle_seen = sorted(v for values in idle_visible_by_end.values() for v in values)
    every = sorted(v for values in by_end.values() for v in values)
    if not starts:
        notes.append(f"no whole {settings.window_s} s window fits in the production: produce for longer")
    elif not every:
        notes.append("no included window was emitted")
    lags = _read_lags(inputs, outputs["dlq"])
    ordered_lags = sorted(lag for _, lag in lags)
    if any(not r.log_append_time for r in outputs["metrics"]):
        notes.append("some login-metrics records carry no broker append time")
    started = time.monotonic()
    checked = included | idle_included
    verdict, details = (
        _verdict(metrics + idle_metrics, outputs, values_by_partition(inputs), checked, settings)
        if stamps
        else ("ERROR", {})
    )
    if stamps and not idle:
        notes.append("the window the input stopped in was not emitted by idle progress")
    if notes and verdict == "PASS":
        verdict = "ERROR"

    def stat(q: float) -> float | None:
        return round(_percentile(every, q), 3) if every else None

    return {
        "rate_target": spec.rate,
        "rate_achieved": round(overall, 1),
        "rate_1s_min": slowest,
        "rate_1s_max": fastest,
        "seconds": spec.seconds,
        "window_s": settings.window_s,
        "lateness_s": settings.lateness_s,
        "layout": "1x1",
        "producers": spec.producers,
        "users": spec.users,
        "messages": len(inputs),
        "produced_from": iso(int(min(stamps) / 1000)) if stamps else None,
        "produced_to": iso(int(max(stamps) / 1000)) if stamps else None,
        "records": len(every),
        "windows": [
            {
                "window_end": end,
                "records": len(values),
                "min_s": round(values[0], 3),
                "p50_s": round(_percentile(values, 0.5), 3),
                "p99_s": round(_percentile(values, 0.99), 3),
                "max_s": round(values[-1], 3),
                "read_lag_at_close_s": _lag_near(lags, _epoch(end) + settings.lateness_s),
            }
            for end, values in by_end.items()
        ],
        "expected_windows": [iso(start + settings.window_s) for start in starts],
        "read_lag_p50_s": round(_percentile(ordered_lags, 0.5), 3) if lags else None,
        "read_lag_p99_s": round(_percentile(ordered_lags, 0.99), 3) if lags else None,
        "read_lag_max_s": round(ordered_lags[-1], 3) if lags else None,
        "idle_window": {
            "window_end": iso(idle_start + settings.window_s) if idle_start is not None else None,
            "records": len(idle),
            "p50_s": round(_percentile(idle, 0.5), 3) if idle else None,
            "p99_s": round(_percentile(idle, 0.99), 3) if idle else None,
            "max_s": round(idle[-1], 3) if idle else None,
        },
        "guarantee": spec.guarantee,
        "epoch_s": spec.epoch_s or 10,
        # Close to visible for a read_committed reader (exactly-once commits at each epoch).
        "visible_p50_s": round(_percentile(seen, 0.5), 3) if seen else None,
        "visible_p99_s": round(_percentile(seen, 0.99), 3) if seen else None,
        "visible_max_s": round(seen[-1], 3) if seen else None,
        "idle_visible_p99_s": round(_percentile(idle_seen, 0.99), 3) if idle_seen else None,
        "throughput_events_per_cpu_s": round(len(inputs) / flow.cpu_s) if flow.cpu_s else None,
        "p50_s": stat(0.5),
        "p90_s": stat(0.9),
        "p99_s": stat(0.99),
        "max_s": stat(1.0),
        "verdict": verdict,
        "score": details,
        "reference_s": round(time.monotonic() - started, 1),
        "notes": notes,
        "cpu_s": round(flow.cpu_s, 2),
        "peak_rss_mib": round(flow.peak_rss_kib / 1024, 1),
        "generator_cpu_s": round(sum(o.cpu_s for o in generators), 2),
        "latencies_sample": _sample(every),
    }


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per included window, then the whole run."""

    def cell(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines = [
        "| window end | records | first s | p50 s | p99 s | max s | read lag at close s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for w in result["windows"]:
        lines.append(
            f"| {w['window_end']} | {w['records']:,} | {cell(w['min_s'])} | {cell(w['p50_s'])} "
            f"| {cell(w['p99_s'])} | {cell(w['max_s'])} | {cell(w['read_lag_at_close_s'])} |"
        )
    lines.append(
        f"| **all** | {result['records']:,} | | {cell(result['p50_s'])} | {cell(result['p99_s'])} "
        f"| {cell(result['max_s'])} | |"
    )
    idle = result.get("idle_window") or {}
    if idle.get("records"):
        lines.append(
            f"| {idle['window_end']} (input stopped; closed by idle progress) | {idle['records']:,} | "
            f"| | {cell(idle['p99_s'])} | {cell(idle['max_s'])} | |"
        )
    lines.append("")
    lines.append(
        f"p90 {cell(result['p90_s'])} s; input {result['rate_achieved']:,.0f} events/s achieved "
        f"(target {result['rate_target']:,.0f}; seconds inside the windows {result['rate_1s_min']:,.0f}–"
        f"{result['rate_1s_max']:,.0f}); loginflow CPU {result['cpu_s']:.1f} s, peak RSS "
        f"{result['peak_rss_mib']:,.0f} MiB; read lag (DLQ) p50 {cell(result['read_lag_p50_s'])} s, "
        f"p99 {cell(result['read_lag_p99_s'])} s; verdict {result['verdict']}"
    )
    return "\n".join(lines)


def variants_table(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per guarantee and epoch, close-to-visible for a read_committed reader."""

    def cell(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    lines = [
        "| guarantee, -s | events/s achieved | visible p50 s | visible p99 s | visible max s "
        "| idle-closed window visible p99 s | loginflow CPU s | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run.get('guarantee')}, -s {run.get('epoch_s')} | {run.get('rate_achieved', 0):,.0f} "
            f"| {cell(run.get('visible_p50_s'))} | {cell(run.get('visible_p99_s'))} "
            f"| {cell(run.get('visible_max_s'))} | {cell(run.get('idle_visible_p99_s'))} "
            f"| {run.get('cpu_s', 0):.1f} | {run.get('verdict')} |"
        )
    return "\n".join(lines)
