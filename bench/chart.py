"""bench/chart.png: events/s per contender, and latency and memory when the results file has them.

Drawn with matplotlib's Agg canvas straight onto a `Figure` (no pyplot, no
display), one panel per thing measured: throughput on the main input and on
the slow-peer input, the latency CDF, peak RSS against distinct keys per
window and against input length.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, StrMethodFormatter

from bench.report import Summary
from bench.results_file import Results, ceiling, started

VERDICT_COLOURS = {"PASS": "#2e7d32", "WRONG": "#ef6c00", "FAILING": "#c62828"}
OTHER_COLOUR = "#757575"  # ERROR, UNAVAILABLE: no rate worth a colour of its own
MIB = 2**20

Panel = Callable[[Axes], None]


def _throughput(
    results: Results,
    summaries: list[Summary],
    title: str,
    target_share: float,
    log: bool = False,
    by_partitions: bool = False,
) -> Panel:
    def draw(ax: Axes) -> None:
        shown = [s for s in summaries if s.events_per_s]
        medians = [float(s.events_per_s or 0) for s in shown]
        low, high = [], []
        for s, median in zip(shown, medians, strict=True):
            rates = [r for r in results.run_rates(s) if r is not None] or [median]
            low.append(median - min(rates))
            high.append(max(rates) - median)
        rows = range(len(shown))
        ax.barh(
            rows,
            medians,
            xerr=[low, high],
            capsize=3,
            color=[VERDICT_COLOURS.get(s.verdict, OTHER_COLOUR) for s in shown],
        )
        where = [f", {s.partitions} partitions" if by_partitions else "" for s in shown]
        ax.set_yticks(rows, [f"{s.label}{at} ({s.verdict})" for s, at in zip(shown, where, strict=True)])
        ax.invert_yaxis()  # the table's order, top to bottom
        for row, median, up in zip(rows, medians, high, strict=True):
            # Past the fastest run's whisker, so the figure never sits on it.
            ax.annotate(
                f"{median:,.0f}", (median + up, row), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8
            )
        roof = ceiling(summaries)
        if roof and roof.events_per_s:
            target = target_share * roof.events_per_s
            ax.axvline(
                target,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"target: {target_share:.0%} of the orjson ceiling ({target:,.0f}/s)",
            )
            # Lower right is empty: the last rows are the slower contenders.
            ax.legend(fontsize=8, loc="lower right")
        if log:
            # The slow peers run at ~1/50 of the ceiling: linear bars would hide them.
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.margins(x=0.12)  # room for the figures after the longest bar
        ax.set_xlabel("events/s (median; whiskers: slowest and fastest run)")
        ax.set_title(title, fontsize=10)

    return draw


def _latency(latency: dict[str, Any], target_s: float) -> Panel:
    def draw(ax: Axes) -> None:
        sample = sorted(latency.get("latencies_sample") or [])
        if sample:
            ax.plot(sample, [(i + 1) / len(sample) for i in range(len(sample))], color="#1565c0")
        for name, style in (("p50_s", ":"), ("p99_s", "-.")):
            if latency.get(name) is None:
                continue
            ax.axvline(
                latency[name], color="#1565c0", linestyle=style, linewidth=1, label=f"{name[:-2]} {latency[name]:.3f} s"
            )
        ax.axvline(target_s, color="black", linestyle="--", linewidth=1, label=f"target {target_s:g} s")
        ax.set_xlabel("event to metric record, s")
        ax.set_ylabel("share of sampled events")
        ax.set_title(
            f"Latency at {latency.get('rate_achieved') or 0:,.0f} events/s ({latency.get('verdict')})", fontsize=10
        )
        ax.legend(fontsize=8, loc="lower right")

    return draw


def _memory_keys(memory: dict[str, Any]) -> Panel:
    def draw(ax: Axes) -> None:
        rows = [r for r in memory.get("keys") or [] if r.get("peak_rss_mib") is not None]
        keys = [r["distinct_keys_per_window"] for r in rows]
        ax.plot(keys, [r["peak_rss_mib"] for r in rows], "o", color="#6a1b9a", label="measured")
        if keys and memory.get("baseline_mib") is not None and memory.get("bytes_per_key") is not None:
            ends = [0, max(keys)]
            ax.plot(
                ends,
                [memory["baseline_mib"] + k * memory["bytes_per_key"] / MIB for k in ends],
                "--",
                color="#6a1b9a",
                linewidth=1,
                label=f"fit: {memory['baseline_mib']:,.0f} MiB + {memory['bytes_per_key']:,.0f} B/key",
            )
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel("distinct keys per window")
        ax.set_ylabel("peak RSS, MiB")
        ax.set_title("Memory against distinct keys", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")

    return draw


def _memory_length(memory: dict[str, Any]) -> Panel:
    def draw(ax: Axes) -> None:
        rows = [r for r in memory.get("length") or [] if r.get("peak_rss_mib") is not None]
        ax.plot([r["events"] for r in rows], [r["peak_rss_mib"] for r in rows], "o-", color="#00838f")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel("input events (same users)")
        ax.set_ylabel("peak RSS, MiB")
        ax.set_ylim(bottom=0)
        ax.set_title("Memory against input length", fontsize=10)

    return draw


def panels(results: Results, target_share: float, target_latency_s: float) -> tuple[list[Panel], list[Panel]]:
    """Full-width throughput panels, and the small panels (latency, memory) for the row below."""
    wide: list[Panel] = []
    if results.main:
        wide.append(
            _throughput(
                results,
                results.main,
                f"{results.main[0].messages:,} messages, {results.main[0].partitions} partitions",
                target_share,
            )
        )
    if results.slow:
        wide.append(
            _throughput(
                results,
                results.slow,
                f"Slow peers: {results.slow[0].messages:,} messages (log scale)",
                target_share,
                log=True,
            )
        )
    if results.scaling:
        wide.append(
            _throughput(results, results.scaling, "Scaling: loginflow layouts", target_share, by_partitions=True)
        )
    small: list[Panel] = []
    if results.latency:
        small.append(_latency(results.latency, target_latency_s))
    if results.memory:
        small += [_memory_keys(results.memory), _memory_length(results.memory)]
    return wide, small


def draw(results: Results, path: Path, target_share: float, target_latency_s: float) -> None:
    """Write the PNG: one row per throughput panel, then latency and memory side by side."""
    wide, small = panels(results, target_share, target_latency_s)
    if not wide and not small:
        raise ValueError(f"{results.path} has nothing to chart")
    columns = max(1, len(small))
    heights = [1.0] * len(wide) + ([1.1] if small else [])
    figure = Figure(figsize=(14, 3.6 * sum(heights)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(len(heights), columns, height_ratios=heights)
    for row, panel in enumerate(wide):
        panel(figure.add_subplot(grid[row, :]))
    for column, panel in enumerate(small):
        panel(figure.add_subplot(grid[len(wide), column]))
    figure.suptitle(f"loginflow benchmark, {started(results.meta)}, git {results.meta.get('git', '?')}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" stamp: the file then changes only when the figures do.
    figure.savefig(path, dpi=100, metadata={"Software": None})
