"""loginflow topology: user-login -> validated events -> windowed slice counts.

Run with ``python -m bytewax.run dataflow`` (add ``-w N``, or ``-i/-a`` for
several processes, and ``-r/-s/-b`` for recovery). Settings come from the
environment; see the README table or `operators.settings.Settings`.
"""

import sys
from dataclasses import dataclass
from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from operators.encoding import (
    Pseudonymizer,
    encode_late_events,
    encode_metrics,
    encode_rejects,
    encode_uncounted,
)
from operators.kafka_sink import KafkaTopicSink, write_kafka
from operators.kafka_source import LoginSource
from operators.logs import configure_logging
from operators.partition import PartitionBatch
from operators.settings import ConfigError, Settings
from operators.topics import metrics_topic_config
from operators.windowing import ShardCounter, WindowShardLogic


@dataclass(frozen=True)
class Sinks:
    """Where each output stream goes; tests swap in `TestingSink`s."""

    metrics: Sink[Any]
    dlq: Sink[Any]
    late: Sink[Any]


def kafka_sinks(settings: Settings) -> Sinks:
    """The production sinks: one Kafka topic per stream."""
    return Sinks(
        metrics=KafkaTopicSink(settings, settings.output_topic, "OUTPUT_TOPIC", metrics_topic_config(settings)),
        dlq=KafkaTopicSink(settings, settings.dlq_topic, "DLQ_TOPIC", forwards_input=True),
        late=KafkaTopicSink(settings, settings.late_topic, "LATE_TOPIC", forwards_input=True),
    )


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
    source_topic = settings.input_topic
    pseudonymizer = Pseudonymizer(settings.pseudonymize, settings.pseudonymize_key) if settings.pseudonymize else None

    batches = op.input("read_and_parse_user_login", flow, source)

    late_events = op.map("encode_late_events", batches, partial(encode_late_events, source_topic=source_topic))
    write_kafka("write_late", late_events, sinks.late)

    shard_updates = op.flat_map(
        "count_by_shard",
        batches,
        ShardCounter(settings.slices, settings.window_seconds, settings.shards_per_slice),
    )
    closed = op.stateful_batch(
        "close_windows",
        shard_updates,
        partial(WindowShardLogic, settings.slices, settings.window_seconds, settings.shards_per_slice),
    )
    metrics = op.map("encode_metrics", closed, partial(encode_metrics, pseudonymizer=pseudonymizer))
    write_kafka("write_login_metrics", metrics, sinks.metrics)

    rejects = op.map("encode_rejects", batches, partial(encode_rejects, source_topic=source_topic))
    uncounted = op.map(
        "encode_uncounted", closed, partial(encode_uncounted, source_topic=source_topic, pseudonymizer=pseudonymizer)
    )
    write_kafka("write_dlq", op.merge("merge_dead_letters", rejects, uncounted), sinks.dlq)
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
