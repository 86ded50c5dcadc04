"""What every Kafka client of the dataflow shares: quiet, rate-limited reporting.

librdkafka retries transient errors (an unreachable or restarting broker) by
itself and reports each attempt, both through `error_cb` and its own log.
Both go to one logger here, limited to a few lines per 10 s, so the line that
explains an exit is not buried under a thousand connection failures.
"""

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError

from operators.logs import RateLimit, kv
from operators.settings import Settings

client_logger = logging.getLogger("operators.kafka_client")
client_logger.addFilter(RateLimit())


# Forwarded records can be as large as the input allowed; the broker's
# per-topic limit still applies.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A closing window writes its records in one burst; room for the whole burst
# keeps `produce` from stalling on a full queue.
MAX_QUEUED_RECORDS = 1_000_000


def client_reporting(on_error: Callable[[KafkaError], None] | None = None) -> dict[str, Any]:
    """The librdkafka settings that route its errors and logs through the rate-limited logger.

    `on_error` also sees each error, for a client that reacts to some of them.
    """

    def report(error: KafkaError) -> None:
        client_logger.warning("kafka client error %s", kv(code=error.name(), reason=error.str()))
        if on_error is not None:
            on_error(error)

    return {"error_cb": report, "logger": client_logger}


def producer_config(settings: Settings) -> dict[str, Any]:
    """What every producer of the dataflow starts from, at-least-once or transactional."""
    return {
        **settings.kafka_config(),
        "linger.ms": "5",
        "compression.type": "lz4",
        "message.max.bytes": str(MAX_MESSAGE_BYTES),
        "queue.buffering.max.messages": str(MAX_QUEUED_RECORDS),
        **client_reporting(),
    }
