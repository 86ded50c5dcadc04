"""Medians over runs, the markdown tables, and the results JSON."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from bench.contenders import CEILING_LOGINFLOW, CEILING_ORJSON, CEILING_RAW, PEERS, Contender
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
    # The broker process's own CPU seconds during the run (median); older results files lack it.
    broker_cpu_s: float | None = None


def summary_from_json(data: Mapping[str, Any]) -> Summary:
    """A Summary as `write_json` stored it, so a results file renders with the same tables as the live run."""
    known = {f.name for f in fields(Summary)}
    values = {k: v for k, v in data.items() if k in known}
    return Summary(**{**values, "notes": tuple(values.get("notes", ()))})


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
        broker_cpu_s=_median(r.broker_cpu_s for r in good),
    )


def fmt(value: float | None, spec: str = ",.0f") -> str:
    """`value` formatted by `spec`, or a dash where nothing was measured."""
    return "–" if value is None else format(value, spec)


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}"


def cpu_us_per_event(cpu_s: float | None, messages: int) -> float | None:
    """CPU microseconds per input message, or None where nothing was measured."""
    if cpu_s is None or not messages:
        return None
    return cpu_s / messages * 1e6


def _cpu_per_event(s: Summary) -> str:
    # Process CPU time (start-up included) per input message: unlike wall time,
    # it barely moves when other work on the machine takes cores away.
    return fmt(cpu_us_per_event(s.cpu_s, s.messages), ".1f")


def _broker_per_event(s: Summary) -> str:
    return fmt(cpu_us_per_event(s.broker_cpu_s, s.messages), ".1f")


def peers_table(summaries: Sequence[Summary]) -> str:
    """loginflow and the JVM frameworks against the fair ceiling: CPU per event first, wall time (noisy) after."""
    by_key = {s.key: s for s in summaries}
    roof = by_key.get(CEILING_LOGINFLOW.key)
    roof_cpu = cpu_us_per_event(roof.cpu_s, roof.messages) if roof else None
    roof_rate = roof.events_per_s if roof else None
    lines = [
        "| contender | CPU µs/event | ÷ ceiling CPU/event | broker CPU µs/event | events/s (wall, noisy) "
        "| ÷ ceiling events/s (wall, noisy) | peak RSS MiB | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    wanted = [c.key for c in PEERS]
    for s in sorted((s for s in summaries if s.key in wanted), key=lambda s: wanted.index(s.key)):
        lines.append(
            f"| {s.label} | {_cpu_per_event(s)} | {_ratio(cpu_us_per_event(s.cpu_s, s.messages), roof_cpu)} "
            f"| {_broker_per_event(s)} | {fmt(s.events_per_s)} | {_ratio(s.events_per_s, roof_rate)} "
            f"| {fmt(s.peak_rss_mib, ',.0f')} | {s.verdict} |"
        )
    return "\n".join(lines)


def main_table(summaries: Sequence[Summary]) -> str:
    """The headline table: throughput, its ratio to the ceilings present, resources, correctness."""
    by_key = {s.key: s for s in summaries}
    raw = by_key.get(CEILING_RAW.key)
    parsed = by_key.get(CEILING_ORJSON.key)
    # The slow-peer set has no raw ceiling: a column of dashes says nothing.
    raw_rate = raw.events_per_s if raw else None
    parsed_rate = parsed.events_per_s if parsed else None
    raw_head, raw_align = ("÷ raw ceiling | ", "---:|") if raw else ("", "")
    lines = [
        f"| contender | events/s (median; wall time, noisy) | {raw_head}÷ orjson ceiling | active s | wall s "
        "| peak RSS MiB | CPU s | CPU µs/event | broker CPU µs/event "
        "| missed events (app_version+device_type), worst run | verdict |",
        f"|---|---:|{raw_align}---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summaries:
        missed = fmt(s.missed_events, ",d") if s.missed_events is not None else "–"
        if s.extra_events:
            missed += f" (+{s.extra_events:,} extra)"
        raw_cell = f" {_ratio(s.events_per_s, raw_rate)} |" if raw else ""
        lines.append(
            f"| {s.label} | {fmt(s.events_per_s)} |{raw_cell} {_ratio(s.events_per_s, parsed_rate)} "
            f"| {fmt(s.active_s, '.2f')} | {fmt(s.wall_s, '.2f')} "
            f"| {fmt(s.peak_rss_mib, ',.0f')} | {fmt(s.cpu_s, '.1f')} | {_cpu_per_event(s)} "
            f"| {_broker_per_event(s)} | {missed} | {s.verdict} |"
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
            f"| {s.label} | {s.partitions} | {fmt(s.events_per_s)} | {_ratio(s.events_per_s, base.get(s.partitions))} "
            f"| {fmt(s.active_s, '.2f')} | {fmt(s.read_s, '.2f')} | {fmt(s.cpu_s, '.1f')} | {_cpu_per_event(s)} "
            f"| {fmt(s.peak_rss_mib, ',.0f')} | {s.verdict} |"
        )
    return "\n".join(lines)


def notes_block(summaries: Sequence[Summary]) -> str:
    """Every distinct note or error, per contender."""
    lines = [f"- {s.label} ({s.partitions} partitions): {note}" for s in summaries for note in s.notes]
    return "\n".join(lines)


def _first_line_value(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def machine_facts() -> dict[str, object]:
    """What the numbers were measured on; Linux's /proc where available, None elsewhere."""
    mem_kib = _first_line_value("/proc/meminfo", "MemTotal")
    return {
        "platform": platform.platform(),
        "cpu_model": _first_line_value("/proc/cpuinfo", "model name"),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else None,
    }


def write_json(path: Path, meta: dict[str, Any], runs: Sequence[RunResult], summaries: Sequence[Summary]) -> None:
    """Everything measured, for later comparison."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "summaries": [asdict(s) for s in summaries], "runs": [asdict(r) for r in runs]}
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
