"""``python -m bench.publish [RESULTS_JSON]``: write a results file into BENCHMARKS.md and bench/chart.png.

    python -m bench.publish                                   # the newest bench/results/*.json
    python -m bench.publish bench/results/20261125T205624Z.json

Only the part of BENCHMARKS.md between ``<!-- bench:results:begin -->`` and
``<!-- bench:results:end -->`` is rewritten; the analysis around it is written
by hand. Every figure in that part comes from the results file: the run's
date, command, git revision, machine, versions and load, the same tables
``python -m bench`` printed (`bench.report`), each contender's per-run
spread, the ratios to the targets, and the latency and memory results when
the run measured them ("not run" otherwise). `make bench` calls this last.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import chart, latency, results_file
from bench.contenders import CEILING_LOGINFLOW, PEERS
from bench.report import Summary, cpu_us_per_event, fmt, main_table, peers_table, scaling_table
from bench.results_file import REPO, Results, find, started
from bench.targets import ONE_BY_ONE, TARGET_CEILING_SHARE, TARGET_LATENCY_S, TWO_BY_ONE, targets

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"
DOC = REPO / "BENCHMARKS.md"
CHART = REPO / "bench" / "chart.png"

# A long latency run has many windows; the JSON keeps them all.
MAX_WINDOW_ROWS = 12


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _load(values: Sequence[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "not recorded"


def _machine(meta: dict[str, Any]) -> str:
    machine = meta.get("machine") or {}
    cpus = machine.get("cpus", meta.get("cpus"))
    known = [
        machine.get("cpu_model"),
        f"{machine['memory_gib']} GiB RAM" if machine.get("memory_gib") else None,
        machine.get("platform"),
    ]
    facts = ", ".join(fact for fact in known if fact) or "CPU model, memory and platform not recorded in this file"
    return f"{cpus or '?'} CPUs; {facts}"


def _command(meta: dict[str, Any]) -> str:
    # Settings that reached the contenders through the environment are part of the command.
    env = " ".join(f"{k}={v}" for k, v in sorted((meta.get("environment") or {}).items()))
    return f"{env} {meta.get('command', '?')}".strip()


def header(results: Results) -> str:
    """Date, exact command, revision, machine, versions, load, and where the figures come from."""
    meta = results.meta
    versions = ", ".join(f"{name} {version}" for name, version in (meta.get("versions") or {}).items())
    try:
        shown = results.path.resolve().relative_to(REPO)
    except ValueError:
        shown = results.path
    return "\n".join(
        [
            "## Machine, versions and command",
            "",
            f"- **Run**: {started(meta)}, {_duration(meta.get('duration_s'))} in all; "
            f"git {meta.get('git', 'unknown')}.",
            f"- **Command**: `{_command(meta)}` (`make bench` runs it with `.cache/bench/venv/bin/python`).",
            f"- **Machine**: {_machine(meta)}; the broker runs on the same machine.",
            f"- **Versions**: {versions or 'not recorded'}.",
            f"- **Load average** (1 / 5 / 15 min): {_load(meta.get('load_at_start'))} at the start, "
            f"{_load(meta.get('load_at_end'))} at the end.",
            f"- **Settings**: {meta.get('window_s')} s windows, {meta.get('lateness_s')} s allowed lateness, "
            f"slices `{meta.get('slices')}`, Quix grace {meta.get('quix_grace_s')} s.",
            f"- **Results file**: `{shown}`; this section is its rendering by "
            f"`python -m bench.publish {shown}` (edits here are overwritten).",
        ]
    )


def _input_line(results: Results, summaries: list[Summary]) -> str:
    facts = results.input_facts(summaries[0])
    if not facts:
        return f"Input: {summaries[0].messages:,} messages."
    spec = facts.get("spec") or {}
    return (
        f"Input: {facts['messages']:,} messages ({facts['generated_events']:,} generated over "
        f"{spec.get('span_s', 0):,.0f} s of event time + {facts['messages'] - facts['generated_events']:,} "
        f"trailer events, see *Method*), {facts['counted']:,} counted, {facts['rejected']:,} rejected, "
        f"{facts['late']:,} late; {facts['metric_records']:,} expected metric records."
    )


def spread(results: Results, summaries: list[Summary], by_partitions: bool = False) -> str:
    """Each contender's events/s per run, lowest first, so the medians' noise is visible."""
    parts = []
    for s in summaries:
        where = f" on {s.partitions} partitions" if by_partitions else ""
        rates = results.run_rates(s)
        shown = sorted(r for r in rates if r is not None)
        failed = len(rates) - len(shown)
        text = " / ".join(f"{r:,.0f}" for r in shown) or "no finished run"
        parts.append(f"{s.label}{where} {text}" + (f" ({failed} failed)" if failed else ""))
    return "Per-run events/s, lowest first: " + "; ".join(parts) + "."


def tables(results: Results) -> str:
    """The same tables `python -m bench` printed, each with its input and per-run spread."""
    count = results.meta.get("runs")
    runs = f"median of {count} runs" if count != 1 else "1 run"
    blocks = []
    if results.main:
        first = results.main[0]
        blocks += [
            f"### Main input: {first.messages:,} messages, {first.partitions} partitions, {runs}",
            _input_line(results, results.main),
            main_table(results.main),
            spread(results, results.main),
        ]
    if results.slow:
        first = results.slow[0]
        blocks += [
            f"### Slow peers: {first.messages:,} messages, {first.partitions} partitions, {runs}",
            "Same event density as the main input (see *Why the slow peers run on a smaller input*), "
            "next to loginflow and the ceiling on that same input. " + _input_line(results, results.slow),
            main_table(results.slow),
            spread(results, results.slow),
        ]
    if not results.main and not results.slow:
        blocks.append("Main and slow-peer sets: not in this run.")
    if results.scaling:
        blocks += [
            f"### Scaling: loginflow layouts, {runs}",
            scaling_table(results.scaling),
            spread(results, results.scaling, by_partitions=True),
        ]
    else:
        blocks.append("Scaling layouts: not in this run (`make bench-scaling`, or `python -m bench --scaling`).")
    return "\n\n".join(blocks)


def latency_section(latency: dict[str, Any] | None) -> str:
    """The latency mode's percentiles and per-window figures, or "not run"."""
    if not latency:
        return "### Latency\n\nNot run."
    get = latency.get  # a run with no output leaves percentiles (and more) empty
    run = (
        f"loginflow {get('layout', '?')} at {fmt(get('rate_achieved'))} events/s (target rate "
        f"{fmt(get('rate_target'))}) for {fmt(get('seconds'))} s, {get('window_s')} s windows, "
        f"{get('lateness_s')} s lateness: {fmt(get('records'), ',d')} metric records."
    )
    cost = f"CPU {fmt(get('cpu_s'), '.1f')} s, peak RSS {fmt(get('peak_rss_mib'))} MiB. Verdict: {get('verdict', '?')}."
    percentiles = " | ".join(fmt(get(name), ".3f") for name in ("p50_s", "p90_s", "p99_s", "max_s"))
    lines = [
        "### Latency",
        "",
        f"{run} {cost}",
        "",
        "| p50 s | p90 s | p99 s | max s |",
        "|---:|---:|---:|---:|",
        f"| {percentiles} |",
    ]
    windows = get("windows") or []
    if windows:
        lines += ["", "| window end | records | p50 s | p99 s | max s |", "|---|---:|---:|---:|---:|"]
        lines += [
            f"| {w.get('window_end')} | {fmt(w.get('records'), ',d')} | {fmt(w.get('p50_s'), '.3f')} "
            f"| {fmt(w.get('p99_s'), '.3f')} | {fmt(w.get('max_s'), '.3f')} |"
            for w in windows[:MAX_WINDOW_ROWS]
        ]
        if len(windows) > MAX_WINDOW_ROWS:
            lines.append(f"\n({len(windows) - MAX_WINDOW_ROWS} more windows in the results file.)")
    idle = get("idle_window") or {}
    if idle.get("records"):
        lines += [
            "",
            f"The window the input stopped in ({idle.get('window_end')}, {fmt(idle.get('records'), ',d')} "
            f"records) is closed by idle progress alone: p50 {fmt(idle.get('p50_s'), '.3f')} s, "
            f"p99 {fmt(idle.get('p99_s'), '.3f')} s, max {fmt(idle.get('max_s'), '.3f')} s.",
        ]
    lines += [f"\n- {note}" for note in get("notes") or []]
    return "\n".join(lines)


def guarantee_section(variants: dict[str, Any] | None) -> str:
    """Exactly-once against at-least-once: close-to-visible latency for a read_committed reader."""
    if not variants or not variants.get("runs"):
        return "### Exactly-once cost\n\nNot run."
    return "\n".join(
        [
            "### Exactly-once cost",
            "",
            "Latency mode once per guarantee and epoch (`bytewax.run -s`), each on its own input at the same rate. "
            "*Visible* is when a `read_committed` consumer first sees a record, minus (window end + lateness); "
            "with exactly-once a record becomes visible when its epoch's transaction commits. "
            "Throughput of exactly-once is in the main table (the `exactly-once, -s N` rows).",
            "",
            latency.variants_table(variants["runs"]),
        ]
    )


def memory_section(memory: dict[str, Any] | None) -> str:
    """Peak RSS against distinct keys per window and against input length, or "not run"."""
    if not memory:
        return "### Memory\n\nNot run."
    baseline, per_key = memory.get("baseline_mib"), memory.get("bytes_per_key")
    fit = "No fit of RSS against keys in the results file."
    if baseline is not None and per_key is not None:
        fit = f"Fit over the key series: {baseline:,.0f} MiB + {per_key:,.0f} bytes per distinct key per window."
    lines = [
        "### Memory",
        "",
        fit,
        "",
        "| users | events | distinct keys per window | peak RSS MiB | verdict |",
        "|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {fmt(k.get('users'), ',d')} | {fmt(k.get('events'), ',d')} "
        f"| {fmt(k.get('distinct_keys_per_window'), ',d')} | {fmt(k.get('peak_rss_mib'))} "
        f"| {k.get('verdict', '?')} |"
        for k in memory.get("keys", [])
    ]
    lines += ["", "| events | users | peak RSS MiB | verdict |", "|---:|---:|---:|---|"]
    lines += [
        f"| {fmt(r.get('events'), ',d')} | {fmt(r.get('users'), ',d')} | {fmt(r.get('peak_rss_mib'))} "
        f"| {r.get('verdict', '?')} |"
        for r in memory.get("length", [])
    ]
    return "\n".join(lines)


def frameworks(results: Results) -> str:
    """The lead table: loginflow, Flink and Kafka Streams against the fair ceiling, CPU per event first."""
    keys = {c.key for c in PEERS}
    rows = [s for s in results.main if s.key in keys]
    if not any(s.key not in (CEILING_LOGINFLOW.key, ONE_BY_ONE.key, TWO_BY_ONE.key) for s in rows):
        return "### Against the stream processors\n\nFlink and Kafka Streams: not in this run."
    lines = [
        f"### Against the stream processors: {rows[0].messages:,} messages, {rows[0].partitions} partitions",
        "",
        f"The yardstick is {CEILING_LOGINFLOW.label}: loginflow's own consumer settings, one consumer per "
        "partition. The headline is CPU per event (every process of the contender, start-up included) ÷ the "
        "ceiling's; the broker's own CPU per event is beside it. Wall-time rates move with the shared "
        "machine's load: compare them within one run only.",
        "",
        peers_table(rows),
    ]
    roof = find(rows, CEILING_LOGINFLOW.key)
    roof_cpu = cpu_us_per_event(roof.cpu_s, roof.messages) if roof else None
    for s in rows:
        cpu = cpu_us_per_event(s.cpu_s, s.messages)
        if s is not roof and cpu is not None and roof_cpu:
            lines.append(f"- {s.label}: **{cpu / roof_cpu:.2f}×** the ceiling's CPU per event ({s.verdict}).")
    return "\n".join(lines)


def render(results: Results, chart_ref: str) -> str:
    """The whole generated section, without its markers."""
    return "\n\n".join(
        [
            header(results),
            "## Results",
            frameworks(results),
            f"![events/s per contender, and latency and memory when measured]({chart_ref})",
            targets(results),
            tables(results),
            latency_section(results.latency),
            guarantee_section(results.latency_variants),
            memory_section(results.memory),
        ]
    )


def splice(document: str, generated: str) -> str:
    """`document` with the text between the markers replaced by `generated`."""
    begin, end = document.find(BEGIN), document.find(END)
    if begin < 0 or end < begin:
        raise ValueError(f"BENCHMARKS.md needs {BEGIN} ... {END} around the generated section")
    return document[: begin + len(BEGIN)] + "\n" + generated + "\n" + document[end:]


def main(argv: Sequence[str] | None = None) -> int:
    """Publish one results file; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.publish", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="?", type=Path, help="results JSON (default: the newest in bench/results/)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the markdown file to update")
    parser.add_argument("--chart", type=Path, default=CHART, help="where to write the PNG")
    args = parser.parse_args(argv)
    path = args.results or results_file.newest()
    results = results_file.load(path)
    chart_ref = Path(_relative(args.chart, args.doc.parent)).as_posix()
    try:
        # The document first: a file without markers must not leave a new chart behind.
        updated = splice(args.doc.read_text(encoding="utf-8"), render(results, chart_ref))
        chart.draw(results, args.chart, TARGET_CEILING_SHARE, TARGET_LATENCY_S)
    except ValueError as exc:
        print(f"bench.publish: {exc}", file=sys.stderr)
        return 1
    args.doc.write_text(updated, encoding="utf-8")
    print(f"bench.publish: {path} -> {args.doc} and {args.chart}", file=sys.stderr)
    return 0


def _relative(target: Path, start: Path) -> str:
    # The chart is linked relative to the document, wherever either lives.
    try:
        return str(target.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(target.resolve())


if __name__ == "__main__":
    raise SystemExit(main())
