"""loginflow topology: user-login -> validated events -> windowed slice counts.

Run with ``python -m bytewax.run dataflow`` (add ``-w N``, or ``-i/-a`` for
several processes, and ``-r/-s/-b`` for recovery). Settings come from the
environment; see the README table or `operators.settings.Settings`.
"""

import sys
from dataclasses import dataclass
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from operators.encoding import (
    KafkaRecord,
    Pseudonymizer,
    encode_keyed_metric,
    encode_late,
    encode_reject,
    encode_uncounted,
    is_window_count,
)
from operators.kafka_sink import KafkaTopicSink
from operators.kafka_source import LoginSource
from operators.logs import configure_logging
from operators.partition import LateEvent, PartitionBatch, Reject
from operators.settings import ConfigError, Settings
from operators.topics import metrics_topic_config
from operators.windowing import ShardCounter, WindowShardLogic


@dataclass(frozen=True)
class Sinks:
    """Where each output stream goes; tests swap in `TestingSink`s."""

    metrics: Sink[KafkaRecord]
    dlq: Sink[KafkaRecord]
    late: Sink[KafkaRecord]


def kafka_sinks(settings: Settings) -> Sinks:
    """The production sinks: one Kafka topic per stream."""
    return Sinks(
        metrics=KafkaTopicSink(settings, settings.output_topic, "OUTPUT_TOPIC", metrics_topic_config(settings)),
        dlq=KafkaTopicSink(settings, settings.dlq_topic, "DLQ_TOPIC", forwards_input=True),
        late=KafkaTopicSink(settings, settings.late_topic, "LATE_TOPIC", forwards_input=True),
    )


def rejects_of(batch: PartitionBatch) -> list[Reject]:
    """The messages of `batch` that broke the input contract."""
    return batch.rejects


def late_events_of(batch: PartitionBatch) -> list[LateEvent]:
    """The valid events of `batch` that came too late to count."""
    return batch.late


def build_flow(
    settings: Settings,
    *,
    source: Source[PartitionBatch] | None = None,
    sinks: Sinks | None = None,
) -> Dataflow:
    """The loginflow dataflow, reading Kafka and writing Kafka unless told otherwise."""
    source = source if source is not None else LoginSource(settings)
    sinks = sinks if sinks is not None else kafka_sinks(settings)
    flow = Dataflow("loginflow")

    batches = op.input("read_and_parse_user_login", flow, source)

    late = op.flat_map("take_late_events", batches, late_events_of)
    late_records = op.map("encode_late_events", late, partial(encode_late, source_topic=settings.input_topic))
    op.output("write_late", late_records, sinks.late)

    shard_updates = op.flat_map(
        "count_by_shard",
        batches,
        ShardCounter(settings.slices, settings.window_seconds, settings.shards_per_slice),
    )
    shard_output = op.stateful_batch(
        "close_windows",
        shard_updates,
        partial(WindowShardLogic, settings.slices, settings.window_seconds, settings.shards_per_slice),
    )
    pseudonymizer = Pseudonymizer(settings.pseudonymize, settings.pseudonymize_key) if settings.pseudonymize else None
    window_counts = op.branch("split_uncounted", shard_output, is_window_count)
    metric_records = op.map(
        "encode_metrics", window_counts.trues, partial(encode_keyed_metric, pseudonymizer=pseudonymizer)
    )
    op.output("write_login_metrics", metric_records, sinks.metrics)

    rejects = op.flat_map("take_rejects", batches, rejects_of)
    reject_records = op.map("encode_rejects", rejects, partial(encode_reject, source_topic=settings.input_topic))
    uncounted_records = op.map(
        "encode_uncounted",
        window_counts.falses,
        partial(encode_uncounted, source_topic=settings.input_topic, pseudonymizer=pseudonymizer),
    )
    dlq_records = op.merge("merge_dead_letters", reject_records, uncounted_records)
    op.output("write_dlq", dlq_records, sinks.dlq)
    return flow


def _settings_or_exit() -> Settings:
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        # One line naming the variable beats a traceback from deep in bytewax.run.
        sys.exit(f"loginflow: bad setting: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    return settings


flow = build_flow(_settings_or_exit())
