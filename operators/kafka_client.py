"""What every Kafka client of the dataflow shares: quiet, rate-limited reporting.

librdkafka retries transient errors (an unreachable or restarting broker) by
itself and reports each attempt, both through `error_cb` and its own log.
Both go to one logger here, limited to a few lines per 10 s, so the line that
explains an exit is not buried under a thousand connection failures.
"""

import logging
from typing import Any

from confluent_kafka import KafkaError

from operators.logs import RateLimit, kv

client_logger = logging.getLogger("operators.kafka_client")
client_logger.addFilter(RateLimit())


def _log_client_error(error: KafkaError) -> None:
    client_logger.warning("kafka client error %s", kv(code=error.name(), reason=error.str()))


def client_reporting() -> dict[str, Any]:
    """The librdkafka settings that route its errors and logs through the rate-limited logger."""
    return {"error_cb": _log_client_error, "logger": client_logger}
