"""``python -m bench``: run every contender against one generated input, several times.

    python -m bench --events 1000000 --runs 3            # what `make bench` runs
    python -m bench --events 200000 --runs 1 --only loginflow-1x1,ceiling-raw
    python -m bench --scaling-only                       # what `make bench-scaling` runs
    python -m bench --no-main --latency --memory         # only the latency and memory modes

The harness starts its own broker, generates the input, runs the contenders
round-robin (one run of each per round, so slow drifts in the machine's load
spread over all of them), prints markdown tables and writes
``bench/results/<timestamp>.json``. The broker is stopped on every exit path.

Three sets: the main one on ``--events``; the slow peers (Quix, naive
Bytewax) on ``--slow-events``, together with loginflow and the ceiling on
that same smaller input; and, with ``--scaling``, loginflow layouts on 3 and
6 partitions. ``--latency`` (`bench.latency`) and ``--memory`` (`bench.memory`)
add the two modes that run loginflow 1x1 on inputs of their own.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import latency, memory, runner
from bench.broker import BenchBroker
from bench.contenders import ALL, MAIN, SCALING, SLOW, Contender, Kind
from bench.dataset import Dataset, DatasetSpec, build
from bench.harness import HarnessSettings, RunResult, run_once
from bench.report import Summary, machine_facts, main_table, notes_block, scaling_table, summarize, write_json
from operators.runtime.settings import DEFAULT_SLICES, parse_slices

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
WORK_ROOT = REPO / ".cache" / "bench" / "runs"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=int(os.environ.get("BENCH_EVENTS", "1000000")))
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    parser.add_argument(
        "--slow-events",
        type=int,
        default=int(os.environ.get("BENCH_SLOW_EVENTS", "50000")),
        help="input size for the slow peers (Quix, naive Bytewax)",
    )
    parser.add_argument("--only", default="", help="comma-separated contender keys: " + ", ".join(ALL))
    scaling = parser.add_mutually_exclusive_group()
    scaling.add_argument("--scaling", action="store_true", help="also run loginflow layouts on 3 and 6 partitions")
    scaling.add_argument("--scaling-only", action="store_true", help="only the scaling runs")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one run may take before it is killed")
    parser.add_argument("--quix-idle", type=float, default=5.0, help="Quix peer: stop after this many idle seconds")
    parser.add_argument("--quix-grace", type=float, help="Quix peer's window grace, seconds (default: --lateness)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run loginflow under py-spy and print its hot spots (perturbs its timings)",
    )
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--lateness", type=float, default=10.0)
    parser.add_argument("--slices", default=os.environ.get("BENCH_SLICES", DEFAULT_SLICES))
    parser.add_argument("--no-main", action="store_true", help="skip the main and slow contender sets")
    parser.add_argument(
        "--latency",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="latency mode: loginflow 1x1 tailing a generator that produces in real time",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=float(os.environ.get("BENCH_LATENCY_RATE", "20000")),
        help="latency mode: events per second produced (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=float(os.environ.get("BENCH_LATENCY_SECONDS", "180")),
        help="latency mode: seconds of production (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-producers",
        type=int,
        default=1,
        help="latency mode: generator processes sharing the rate (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-variants",
        type=_variants,
        default=_variants(DEFAULT_LATENCY_VARIANTS),
        help="latency mode: guarantee:epoch_s runs; the first is the headline (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-users",
        type=int,
        default=latency.LatencySpec.users,
        help="latency mode: user pool; sets the records per window (default: %(default)s)",
    )
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="memory mode: loginflow 1x1 peak RSS against keys per window, input length",
    )
    parser.add_argument("--memory-runs", type=int, default=1, help="memory mode: runs per point (default: %(default)s)")
    parser.add_argument(
        "--memory-users",
        type=_sizes,
        default=memory.MemoryPlan.key_users,
        help="memory mode, keys series: user pool sizes (default: %(default)s)",
    )
    parser.add_argument(
        "--memory-lengths",
        type=_sizes,
        default=memory.MemoryPlan.lengths,
        help="memory mode, length series: event counts (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if min(args.events, args.slow_events, args.runs, args.latency_producers, args.latency_users, args.memory_runs) < 1:
        parser.error("--events, --slow-events, --runs, --latency-producers/-users and --memory-runs must be positive")
    if args.latency_rate <= 0 or args.latency_seconds <= 0:
        parser.error("--latency-rate and --latency-seconds must be positive")
    unknown = {key for key in args.only.split(",") if key} - ALL.keys()
    if unknown:
        parser.error(f"unknown contender(s) {sorted(unknown)}; known: {', '.join(ALL)}")
    return args


DEFAULT_LATENCY_VARIANTS = "at-least-once:10,exactly-once:1,exactly-once:10"


def _variants(text: str) -> tuple[tuple[str, int], ...]:
    variants = []
    for item in text.split(","):
        guarantee, _, epoch = item.strip().partition(":")
        if guarantee not in ("at-least-once", "exactly-once") or not epoch.isdigit() or int(epoch) < 1:
            msg = f"expected guarantee:epoch_seconds items such as exactly-once:1, got {item!r}"
            raise argparse.ArgumentTypeError(msg)
        variants.append((guarantee, int(epoch)))
    return tuple(variants)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        msg = f"expected comma-separated positive integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return sizes


def _add_sections(path: Path, sections: dict[str, dict[str, Any]]) -> None:
    """Top-level "latency" and "memory" next to what `write_json` wrote."""
    if sections:
        payload = orjson.loads(path.read_bytes())
        payload.update(sections)
        path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


def _stop_on_signal(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM/SIGHUP into the same unwinding as Ctrl-C, so every
    # `finally` (children, broker) runs.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("bytewax", "confluent-kafka", "orjson", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    versions["quixstreams"] = "3.28.1 (own venv, see bench/requirements-quix.txt)"
    versions["kafka"] = os.environ.get("KAFKA_VERSION", "4.4.0")
    return versions


def _git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (uncommitted changes)" if dirty else "")


_WARMED: set[str] = set()


def _warm_up(contenders: Sequence[Contender], dataset: Dataset, broker: BenchBroker, settings: HarnessSettings) -> None:
    """One unmeasured run that writes output, once per broker, before any measured run.

    A fresh broker compiles its write path (the JVM's JIT) during the first run
    that produces: 1-1.8 of its CPU seconds, charged to whichever contender
    writes first, while the ceilings only read and never pay it.
    """
    writer = next((c for c in contenders if c.kind is not Kind.CEILING and c.available() is None), None)
    if writer is None or broker.bootstrap in _WARMED:
        return
    _WARMED.add(broker.bootstrap)
    result = run_once(writer, dataset, broker, settings, -1)
    _log(f"warm-up run of {writer.key} (not measured): {result.verdict}")


def _run_round_robin(
    contenders: Sequence[Contender], dataset: Dataset, broker: BenchBroker, settings: HarnessSettings, runs: int
) -> dict[str, list[RunResult]]:
    """Run every contender once per round, `runs` rounds."""
    results: dict[str, list[RunResult]] = {c.key: [] for c in contenders}
    _warm_up(contenders, dataset, broker, settings)
    for round_index in range(runs):
        for contender in contenders:
            result = run_once(contender, dataset, broker, settings, round_index)
            results[contender.key].append(result)
            rate = f"{result.events_per_s:,.0f} ev/s" if result.events_per_s else "no rate"
            detail = f"active {result.active_s}s, wall {result.wall_s}s, RSS {result.peak_rss_mib} MiB"
            error = f" — {result.error.splitlines()[0]}" if result.error else ""
            _log(
                f"[p{dataset.spec.partitions} run {round_index + 1}/{runs}] {contender.key}: {rate}, {detail}, "
                f"{result.verdict}{error}"
            )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (non-zero only if the harness itself failed)."""
    args = _parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    quix_grace = args.lateness if args.quix_grace is None else args.quix_grace
    settings = HarnessSettings(
        args.window,
        args.lateness,
        args.slices,
        args.timeout,
        args.quix_idle,
        quix_grace,
        WORK_ROOT / stamp,
        args.profile,
    )
    slices = parse_slices(args.slices)
    wanted = {key for key in args.only.split(",") if key}
    skip = args.scaling_only or args.no_main
    main_set = [] if skip else [c for c in MAIN if not wanted or c.key in wanted]
    slow_set = [] if skip else [c for c in SLOW if not wanted or c.key in wanted]
    if args.slow_events >= args.events:
        # The slow peers can afford the full input: one table.
        main_set += [c for c in slow_set if c not in main_set]
        slow_set = []
    elif not any(c not in MAIN for c in slow_set):
        slow_set = []  # only loginflow/ceiling again: nothing to compare them with
    meta: dict[str, object] = {
        "started": stamp,
        "command": " ".join([os.path.basename(sys.executable), "-m", "bench", *(argv or sys.argv[1:])]),
        "events": args.events,
        "slow_events": args.slow_events if slow_set else None,
        "runs": args.runs,
        "quix_grace_s": quix_grace,
        "cpus": os.cpu_count(),
        "machine": machine_facts(),
        "load_at_start": os.getloadavg(),
        "versions": _versions(),
        "git": _git_state(),
        # Settings that reach the contenders through the environment (e.g. KAFKA_PROP_*).
        "environment": {k: v for k, v in os.environ.items() if k.startswith(("KAFKA_PROP_", "BENCH_"))},
        "window_s": args.window,
        "lateness_s": args.lateness,
        "slices": args.slices,
    }
    all_runs: list[RunResult] = []
    inputs: dict[str, dict[str, object]] = {}
    summaries: list[Summary] = []
    slow: list[Summary] = []
    scaling: list[Summary] = []
    sections: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    try:
        with BenchBroker() as broker:
            datasets: dict[tuple[int, int], Dataset] = {}

            def dataset(events: int, partitions: int) -> Dataset:
                if (events, partitions) not in datasets:
                    # A smaller input keeps the events per second of event time: the span
                    # shrinks with it, so read skew between partitions (a few thousand
                    # messages) spans the same event time as on the full input.
                    span = DatasetSpec.span_s * min(1.0, events / args.events)
                    _log(f"generating {events:,} events over {span:,.0f} s of event time on {partitions} partitions")
                    spec = DatasetSpec(events=events, partitions=partitions, span_s=span)
                    datasets[(events, partitions)] = build(
                        broker.bootstrap,
                        f"bench-input-{events}-p{partitions}",
                        spec,
                        slices,
                        args.window,
                        args.lateness,
                    )
                    _log(f"input ready: {datasets[(events, partitions)].summary()}")
                return datasets[(events, partitions)]

            by_key: dict[tuple[str, int, int], list[RunResult]] = {}

            def measure(contenders: Sequence[Contender], events: int, partitions: int) -> list[Summary]:
                todo = [c for c in contenders if (c.key, events, partitions) not in by_key]
                if todo:
                    results = _run_round_robin(todo, dataset(events, partitions), broker, settings, args.runs)
                    by_key.update({(key, events, partitions): runs for key, runs in results.items()})
                return [summarize(c, partitions, by_key[(c.key, events, partitions)]) for c in contenders]

            if main_set:
                summaries = measure(main_set, args.events, 3)
            if slow_set:
                slow = measure(slow_set, args.slow_events, 3)
            if args.scaling or args.scaling_only:
                for partitions in (3, 6):
                    scaling += measure(SCALING, args.events, partitions)
            if args.latency:
                variants = []
                for guarantee, epoch_s in args.latency_variants:
                    spec = latency.LatencySpec(
                        args.latency_rate,
                        args.latency_seconds,
                        args.latency_producers,
                        args.latency_users,
                        guarantee=guarantee,
                        epoch_s=epoch_s,
                    )
                    variants.append(latency.run(broker, settings, spec, _log))
                sections["latency"] = variants[0]
                sections["latency_variants"] = {"runs": variants}
            if args.memory:
                plan = memory.MemoryPlan(
                    key_users=args.memory_users, lengths=args.memory_lengths, runs=args.memory_runs
                )
                sections["memory"] = memory.run(broker, settings, plan, _log)
            all_runs = [run for runs in by_key.values() for run in runs]
            inputs.update({f"{e}-p{p}": d.summary() for (e, p), d in datasets.items()})
            meta["inputs"] = inputs
    except KeyboardInterrupt as exc:
        _log(f"interrupted ({exc}); children and broker stopped")
        return 130
    finally:
        runner.kill_all()
    meta["load_at_end"] = os.getloadavg()
    meta["duration_s"] = round(time.monotonic() - started, 1)

    path = RESULTS_DIR / f"{stamp}.json"
    write_json(path, meta, all_runs, [*summaries, *slow, *scaling])
    _add_sections(path, sections)
    print(f"## loginflow benchmark, median of {args.runs} run(s), {stamp}\n")
    for name, facts in inputs.items():
        print(f"- input {name}: {facts}")
    print()
    if summaries:
        print(f"### {args.events:,} events, 3 partitions\n\n" + main_table(summaries) + "\n")
    if slow:
        print(f"### slow peers: {args.slow_events:,} events, 3 partitions\n\n" + main_table(slow) + "\n")
    if scaling:
        print(f"### scaling: {args.events:,} events\n\n" + scaling_table(scaling) + "\n")
    for run in all_runs:
        if run.hotspots:
            print(f"### py-spy hot spots, {run.contender} run {run.run + 1} on {run.input_topic}\n")
            for kind, rows in run.hotspots.items():
                print(f"{kind}: " + ", ".join(f"{name} {share:.1%}" for name, share in rows[:12]) + "\n")
    if "latency" in sections:
        lat = sections["latency"]
        print(
            f"### latency: loginflow 1x1 tailing {lat['rate_target']:,.0f} events/s for {lat['seconds']:,.0f} s, "
            f"window {lat['window_s']} s, lateness {lat['lateness_s']:g} s\n\n" + latency.table(lat) + "\n"
        )
        for note in lat["notes"]:
            print(f"- {note}")
        print("\n### latency by guarantee and epoch\n\n" + latency.variants_table(sections["latency_variants"]["runs"]))
    if "memory" in sections:
        mem = sections["memory"]
        print(f"### memory: loginflow 1x1 peak RSS, {mem['runs']} run(s) per point\n\n" + memory.table(mem) + "\n")
    notes = notes_block([*summaries, *slow, *scaling])
    if notes:
        print("notes:\n" + notes + "\n")
    print(
        f"load average {meta['load_at_start']} -> {meta['load_at_end']}; {meta['duration_s']} s in all; "
        f"results: {path.relative_to(REPO)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
