"""`write_kafka`, and the three Kafka topics the dataflow writes.

The Kafka sinks (`operators.kafka.sink`) route each record to its partition
themselves, so a write is a filter of empty chunks, a route, and the output.
"""

import logging
from dataclasses import dataclass
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.outputs import Sink

from operators.kafka.sink import KafkaTopicSink
from operators.kafka.topics import metrics_topic_config
from operators.pure.encoding import KafkaRecord, RecordChunk, has_records
from operators.runtime.logs import kv
from operators.runtime.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sinks:
    """Where each output stream goes; tests swap in `TestingSink`s."""

    metrics: Sink[Any]
    dlq: Sink[Any]
    late: Sink[Any]


def kafka_sinks(settings: Settings) -> Sinks:
    """The production sinks: one Kafka topic per stream."""
    if settings.exactly_once:
        # Said at every start, so an operator can match the ids the broker holds to this dataflow.
        logger.info(
            "exactly-once transactional ids %s",
            kv(
                transactional_id_prefix=settings.transactional_id_prefix,
                derived_from_topics=settings.transactional_id_prefix_is_derived,
            ),
        )
    return Sinks(
        metrics=KafkaTopicSink(
            settings, settings.output_topic, "OUTPUT_TOPIC", metrics_topic_config(settings), writes_metrics=True
        ),
        dlq=KafkaTopicSink(settings, settings.dlq_topic, "DLQ_TOPIC", forwards_input=True),
        late=KafkaTopicSink(settings, settings.late_topic, "LATE_TOPIC", forwards_input=True),
    )


def records_of(chunk: RecordChunk) -> list[KafkaRecord]:
    """The records of a chunk, one item each, for sinks that are not Kafka topics (tests)."""
    return chunk.records


@operator
def write_kafka(step_id: str, up: Stream[RecordChunk], sink: Sink[Any], started: Stream[None]) -> None:
    """Write chunks of records to a `KafkaTopicSink`, routed to its partitions.

    `started` wakes every partition of an exactly-once topic at the start of
    an execution (`operators.runtime.execution_start`). Any other sink (a
    `TestingSink` in flow tests) gets the records one by one.
    """
    chunks = op.filter("skip_empty", up, has_records)
    if isinstance(sink, KafkaTopicSink):
        routed = op.flat_map("route", chunks, sink.route)
        if sink.settings.exactly_once:
            routed = op.merge("route_and_wake", routed, op.flat_map("wake_partitions", started, sink.wake_all))
        op.output("produce", routed, sink)
    else:
        op.output("produce", op.flat_map("flatten", chunks, records_of), sink)
