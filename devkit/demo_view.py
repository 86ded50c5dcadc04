"""What `devkit.demo` shows: the running tallies and their terminal rendering.

Pure apart from the clock values passed in: `DemoStats` is fed decoded facts
(metric record values, DLQ reasons, input high watermarks) by the demo's Kafka
loop, and the `render_*` functions turn it into text. Keeping Kafka out of
here keeps the view easy to reason about and to try without a broker.
"""

from __future__ import annotations

import calendar
import json
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field

TOP_KEYS = 5
# Closed windows kept per slice; only the latest is shown, the one before it
# still receives stragglers from slower shards for a moment after a close.
KEPT_WINDOWS = 3
# Seconds of input high-watermark samples the events/s figure averages over.
RATE_SPAN = 5.0
CLEAR_HOME = "\x1b[H\x1b[2J"


def parse_utc(text: str) -> int:
    """Epoch seconds of an encoder timestamp such as ``2024-03-01T00:00:00Z``."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def hms(epoch: float) -> str:
    """``HH:MM:SS`` in UTC, the zone the output records use."""
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


@dataclass
class SliceStats:
    """What login-metrics said about one slice."""

    name: str
    records: int = 0
    closed: set[int] = field(default_factory=set)
    # window start -> key text -> count; a replayed record overwrites its copy.
    windows: dict[int, dict[str, int]] = field(default_factory=dict)
    window_seconds: int = 0
    # Whether any closed window had a non-zero count (min_count >= 1 makes this
    # the norm, but the demo's verdict should not rely on it).
    nonzero: bool = False

    def add(self, start: int, end: int, key: str, count: int) -> None:
        """Take one record of window [start, end)."""
        self.records += 1
        self.window_seconds = end - start
        self.closed.add(start)
        self.nonzero |= count > 0
        self.windows.setdefault(start, {})[key] = count
        # A straggler for a window older than those kept is re-added, then dropped here.
        for old in sorted(self.windows)[:-KEPT_WINDOWS]:
            del self.windows[old]

    def latest(self) -> tuple[int, dict[str, int]] | None:
        """The latest closed window's start and counts, if any window closed."""
        if not self.windows:
            return None
        start = max(self.windows)
        return start, self.windows[start]


class DemoStats:
    """Running tallies of one demo run."""

    def __init__(self, slice_names: list[str], input_topic: str, started: float) -> None:
        """Expect `slice_names` (in display order); `started` is the wall time of the run."""
        self.slices = {name: SliceStats(name) for name in slice_names}
        self.expected = list(slice_names)
        self.input_topic = input_topic
        self.started = started
        self.dlq: Counter[str] = Counter()
        self.late = 0
        self.bad_records = 0
        self._input_start: int | None = None
        self._input_samples: deque[tuple[float, int]] = deque()

    def add_metric(self, value: bytes | None) -> None:
        """Decode one login-metrics record value and tally it."""
        try:
            doc = json.loads(value or b"")
            start, end = parse_utc(doc["window_start"]), parse_utc(doc["window_end"])
            key = " | ".join(str(v) for v in doc["key"].values())
            spec = self.slices.setdefault(doc["slice"], SliceStats(doc["slice"]))
            spec.add(start, end, key, int(doc["count"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            # A record we cannot read is worth a number on screen, not a crash.
            self.bad_records += 1

    def add_dlq(self, reason: str) -> None:
        """Tally one dead-lettered message by its ``error`` header."""
        self.dlq[reason] += 1

    def add_late(self) -> None:
        """Tally one late event."""
        self.late += 1

    def sample_input(self, total_high: int, now: float) -> None:
        """Record the input topic's summed high watermarks at wall time `now`."""
        if self._input_start is None:
            self._input_start = total_high
        self._input_samples.append((now, total_high))
        while len(self._input_samples) > 2 and now - self._input_samples[1][0] >= RATE_SPAN:
            self._input_samples.popleft()

    @property
    def produced(self) -> int:
        """Messages appended to the input topic since the first sample."""
        if not self._input_samples or self._input_start is None:
            return 0
        return self._input_samples[-1][1] - self._input_start

    def input_rate(self) -> float:
        """Input messages per second over the last few seconds."""
        if len(self._input_samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._input_samples[0], self._input_samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def closed_through(self) -> int | None:
        """End of the latest window closed by any slice.

        This is the dataflow's watermark as far as the outside can see it: a
        close shows only when a window's records arrive, so the true watermark
        is somewhere between this and the next window end.
        """
        ends = [max(s.closed) + s.window_seconds for s in self.slices.values() if s.closed]
        return max(ends) if ends else None

    def missing_slices(self) -> list[str]:
        """Configured slices that have not shown a closed window with a non-zero count."""
        return [name for name in self.expected if not self.slices[name].nonzero]


def _dlq_lines(stats: DemoStats, prefix: str, width: int) -> list[str]:
    """``DLQ: total (reason n, ...)``, wrapped between reasons, never inside one."""
    total = sum(stats.dlq.values())
    if not total:
        return [f"{prefix}DLQ: 0"]
    items = [f"{reason} {n:,}," for reason, n in stats.dlq.most_common()]
    items[-1] = items[-1][:-1] + ")"
    lines, line = [], f"{prefix}DLQ: {total:,} ("
    indent = " " * (len(prefix) + 5)
    for item in items:
        sep = "" if line.endswith("(") or line == indent else " "
        if len(line) + len(sep) + len(item) > width and line != indent:
            lines.append(line)
            line, sep = indent, ""
        line += sep + item
    return [*lines, line]


def _lag_text(stats: DemoStats, now: float) -> str:
    through = stats.closed_through()
    if through is None:
        return "no window closed yet"
    return f"closed through {hms(through)}, lag {now - through:.0f} s"


def render_screen(
    stats: DemoStats, now: float, header: str, logs: list[str], size: tuple[int, int], *, final: bool = False
) -> str:
    """The full-screen frame: clear + home, then the text cut to `size` (columns, lines).

    Cutting rather than wrapping keeps a small terminal from scrolling, which
    would leave stale lines behind on every redraw.

    A `final` frame, drawn after everything stopped, gives the average input
    rate over the run (`now` being its end) instead of the current one.
    """
    width, height = size
    ran = now - stats.started
    rate = stats.produced / ran if final and ran > 0 else stats.input_rate()
    lines = [
        f"{header}   now {hms(now)} UTC, running {ran:.0f} s",
        "",
        f"input {stats.input_topic}: {rate:,.0f} events/s{' on average' if final else ''}, {stats.produced:,} produced",
        *_dlq_lines(stats, "", width),
        f"late: {stats.late:,}    metrics records: {sum(s.records for s in stats.slices.values()):,}"
        + (f" ({stats.bad_records} unreadable)" if stats.bad_records else ""),
        f"watermark: {_lag_text(stats, now)}",
    ]
    for spec in stats.slices.values():
        lines.append("")
        latest = spec.latest()
        if latest is None:
            lines.append(f"{spec.name}: no closed window yet")
            continue
        start, counts = latest
        lines.append(
            f"{spec.name}: window {hms(start)}-{hms(start + spec.window_seconds)}, "
            f"{len(counts):,} keys, {sum(counts.values()):,} logins; "
            f"{len(spec.closed)} windows, {spec.records:,} records so far"
        )
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_KEYS]
        lines.extend(f"  {count:>6,}  {key}" for key, count in top)
    if logs:
        lines += ["", "recent log:", *(f"  {line}" for line in logs)]
    return CLEAR_HOME + "\n".join(line[:width] for line in lines[: max(1, height - 1)]) + "\n"


def render_status(stats: DemoStats, now: float) -> str:
    """One compact line for a non-terminal stdout."""
    windows = " ".join(f"{name}={len(spec.closed)}" for name, spec in stats.slices.items())
    return (
        f"[{now - stats.started:4.0f}s] in {stats.input_rate():,.0f}/s produced {stats.produced:,} | "
        f"{_lag_text(stats, now)} | windows {windows} | "
        f"dlq {sum(stats.dlq.values()):,} late {stats.late:,}"
    )


def render_summary(stats: DemoStats, seconds: float) -> str:
    """The closing report."""
    lines = [
        f"demo summary ({seconds:.0f} s):",
        f"  events produced: {stats.produced:,} to {stats.input_topic}",
        "  per slice: records, windows closed, latest window",
    ]
    for spec in stats.slices.values():
        latest = spec.latest()
        window = "none" if latest is None else f"{hms(latest[0])}-{hms(latest[0] + spec.window_seconds)} UTC"
        lines.append(f"    {spec.name:<28} {spec.records:>8,} {len(spec.closed):>4}   {window}")
    lines += [*_dlq_lines(stats, "  ", 100), f"  late: {stats.late:,}"]
    return "\n".join(lines)


class RecentLog(logging.Handler):
    """Keeps the last few log lines so the live view can show them in place."""

    def __init__(self, size: int = 6) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        """Store the formatted record."""
        self.lines.append(self.format(record))
