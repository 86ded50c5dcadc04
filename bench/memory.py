"""Memory mode: loginflow 1x1's peak RSS against distinct keys per window, and against input length.

Every point is a fresh input (`bench.dataset`, the main benchmark's event
mix) and bounded runs of loginflow 1 process x 1 worker
(`bench.harness.run_once`, ``STOP_AT_END=true``), scored like the main runs.

- keys: the same number of events, all in one window, drawn from ever more
  users, so the keys held open grow while the input keeps its size;
- length: a fixed user pool at the main benchmark's event density (the span
  grows with the count), so the keys per window stay put while the input grows.

Distinct keys per window are counted from the input, not assumed: the
reference runs with every slice's minimum at 1, which keeps every key, and
the real minimums are applied afterwards for scoring. ``RSS = a + b * keys``
is fitted over the keys series by least squares.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench import kafka_io
from bench.broker import BenchBroker
from bench.contenders import loginflow
from bench.dataset import DatasetSpec, build
from bench.harness import HarnessSettings, RunResult, run_once
from bench.score import MetricKey
from devkit.records import delete_topics
from operators.pure.slices import SliceSpec
from operators.runtime.settings import parse_slices

LOGINFLOW = loginflow(1, 1)
# The main benchmark's density: its default 1,000,000 events over DatasetSpec.span_s.
MAIN_EVENTS_PER_S = 1_000_000 / DatasetSpec.span_s
_VERDICT_ORDER = ("ERROR", "UNAVAILABLE", "FAILING", "WRONG", "PASS")


@dataclass(frozen=True)
class MemoryPlan:
    """The two series; sizes keep the whole mode to a few minutes on the 2-core box."""

    key_users: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    key_events: int = 250_000
    lengths: tuple[int, ...] = (250_000, 500_000, 1_000_000)
    length_users: int = 50_000
    runs: int = 1


@dataclass(frozen=True)
class Point:
    """One input and what loginflow needed for it."""

    users: int
    events: int
    distinct_keys_per_window: int
    # Most login-metrics records one window emits: they are all built at its close.
    records_per_window: int
    peak_rss_mib: float | None
    verdict: str
    notes: tuple[str, ...]
    # Harness time: generating, the reference answer, loginflow's own wall time.
    generate_s: float
    reference_s: float
    wall_s: float | None


def _per_window(counts: Mapping[MetricKey, int], scored_before: str) -> int:
    """Most keys any one window has, summed over slices (the trailer's window left out)."""
    per_window = Counter(key[0] for key in counts if key[0] < scored_before)
    return max(per_window.values(), default=0)


def _point(
    broker: BenchBroker, settings: HarnessSettings, spec: DatasetSpec, runs: int, log: Callable[[str], None]
) -> Point:
    slices = parse_slices(settings.slices)
    every_key = tuple(SliceSpec(s.fields, 1) for s in slices)
    topic = f"bench-memory-{spec.events}-u{spec.users}-{uuid.uuid4().hex[:8]}"
    log(f"memory: {spec.events:,} events from {spec.users:,} users over {spec.span_s:,.0f} s of event time")
    dataset = build(broker.bootstrap, topic, spec, every_key, settings.window_s, settings.lateness_s)
    try:
        keys = _per_window(dataset.expected.metrics, dataset.scored_before)
        minimum = {s.name: s.min_count for s in slices}
        emitted = {key: n for key, n in dataset.expected.metrics.items() if n >= minimum[key[1]]}
        records = _per_window(emitted, dataset.scored_before)
        dataset = replace(dataset, expected=replace(dataset.expected, metrics=emitted))
        results: list[RunResult] = [run_once(LOGINFLOW, dataset, broker, settings, run) for run in range(runs)]
    finally:
        delete_topics(broker.bootstrap, [topic], timeout=kafka_io.ADMIN_TIMEOUT_S)
    peaks = [r.peak_rss_mib for r in results if r.ok and r.peak_rss_mib is not None]
    verdict = min((r.verdict for r in results), key=_VERDICT_ORDER.index)
    notes = tuple(
        dict.fromkeys([*(n for r in results for n in r.notes), *(r.error.splitlines()[0] for r in results if r.error)])
    )
    walls = [r.wall_s for r in results if r.wall_s is not None]
    point = Point(
        spec.users,
        spec.events,
        keys,
        records,
        statistics.median(peaks) if peaks else None,
        verdict,
        notes,
        round(dataset.generate_s, 1),
        round(dataset.reference_s, 1),
        max(walls, default=None),
    )
    log(f"memory: {keys:,} distinct keys per window, peak RSS {point.peak_rss_mib} MiB, {verdict}")
    return point


def _fit(points: Sequence[Point]) -> tuple[float | None, float | None]:
    """Least squares RSS MiB = a + b * keys; (a, b), or Nones with fewer than two distinct key counts."""
    pairs = [(p.distinct_keys_per_window, p.peak_rss_mib) for p in points if p.peak_rss_mib is not None]
    if len({x for x, _ in pairs}) < 2:
        return None, None
    slope, intercept = statistics.linear_regression([float(x) for x, _ in pairs], [y for _, y in pairs])
    return intercept, slope


def run(broker: BenchBroker, settings: HarnessSettings, plan: MemoryPlan, log: Callable[[str], None]) -> dict[str, Any]:
    """Both series; the results JSON's "memory"."""
    keys = [
        _point(
            broker, settings, DatasetSpec(events=plan.key_events, users=users, span_s=settings.window_s), plan.runs, log
        )
        for users in plan.key_users
    ]
    length = [
        _point(
            broker,
            settings,
            DatasetSpec(events=events, users=plan.length_users, span_s=events / MAIN_EVENTS_PER_S),
            plan.runs,
            log,
        )
        for events in plan.lengths
    ]
    baseline, slope = _fit(keys)
    return {
        "keys": [{**asdict(p), "span_s": settings.window_s} for p in keys],
        "length": [{**asdict(p), "span_s": round(p.events / MAIN_EVENTS_PER_S, 1)} for p in length],
        "bytes_per_key": None if slope is None else round(slope * 2**20, 1),
        "baseline_mib": None if baseline is None else round(baseline, 1),
        "runs": plan.runs,
    }


def table(result: dict[str, Any]) -> str:
    """Markdown: both series, then the fit."""
    lines = [
        "| series | users | events | distinct keys per window | records per window | peak RSS MiB | verdict |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for series in ("keys", "length"):
        for p in result[series]:
            rss = "–" if p["peak_rss_mib"] is None else f"{p['peak_rss_mib']:,.0f}"
            lines.append(
                f"| {series} | {p['users']:,} | {p['events']:,} | {p['distinct_keys_per_window']:,} "
                f"| {p['records_per_window']:,} | {rss} | {p['verdict']} |"
            )
    if result["bytes_per_key"] is not None:
        lines += [
            "",
            f"fit over the keys series: RSS = {result['baseline_mib']:,.0f} MiB + "
            f"{result['bytes_per_key']:,.0f} bytes x distinct keys per window",
        ]
    return "\n".join(lines)
