"""Medians over runs, the markdown tables, and the results JSON."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.contenders import CEILING_ORJSON, CEILING_RAW, Contender
from bench.harness import RunResult

# Worst first: a summary takes the worst verdict any of its runs had.
_VERDICT_ORDER = ("ERROR", "UNAVAILABLE", "FAILING", "WRONG", "PASS")


@dataclass(frozen=True)
class Summary:
    """One contender on one input: medians over its successful runs."""

    key: str
    label: str
    partitions: int
    messages: int
    runs: int
    events_per_s: float | None
    active_s: float | None
    wall_s: float | None
    peak_rss_mib: float | None
    cpu_s: float | None
    read_s: float | None
    missed_events: int | None
    extra_events: int | None
    verdict: str
    notes: tuple[str, ...]


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(contender: Contender, partitions: int, runs: Sequence[RunResult]) -> Summary:
    """Medians of the runs that finished; the worst verdict; distinct notes and errors."""
    good = [r for r in runs if r.ok]
    verdict = min((r.verdict for r in runs), key=_VERDICT_ORDER.index, default="ERROR")
    missed: list[int] = [r.score["missed_events"] for r in good if r.score.get("missed_events") is not None]
    extra: list[int] = [r.score["extra_events"] for r in good if r.score.get("extra_events") is not None]
    notes = []
    for r in runs:
        for note in [*r.notes, *([r.error.splitlines()[0]] if r.error else [])]:
            if note not in notes:
                notes.append(note)
    return Summary(
        key=contender.key,
        label=contender.label,
        partitions=partitions,
        messages=runs[0].messages if runs else 0,
        runs=len(good),
        events_per_s=_median(r.events_per_s for r in good),
        active_s=_median(r.active_s for r in good),
        wall_s=_median(r.wall_s for r in good),
        peak_rss_mib=_median(r.peak_rss_mib for r in good),
        cpu_s=_median(r.cpu_s for r in good),
        read_s=_median(r.read_s for r in good),
        missed_events=max(missed) if missed else None,
        extra_events=max(extra) if extra else None,
        verdict=verdict,
        notes=tuple(notes),
    )


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "–" if value is None else format(value, spec)


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}"


def _cpu_per_event(s: Summary) -> str:
    # Process CPU time (start-up included) per input message: unlike wall time,
    # it barely moves when other work on the machine takes cores away.
    if s.cpu_s is None or not s.messages:
        return "–"
    return f"{s.cpu_s / s.messages * 1e6:.1f}"


def main_table(summaries: Sequence[Summary]) -> str:
    """The headline table: throughput, its ratio to both ceilings, resources, correctness."""
    by_key = {s.key: s for s in summaries}
    raw = by_key.get(CEILING_RAW.key)
    parsed = by_key.get(CEILING_ORJSON.key)
    raw_rate = raw.events_per_s if raw else None
    parsed_rate = parsed.events_per_s if parsed else None
    lines = [
        "| contender | events/s (median) | ÷ raw ceiling | ÷ orjson ceiling | active s | wall s | peak RSS MiB "
        "| CPU s | CPU µs/event | missed events (app_version+device_type) | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        missed = _fmt(s.missed_events, ",d") if s.missed_events is not None else "–"
        if s.extra_events:
            missed += f" (+{s.extra_events:,} extra)"
        lines.append(
            f"| {s.label} | {_fmt(s.events_per_s)} | {_ratio(s.events_per_s, raw_rate)} "
            f"| {_ratio(s.events_per_s, parsed_rate)} | {_fmt(s.active_s, '.2f')} | {_fmt(s.wall_s, '.2f')} "
            f"| {_fmt(s.peak_rss_mib, ',.0f')} | {_fmt(s.cpu_s, '.1f')} | {_cpu_per_event(s)} "
            f"| {missed} | {s.verdict} |"
        )
    return "\n".join(lines)


def scaling_table(summaries: Sequence[Summary]) -> str:
    """loginflow layouts per partition count, relative to 1 process x 1 worker on the same input."""
    lines = [
        "| layout | partitions | events/s (median) | × 1x1 | active s | reading s | CPU s | CPU µs/event "
        "| peak RSS MiB | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = {s.partitions: s.events_per_s for s in summaries if s.key == "loginflow-1x1"}
    for s in summaries:
        lines.append(
            f"| {s.label} | {s.partitions} | {_fmt(s.events_per_s)} | {_ratio(s.events_per_s, base.get(s.partitions))} "
            f"| {_fmt(s.active_s, '.2f')} | {_fmt(s.read_s, '.2f')} | {_fmt(s.cpu_s, '.1f')} | {_cpu_per_event(s)} "
            f"| {_fmt(s.peak_rss_mib, ',.0f')} | {s.verdict} |"
        )
    return "\n".join(lines)


def notes_block(summaries: Sequence[Summary]) -> str:
    """Every distinct note or error, per contender."""
    lines = [f"- {s.label} ({s.partitions} partitions): {note}" for s in summaries for note in s.notes]
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], runs: Sequence[RunResult], summaries: Sequence[Summary]) -> None:
    """Everything measured, for later comparison."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "summaries": [asdict(s) for s in summaries], "runs": [asdict(r) for r in runs]}
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
