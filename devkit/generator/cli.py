"""The generator's command line: ``python -m devkit.generator``.

    python -m devkit.generator --count 1000000 --to-file /tmp/events.jsonl
    python -m devkit.generator --realtime --rate 200 --duration 60 --create-topic

Imports run one way: the pure core (`events`), then Kafka and files (`kafka`), then this.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, NamedTuple

from devkit.generator.events import (
    BAD_KINDS,
    MAX_BAD_SIZE_LIMIT,
    Draft,
    GeneratorConfig,
    drafts,
    generate,
    kind_totals,
    stamp,
)
from devkit.generator.kafka import TOPIC_WAIT, KafkaSink, create_topic, file_sender, pump, read_jsonl

log = logging.getLogger(__name__)


class ProgressBar:
    """A one-line, carriage-return progress display (stdlib only)."""

    def __init__(self, total: int | None, stream: IO[str] | None = None, width: int = 30) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.width = width
        self._shown = 0

    def __call__(self, done: int, elapsed: float) -> None:
        """Redraw the line for ``done`` messages after ``elapsed`` seconds."""
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(1.0, done / self.total)
            filled = int(frac * self.width)
            eta = (self.total - done) / rate if rate > 0 else 0.0
            line = (
                f"[{'#' * filled}{'.' * (self.width - filled)}] {frac:6.1%} "
                f"{done:,}/{self.total:,} {rate:,.0f} msg/s ETA {eta:.0f}s"
            )
        else:
            line = f"{done:,} messages in {elapsed:.0f}s, {rate:,.0f} msg/s"
        self.stream.write("\r" + line.ljust(self._shown))
        self.stream.flush()
        self._shown = len(line)

    def close(self) -> None:
        """Erase the line so the summary starts clean."""
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0


class RunResult(NamedTuple):
    """What a CLI run did, for the final summary."""

    verb: str
    target: str
    kinds: dict[str, int]
    elapsed: float
    failed: int


def run(args: argparse.Namespace, config: GeneratorConfig, progress: ProgressBar | None) -> RunResult | None:
    """Execute a parsed command line; None means Kafka could not be set up."""
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    if args.to_file:
        if args.rate > 0:
            log.info("rate_ignored path=%s reason=files are written as fast as possible", args.to_file)
        with open(args.to_file, "wb", buffering=1 << 20) as out:
            try:
                pump(generate(config), file_sender(out), kinds, duration=args.duration, progress=progress)
            except KeyboardInterrupt:
                log.warning("interrupted path=%s", args.to_file)
            finally:
                if progress is not None:
                    progress.close()
        return RunResult("wrote", args.to_file, dict(kinds), time.monotonic() - started, 0)

    from confluent_kafka import KafkaException  # noqa: PLC0415

    try:
        created = args.create_topic and create_topic(
            args.brokers, args.topic, config.partitions, args.replication_factor
        )
        sink = KafkaSink(args.brokers, args.topic)
        partitions = sink.check_topic(wait=TOPIC_WAIT if created else 0.0)
    except (KafkaException, RuntimeError, TimeoutError) as exc:
        log.error("kafka_setup_failed brokers=%s topic=%s error=%s", args.brokers, args.topic, exc)
        return None
    log.info("producing brokers=%s topic=%s partitions=%d", args.brokers, args.topic, partitions)

    items: Iterable[Any]
    send: Callable[[Any], str] = sink
    if args.from_file:
        items = read_jsonl(args.from_file)
    elif config.realtime:
        if config.rate <= 0:
            log.warning("realtime_unpaced hint=pass --rate to pace a live demo")

        def send_now(draft: Draft) -> str:
            # Stamp at the last moment so the event time is the send time.
            return sink(stamp(draft, time.time()))

        items, send = drafts(config), send_now
    else:
        items = generate(config)
    started = time.monotonic()
    aborted = 0
    try:
        pump(items, send, kinds, rate=args.rate, duration=args.duration, progress=progress)
    except KeyboardInterrupt:
        log.warning("interrupted topic=%s", args.topic)
    except RuntimeError as exc:
        log.error("aborted topic=%s error=%s", args.topic, exc)
        aborted = 1
    finally:
        if progress is not None:
            progress.close()
    failed = sink.close() + aborted  # the achieved rate includes waiting for the last deliveries
    return RunResult("sent", args.topic, dict(kinds), time.monotonic() - started, failed)


def _weights(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(w) for w in text.split(","))
    except ValueError:
        msg = f"expected comma-separated numbers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    d = GeneratorConfig()
    p = argparse.ArgumentParser(
        prog="python -m devkit.generator",
        description="Produce login events (optionally late or bad ones) to Kafka, or record them as JSON Lines.",
    )
    dflt = " (default: %(default)s)"
    size = p.add_argument_group("how many and how fast")
    size.add_argument("--count", type=int, help="messages to generate (bulk default: rate*duration, else 10000)")
    size.add_argument("--duration", type=float, help="stop after this many seconds (bulk: count = rate*duration)")
    size.add_argument("--rate", type=float, default=0.0, help="messages per second, 0 = as fast as possible" + dflt)
    shape = p.add_argument_group("event shape")
    shape.add_argument("--users", type=int, default=d.users, help="user pool size" + dflt)
    shape.add_argument("--devices-per-user", type=int, default=d.devices_per_user, help=dflt.strip())
    shape.add_argument("--ips-per-user", type=int, default=d.ips_per_user, help=dflt.strip())
    shape.add_argument(
        "--missing-device-type",
        type=float,
        default=d.missing_device_type,
        metavar="FRACTION",
        help="events without a device_type field" + dflt,
    )
    shape.add_argument(
        "--odd-timestamps",
        type=float,
        default=d.odd_timestamps,
        metavar="FRACTION",
        help="timestamps written as floats or digit strings" + dflt,
    )
    shape.add_argument(
        "--bad-fraction",
        type=float,
        default=d.bad_fraction,
        metavar="FRACTION",
        help="bad messages, kinds: " + ", ".join(k[4:] for k in BAD_KINDS) + dflt,
    )
    shape.add_argument(
        "--max-bad-size",
        type=int,
        default=d.max_bad_size,
        metavar="BYTES",
        help=f"largest random_bytes message, at most {MAX_BAD_SIZE_LIMIT:,}" + dflt,
    )
    shape.add_argument(
        "--late-fraction",
        type=float,
        default=d.late_fraction,
        metavar="FRACTION",
        help="valid events timestamped --late-by behind their partition" + dflt,
    )
    shape.add_argument("--late-by", type=float, default=d.late_by, metavar="SECONDS", help=dflt.strip())
    shape.add_argument("--seed", type=int, default=d.seed, help=dflt.strip())
    when = p.add_argument_group("event time and partitions")
    when.add_argument("--start", type=float, default=d.start, metavar="EPOCH_S", help="bulk event time start" + dflt)
    when.add_argument(
        "--span",
        type=float,
        default=d.span,
        metavar="SECONDS",
        help="bulk event-time span that every partition covers" + dflt,
    )
    when.add_argument(
        "--jitter",
        type=float,
        default=d.jitter,
        metavar="SECONDS",
        help="how far out of order events may be within a partition" + dflt,
    )
    when.add_argument("--realtime", action="store_true", help="timestamp events with the wall clock at send time")
    when.add_argument("--partitions", type=int, help="partition count (default: len(--skew), else 3)")
    when.add_argument(
        "--skew",
        type=_weights,
        default=(),
        metavar="W0,W1,...",
        help="relative event density per partition (default: equal)",
    )
    out = p.add_argument_group("output")
    io = out.add_mutually_exclusive_group()
    io.add_argument("--to-file", metavar="PATH", help="write JSON Lines instead of producing to Kafka")
    io.add_argument("--from-file", metavar="PATH", help="produce a --to-file recording, byte-exact, to its partitions")
    out.add_argument("--topic", default=os.environ.get("INPUT_TOPIC", "user-login"), help="$INPUT_TOPIC" + dflt)
    out.add_argument(
        "--brokers", default=os.environ.get("KAFKA_BROKERS", "localhost:9092"), help="$KAFKA_BROKERS" + dflt
    )
    out.add_argument("--create-topic", action="store_true", help="create the topic with --partitions if missing")
    out.add_argument("--replication-factor", type=int, default=1, help="for --create-topic" + dflt)
    out.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")
    out.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help=dflt.strip())
    return p


def config_from_args(args: argparse.Namespace) -> GeneratorConfig:
    """Map parsed options to a config; raises ValueError on inconsistent options."""
    if args.realtime and args.to_file:
        msg = "--realtime stamps with the wall clock at send time; it needs Kafka, not --to-file"
        raise ValueError(msg)
    count = args.count
    if count is None and not args.realtime:
        if args.duration is not None and args.rate <= 0:
            msg = "bulk --duration needs --rate (or use --count, or --realtime)"
            raise ValueError(msg)
        count = round(args.duration * args.rate) if args.duration is not None else 10_000
    return GeneratorConfig(
        count=count,
        rate=args.rate,
        users=args.users,
        devices_per_user=args.devices_per_user,
        ips_per_user=args.ips_per_user,
        missing_device_type=args.missing_device_type,
        bad_fraction=args.bad_fraction,
        max_bad_size=args.max_bad_size,
        late_fraction=args.late_fraction,
        late_by=args.late_by,
        partitions=args.partitions or len(args.skew) or 3,
        skew=args.skew,
        jitter=args.jitter,
        start=args.start,
        span=args.span,
        realtime=args.realtime,
        odd_timestamps=args.odd_timestamps,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    show = not args.no_progress and sys.stderr.isatty() and not (config.realtime and args.rate > 0)
    progress = ProgressBar(None if args.from_file or config.realtime else config.count) if show else None
    result = run(args, config, progress)
    if result is None:
        return 1
    n, totals = sum(result.kinds.values()), kind_totals(result.kinds)
    sys.stderr.write(
        f"generator: {result.verb} {n:,} messages to {result.target} (ok={totals['ok']:,}, late={totals['late']:,}, "
        f"bad={totals['bad']:,}) in {result.elapsed:.1f}s = {n / max(result.elapsed, 1e-9):,.0f} msg/s\n"
    )
    if result.failed:
        sys.stderr.write(f"generator: {result.failed:,} messages were not delivered\n")
        return 1
    return 0
