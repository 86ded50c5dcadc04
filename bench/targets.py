"""The issues' targets and how far one results file is from each (`python -m bench.publish` renders them).

Kept apart from `bench.publish` so that the pure arithmetic is testable
without the chart's plotting packages.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.contenders import ALL, CEILING_LOGINFLOW, CEILING_ORJSON, Kind, loginflow
from bench.report import cpu_us_per_event
from bench.results_file import Results, ceiling, find

# The issues' targets, not measurements: loginflow 1x1 at 60% of the consume +
# orjson ceiling, 2 processes at most 1.15x the CPU per event of one, p99
# latency within a second, also for the window closed by idle progress.
TARGET_CEILING_SHARE = 0.60
TARGET_2X1_SPEEDUP = 1.5
TARGET_2X1_CPU_RATIO = 1.15
TARGET_LATENCY_S = 1.0
# Lead targets against the fair ceiling (loginflow's consumer settings): CPU
# per event at most 2.5x its, the broker's CPU per event at most 2x its; p99
# latency at most 0.5 s when a window holds about 20k records, not 200k.
TARGET_FAIR_CPU_RATIO = 2.5
TARGET_FAIR_BROKER_RATIO = 2.0
TARGET_SMALL_WINDOW_LATENCY_S = 0.5
SMALL_WINDOW_RECORDS = 50_000

ONE_BY_ONE = loginflow(1, 1)
TWO_BY_ONE = loginflow(2, 1)
PEER_KEYS = frozenset(c.key for c in ALL.values() if c.kind is Kind.PEER)


def _met(value: float, target: float, higher_is_better: bool = True) -> str:
    return "met" if (value >= target if higher_is_better else value <= target) else "**not met**"


def targets(results: Results) -> str:
    """How far loginflow is from each target, and from every peer on the same input."""
    lines = ["### Against the targets", ""]
    one, roof = find(results.main, ONE_BY_ONE.key), ceiling(results.main)
    if one and roof and one.events_per_s and roof.events_per_s:
        share = one.events_per_s / roof.events_per_s
        lines.append(
            f"- {one.label} ÷ {roof.label}: **{share:.2f}** ({one.events_per_s:,.0f} / "
            f"{roof.events_per_s:,.0f} events/s); target {TARGET_CEILING_SHARE:.2f}: "
            f"{_met(share, TARGET_CEILING_SHARE)}."
        )
    else:
        lines.append(f"- {ONE_BY_ONE.label} ÷ {CEILING_ORJSON.label}: not measured in this run.")
    for group in (results.main, results.slow):
        base = find(group, ONE_BY_ONE.key)
        for peer in (s for s in group if s.key in PEER_KEYS):
            if base and base.events_per_s and peer.events_per_s:
                times = base.events_per_s / peer.events_per_s
                lines.append(
                    f"- {base.label} against {peer.label} on {peer.messages:,} messages: "
                    f"{base.events_per_s:,.0f} vs {peer.events_per_s:,.0f} events/s "
                    f"(**{times:.2f}×**; the peer's verdict: {peer.verdict})."
                )
    lines += fair_ceiling_targets(results)
    two = find(results.main, TWO_BY_ONE.key)
    if one and two and one.events_per_s and two.events_per_s:
        speedup = two.events_per_s / one.events_per_s
        broker = results.broker_cpu_s(two)
        broker_text = f" (median {statistics.median(broker):.1f} CPU s per run)" if broker else ""
        lines.append(
            f"- {two.label} ÷ {one.label}: **{speedup:.2f}**; target {TARGET_2X1_SPEEDUP}: "
            f"{_met(speedup, TARGET_2X1_SPEEDUP)}. The two processes share the machine's "
            f"{results.meta.get('cpus', '?')} cores with the broker{broker_text} "
            "and the harness."
        )
    if one and two and one.cpu_s and two.cpu_s and one.messages and two.messages:
        ratio = (two.cpu_s / two.messages) / (one.cpu_s / one.messages)
        lines.append(
            f"- CPU per event, {two.label} ÷ {one.label}: **{ratio:.2f}** "
            f"({two.cpu_s / two.messages * 1e6:.1f} / {one.cpu_s / one.messages * 1e6:.1f} µs); "
            f"target ≤ {TARGET_2X1_CPU_RATIO}: {_met(ratio, TARGET_2X1_CPU_RATIO, higher_is_better=False)}."
        )
    latency = results.latency or {}
    goal, size = latency_target(latency)
    p99 = latency.get("p99_s")
    if p99 is not None:
        lines.append(
            f"- Latency p99{size}: **{p99:.3f} s**; target ≤ {goal:g} s: "
            f"{_met(p99, goal, higher_is_better=False)} (see *Latency*)."
        )
    idle = (latency.get("idle_window") or {}).get("p99_s")
    if idle is not None:
        lines.append(
            f"- Latency p99 of the window closed by idle progress (input stopped): **{idle:.3f} s**; "
            f"target ≤ {goal:g} s: {_met(idle, goal, higher_is_better=False)}."
        )
    return "\n".join(lines)


def fair_ceiling_targets(results: Results) -> list[str]:
    """loginflow 1x1's CPU and broker CPU per event against the fair ceiling's, when both ran."""
    one, roof = find(results.main, ONE_BY_ONE.key), find(results.main, CEILING_LOGINFLOW.key)
    if not one or not roof:
        return []
    lines = []
    cpu, roof_cpu = cpu_us_per_event(one.cpu_s, one.messages), cpu_us_per_event(roof.cpu_s, roof.messages)
    if cpu is not None and roof_cpu:
        ratio = cpu / roof_cpu
        lines.append(
            f"- CPU per event, {one.label} ÷ {roof.label}: **{ratio:.2f}** ({cpu:.1f} / {roof_cpu:.1f} µs); "
            f"target ≤ {TARGET_FAIR_CPU_RATIO}: {_met(ratio, TARGET_FAIR_CPU_RATIO, higher_is_better=False)}."
        )
    broker = cpu_us_per_event(one.broker_cpu_s, one.messages)
    roof_broker = cpu_us_per_event(roof.broker_cpu_s, roof.messages)
    if broker is not None and roof_broker:
        ratio = broker / roof_broker
        lines.append(
            f"- Broker CPU per event, {one.label} ÷ {roof.label}: **{ratio:.2f}** ({broker:.1f} / "
            f"{roof_broker:.1f} µs); target ≤ {TARGET_FAIR_BROKER_RATIO}: "
            f"{_met(ratio, TARGET_FAIR_BROKER_RATIO, higher_is_better=False)}."
        )
    return lines


def latency_target(latency: dict[str, Any]) -> tuple[float, str]:
    """The p99 goal for the run's window size (0.5 s near 20k records a window, else 1 s), and its label."""
    sizes = sorted(w["records"] for w in latency.get("windows") or [] if w.get("records"))
    if not sizes:
        return TARGET_LATENCY_S, ""
    typical = sizes[len(sizes) // 2]
    goal = TARGET_SMALL_WINDOW_LATENCY_S if typical <= SMALL_WINDOW_RECORDS else TARGET_LATENCY_S
    return goal, f" at {typical:,} records a window"
