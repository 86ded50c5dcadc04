"""Reading a results JSON (``bench/results/<timestamp>.json``) back for publishing.

`bench.report.write_json` stores one flat list of summaries. ``python -m
bench`` builds it as the main set, then the slow-peer set, then the scaling
set (every `SCALING` layout on each partition count), so the sets are
recovered from the inputs they ran on and from that order; files written
before any of this are read the same way. The optional ``latency`` and
``memory`` sections are passed through as stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from bench.contenders import CEILING_ORJSON, SCALING
from bench.report import Summary, summary_from_json

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
# The main and slow sets always run on 3 partitions; only scaling adds others.
BASE_PARTITIONS = 3


@dataclass(frozen=True)
class Results:
    """One results file, split into the tables `python -m bench` printed."""

    path: Path
    meta: dict[str, Any]
    main: list[Summary]
    slow: list[Summary]
    scaling: list[Summary]
    runs: list[dict[str, Any]]
    latency: dict[str, Any] | None
    memory: dict[str, Any] | None
    # Latency runs by guarantee and epoch (``{"runs": [...]}``), when measured.
    latency_variants: dict[str, Any] | None = None

    def input_facts(self, summary: Summary) -> dict[str, Any] | None:
        """The generated input `summary` ran on (``meta.inputs``), if recorded."""
        for facts in self.meta.get("inputs", {}).values():
            if facts.get("messages") == summary.messages and facts.get("partitions") == summary.partitions:
                return dict(facts)
        return None

    def runs_of(self, summary: Summary) -> list[dict[str, Any]]:
        """`summary`'s runs, in run order: same contender, same input topic (or size, if none recorded)."""
        facts = self.input_facts(summary)
        topic = facts.get("topic") if facts else None
        same_input = ("input_topic", topic) if topic else ("messages", summary.messages)
        return [
            run
            for run in self.runs
            if run.get("contender") == summary.key
            and run.get("partitions") == summary.partitions
            and run.get(same_input[0]) == same_input[1]
        ]

    def run_rates(self, summary: Summary) -> list[float | None]:
        """events/s of each of `summary`'s runs; None for a run that failed."""
        return [run.get("events_per_s") if run.get("ok") else None for run in self.runs_of(summary)]

    def broker_cpu_s(self, summary: Summary) -> list[float]:
        """The broker's CPU seconds during each of `summary`'s runs that recorded it."""
        return [run["broker_cpu_s"] for run in self.runs_of(summary) if run.get("broker_cpu_s") is not None]


def find(summaries: list[Summary], key: str) -> Summary | None:
    """The summary of contender `key`, if it ran in that set."""
    return next((s for s in summaries if s.key == key), None)


def ceiling(summaries: list[Summary]) -> Summary | None:
    """The consume + orjson.loads ceiling of a set, the yardstick for the targets."""
    return find(summaries, CEILING_ORJSON.key)


def started(meta: dict[str, Any]) -> str:
    """When the run started, readable; ``meta.started`` is the results file's UTC stamp."""
    stamp = meta.get("started")
    if not stamp:
        return "unknown date"
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def newest(results_dir: Path = RESULTS_DIR) -> Path:
    """The newest results file; the names are UTC timestamps, so the largest name is the newest."""
    files = sorted(results_dir.glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no results in {results_dir}; run `make bench` first")
    return files[-1]


def _scaling_tail(summaries: list[Summary]) -> int:
    """Where the scaling set starts: the trailing run of distinct SCALING layouts, if scaling ran."""
    if all(s.partitions == BASE_PARTITIONS for s in summaries):
        return len(summaries)
    keys = {c.key for c in SCALING}
    seen: set[tuple[str, int]] = set()
    start = len(summaries)
    # The main set may end with the same layouts on 3 partitions (measured once,
    # listed twice): the first repeat, walking back, is where scaling began.
    while start > 0:
        s = summaries[start - 1]
        if s.key not in keys or (s.key, s.partitions) in seen:
            break
        seen.add((s.key, s.partitions))
        start -= 1
    return start


def load(path: Path) -> Results:
    """Read and split one results file."""
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    meta: dict[str, Any] = data.get("meta", {})
    summaries = [summary_from_json(s) for s in data.get("summaries", [])]
    cut = _scaling_tail(summaries)
    rest, scaling = summaries[:cut], summaries[cut:]
    slow_input = meta.get("inputs", {}).get(f"{meta.get('slow_events')}-p{BASE_PARTITIONS}")
    slow_messages = slow_input.get("messages") if slow_input and meta.get("slow_events") else None
    return Results(
        path=path,
        meta=meta,
        main=[s for s in rest if s.messages != slow_messages],
        slow=[s for s in rest if s.messages == slow_messages],
        scaling=scaling,
        runs=list(data.get("runs", [])),
        latency=data.get("latency") or None,
        memory=data.get("memory") or None,
        latency_variants=data.get("latency_variants") or None,
    )
