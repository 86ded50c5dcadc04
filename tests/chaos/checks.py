"""What every chaos scenario must satisfy once its output is drained.

1. accounting: every readable input message counted, on the DLQ or late, once;
2. the latest record per key equals devkit/reference.py's answer
   (both by tests/hardening.check_accounted);
3. no revision of a (window, slice, key) lowers its count (tests/outputs.latest_metrics);
4. the decisions equal those of one from-scratch bounded run over the final log;
5. with exactly-once, a read_committed reader sees no record twice.
"""

from __future__ import annotations

import inspect
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devkit.records import Record
from devkit.reference import MetricKey, classify
from tests import hardening
from tests.chaos.scenario import LATENESS, WINDOW
from tests.eos_helpers import identity_of
from tests.hardening import Log, check_accounted
from tests.outputs import latest_metrics, source_of

Outputs = dict[str, list[Record]]
TAIL_SLACK_S = 45.0
"""Start-up, a broker round trip and a loaded 2-core machine on top of the contract's close time."""


def tail_timeout(log: Log) -> float:
    """How long a tail run may take to close every window by idle progress after the input stops.

    The partition whose front is furthest behind must idle until its progress passes the
    furthest front's window; events ahead of the wall clock are left out (they are rejected).
    """
    now = time.time()
    fronts = []
    for rows in log.values():
        times = [e["t"] for v in rows.values() if isinstance(e := classify(v), dict) and e["t"] <= now + 300]
        if times:
            fronts.append(max(times))
    spread = max(fronts) - min(fronts) if fronts else 0.0
    return spread + WINDOW + LATENESS + TAIL_SLACK_S


def reference_options(brokers: str, topic: str) -> dict[str, Any]:
    """The records' timestamps for the reference, when tests/hardening takes them (issue 21's interface).

    Without them the reference cannot reject events far ahead of their record's timestamp.
    """
    read_times: Callable[..., Any] | None = getattr(hardening, "read_log_times", None)
    if read_times is None or "times" not in inspect.signature(hardening.assert_accounted).parameters:
        return {}
    return {"times": read_times(brokers, topic)}


@dataclass(frozen=True)
class Decisions:
    """What a run decided: counts (latest per key), the reject reason per source, the late window per source."""

    metrics: dict[MetricKey, int]
    rejects: dict[tuple[int, int], str]
    late: dict[tuple[int, int], str]
    uncounted: tuple[bytes | None, ...]
    """DLQ records that carry counts (window_closed, window_let_go) rather than a source message."""


def decisions(out: Outputs) -> Decisions:
    metrics = latest_metrics(record.value for record in out["metrics"])  # check 3: raises on a lowered count
    sourced = [r for r in out["dlq"] if "source_offset" in r.headers]
    return Decisions(
        metrics=metrics,
        rejects={source_of(r): (r.headers.get("error") or b"").decode() for r in sourced},
        late={source_of(r): (r.headers.get("window_start") or b"").decode() for r in out["late"]},
        uncounted=tuple(sorted((r.value for r in out["dlq"] if "source_offset" not in r.headers), key=repr)),
    )


def _differences(got: Decisions, want: Decisions, limit: int = 5) -> list[str]:
    lines = []
    for name in ("metrics", "rejects", "late"):
        a, b = getattr(got, name), getattr(want, name)
        wrong = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b), key=repr) if a.get(k) != b.get(k)]
        if wrong:
            lines.append(f"{name}: {len(wrong)} differ (key, chaos, scratch), e.g. {wrong[:limit]}")
    if got.uncounted != want.uncounted:
        lines.append(f"uncounted DLQ records: chaos {len(got.uncounted)}, scratch {len(want.uncounted)}")
    return lines


def repeated(out: Outputs) -> dict[str, int]:
    """Records a reader sees twice: a byte-identical metric (a revision has a new count), or a source again."""
    counts = {}
    for name, records in out.items():
        seen = Counter((r.key, r.value) if name == "metrics" else identity_of(name, r) for r in records)
        counts[name] = sum(n - 1 for n in seen.values())
    return counts


def check_final(
    brokers: str,
    topic: str,
    out: Outputs,
    log: Log,
    scratch: Callable[[], Outputs],
    *,
    allow_duplicates: bool,
    exactly_once: bool,
) -> None:
    options = reference_options(brokers, topic)
    check_accounted(out, log, WINDOW, LATENESS, revisions=True, allow_duplicates=allow_duplicates, **options)
    mine = decisions(out)
    theirs = decisions(scratch())
    problems = _differences(mine, theirs)
    assert not problems, "decisions differ from one from-scratch bounded run:\n" + "\n".join(problems)
    if exactly_once:
        twice = repeated(out)
        assert not any(twice.values()), f"a read_committed reader saw records twice: {twice}"
