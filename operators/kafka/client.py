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

from operators.pure.sizes import PRODUCER_MAX_MESSAGE_BYTES
from operators.runtime.logs import RateLimit, kv
from operators.runtime.settings import Settings

client_logger = logging.getLogger("operators.kafka.client")
client_logger.addFilter(RateLimit())


# librdkafka's default batch.size.
DEFAULT_BATCH_BYTES = 1_000_000
# A closing window's records come in bursts a few ms apart; with librdkafka's
# 5 ms each burst went as its own small batch per partition, and validating
# and appending them was most of the broker's CPU for loginflow's output.
# Producing 44k login-metrics-like records in bursts of 350 every 25 ms cost
# the broker a median 0.40-0.47 s at 5 ms, 0.28-0.35 s at 50 ms and 0.31 s at
# 100 ms (5 runs each on a warmed bench broker, 2 series; its idle 0.08 s
# included). 50 ms adds at most that to when a burst's last records appear.
LINGER_MS = 50
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


def producer_config(settings: Settings, batch_bytes: int = DEFAULT_BATCH_BYTES) -> dict[str, Any]:
    """What every producer of the dataflow starts from, at-least-once or transactional.

    The broker refuses a whole batch larger than its topic takes, and
    librdkafka does not split one: a producer of a topic with a small
    `max.message.bytes` gets a `batch_bytes` that fits it.
    """
    return {
        **settings.kafka_config(),
        "linger.ms": str(LINGER_MS),
        "compression.type": "lz4",
        "message.max.bytes": str(PRODUCER_MAX_MESSAGE_BYTES),
        # A record larger than this still goes, in a batch of its own.
        "batch.size": str(max(1, min(batch_bytes, DEFAULT_BATCH_BYTES))),
        "queue.buffering.max.messages": str(MAX_QUEUED_RECORDS),
        **client_reporting(),
    }


# How long a fetch at the head waits for new data (librdkafka: 500 ms): the
# EOF that tells a partition is idle comes this long after its last message.
FETCH_WAIT_MAX_MS = 100
PREFETCH_KIB_PER_PARTITION = 16_384
FETCH_QUEUE_BACKOFF_MS = 10
# librdkafka's largest, not its 100 MB default. A fetch returns a batch larger
# than fetch.max.bytes whole, so one message the broker took can make a
# response of any size its limits allow (socket.request.max.bytes is 100 MiB
# by default); past receive.message.max.bytes the reader would retry it forever.
RECEIVE_MAX_BYTES = 2_147_483_647


def reader_config(settings: Settings, on_error: Callable[[KafkaError], None]) -> dict[str, Any]:
    """The input consumer's settings: assignment only, partition EOF events, a short fetch backoff."""
    return {
        # librdkafka pauses a partition's fetching for fetch.queue.backoff.ms
        # (default 1 s) whenever its prefetch queue is full, which starves a
        # reader that drains it quickly. A short pause with a 16 MiB queue
        # read 65-72k events/s against 50-55k with the defaults, in 271
        # rather than 311 MiB (make bench, loginflow 1x1). KAFKA_PROP_* wins.
        "queued.max.messages.kbytes": PREFETCH_KIB_PER_PARTITION,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        "receive.message.max.bytes": RECEIVE_MAX_BYTES,
        **settings.kafka_config(),
        # Assignment only: the group id is required by librdkafka but unused.
        "group.id": "loginflow-assign-only",
        "enable.auto.commit": "false",
        "enable.partition.eof": "true",
        # Only consulted when a resume offset fell out of retention.
        "auto.offset.reset": "earliest",
        **client_reporting(on_error=on_error),
    }
