"""``python -m report``: read the three output topics and write the results page.

The cluster and topics come from the dataflow's own settings (KAFKA_BROKERS,
KAFKA_PROP_*, OUTPUT_TOPIC, DLQ_TOPIC, LATE_TOPIC, SLICES, WINDOW_SECONDS,
read by `Settings.from_env`), so a report reads what the dataflow with the
same environment wrote. Progress goes to stderr as log lines.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from operators.runtime.logs import configure_logging, kv
from operators.runtime.settings import ConfigError, Settings
from operators.runtime.shutdown import stop_on, stop_process
from report.aggregate import (
    Metric,
    count_by,
    in_range,
    latest_metrics,
    most_distinct,
    once_per_source,
    pair_slice,
    parse_utc,
    top_keys,
    window_series,
)
from report.read import ReadError, TopicReader
from report.render import Page, Spread, render

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = "loginflow-report.html"


def _instant(text: str) -> datetime:
    try:
        return parse_utc(text)
    except ValueError:
        msg = f"not an ISO 8601 UTC time such as 2024-03-01T00:00:00Z: {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def parser() -> argparse.ArgumentParser:
    """The command line; a bad value exits at once with a line naming the option."""
    cli = argparse.ArgumentParser(prog="python -m report", description=__doc__.split("\n\n")[0])
    cli.add_argument("--from", dest="start", type=_instant, help="first window start shown (UTC ISO 8601)")
    cli.add_argument("--to", dest="end", type=_instant, help="windows starting before this are shown (UTC ISO 8601)")
    cli.add_argument("--top", type=_positive, default=10, help="keys and users listed per table [10]")
    cli.add_argument(
        "--slice",
        dest="slices",
        action="append",
        default=[],
        help="show only this slice (as named in SLICES, e.g. user_id+ip); repeat for more [all]",
    )
    cli.add_argument("--output", type=Path, default=Path(DEFAULT_OUTPUT), help=f"the HTML file [{DEFAULT_OUTPUT}]")
    return cli


def parse_args(argv: Sequence[str] | None, settings: Settings) -> argparse.Namespace:
    """Parsed options, checked against each other and against SLICES."""
    cli = parser()
    args = cli.parse_args(argv)
    if args.start and args.end and args.start >= args.end:
        cli.error(f"argument --to: must be after --from ({args.start.isoformat()})")
    known = [spec.name for spec in settings.slices]
    for name in args.slices:
        if name not in known:
            cli.error(f"argument --slice: {name!r} is not a slice of SLICES ({', '.join(known)})")
    return args


def build_page(settings: Settings, args: argparse.Namespace) -> Page:
    """Read the three topics and compute everything the page shows."""
    chosen = set(args.slices) or {spec.name for spec in settings.slices}
    metrics_reader = TopicReader(settings, settings.output_topic, "OUTPUT_TOPIC")
    everything, unreadable = latest_metrics((raw.partition, raw.key, raw.value) for raw in metrics_reader)
    metrics = [metric for metric in everything if in_range(metric.window_start, args.start, args.end)]
    shown = [metric for metric in metrics if metric.slice in chosen]
    notes = _unknown_slices(metrics, settings)
    dlq_reader = TopicReader(settings, settings.dlq_topic, "DLQ_TOPIC")
    dlq, dlq_repeats = once_per_source(raw.headers for raw in dlq_reader)
    reasons = count_by(_text(headers.get("error")) for headers in dlq)
    late_reader = TopicReader(settings, settings.late_topic, "LATE_TOPIC")
    late_events, late_repeats = once_per_source(raw.headers for raw in late_reader)
    late_windows = [_text(headers.get("window_start")) for headers in late_events]
    late = sorted((window, n) for window, n in count_by(late_windows) if _late_in_range(window, args.start, args.end))
    for repeats, topic in ((dlq_repeats, settings.dlq_topic), (late_repeats, settings.late_topic)):
        if repeats:
            notes.append(f"{repeats} records of {topic} repeat an input message's source offset: counted once")
    fields = {spec.name: spec.fields for spec in settings.slices}
    windows = None
    if shown:
        windows = (min(m.window_start for m in shown), max(m.window_end for m in shown))
    return Page(
        generated_at=datetime.now(tz=timezone.utc),
        brokers=settings.brokers,
        reads=[metrics_reader.read, dlq_reader.read, late_reader.read],
        window_seconds=settings.window_seconds,
        range_from=args.start,
        range_to=args.end,
        top_n=args.top,
        slice_fields={name: f for name, f in fields.items() if name in chosen},
        series=window_series(shown),
        top=top_keys(shown, args.top),
        devices=_spread(metrics, settings, "device_id", args.top),
        ips=_spread(metrics, settings, "ip", args.top),
        dlq_reasons=reasons,
        late_windows=late,
        unreadable=unreadable,
        windows=windows,
        notes=notes,
    )


def _unknown_slices(metrics: list[Metric], settings: Settings) -> list[str]:
    """A note for records of slices SLICES no longer names: written before it changed, so nothing shows them."""
    known = {spec.name for spec in settings.slices}
    unknown = Counter(metric.slice for metric in metrics if metric.slice not in known)
    if not unknown:
        return []
    names = ", ".join(sorted(unknown))
    return [f"{sum(unknown.values())} login-metrics records of slices not in SLICES are not shown: {names}"]


def _text(header: bytes | None) -> str:
    return "(none)" if header is None else header.decode("utf-8", errors="replace")


def _late_in_range(window: str, start: datetime | None, end: datetime | None) -> bool:
    try:
        return in_range(parse_utc(window), start, end)
    except ValueError:
        return start is None and end is None


def _spread(metrics: list[Metric], settings: Settings, other: str, n: int) -> Spread:
    found = pair_slice({spec.name: spec.fields for spec in settings.slices}, "user_id", other)
    if found is None:
        return Spread(None, [])
    name, user_index = found
    (spec,) = (spec for spec in settings.slices if spec.name == name)
    return Spread(name, most_distinct(metrics, name, user_index, n), spec.min_count)


def write_report(settings: Settings, args: argparse.Namespace) -> Path:
    """Build the page and write it to ``args.output``; returns the path written."""
    page = build_page(settings, args)
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render(page), encoding="utf-8")
    log.info(
        "wrote %s", kv(path=output, windows=sum(len(p) for p in page.series.values()), bytes=output.stat().st_size)
    )
    return output


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: exit 2 with one line on a bad setting, option, or a topic that cannot be read."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        stop_process(f"bad setting: {exc}")
    args = parse_args(argv, settings)
    configure_logging(settings.log_level, settings.log_format)
    with stop_on(ReadError):
        path = write_report(settings, args)
    sys.stderr.write(f"report: {path.resolve()}\n")
    return 0
