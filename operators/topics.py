"""Create missing output topics with the settings their contracts need.

The metrics topic is keyed by (window, slice, key values) and re-emissions
after a resume are byte-identical, so it is created compacted: the compacted
view is the exact answer. DLQ and late topics keep the broker's defaults.
"""

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from operators.logs import kv
from operators.settings import Settings

logger = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 30.0
COMPACTED = {"cleanup.policy": "compact"}

# Errors a retry cannot fix; anything else librdkafka keeps retrying itself.
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)


class KafkaSetupError(RuntimeError):
    """Kafka cannot be used as configured: unreachable, refused, or a topic is unusable."""


class TopicError(KafkaSetupError):
    """An output topic is missing and cannot be created."""


def fetch_metadata(settings: Settings, topic: str | None, setting_name: str) -> tuple[AdminClient, ClusterMetadata]:
    """An admin client and the cluster metadata (of `topic` only, if given).

    Errors no retry can fix, such as a wrong password, end the wait at once:
    librdkafka would otherwise retry them until the timeout, which looks like
    a hang.
    """
    fatal: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        logger.warning("kafka client error %s", kv(code=error.name(), reason=error.str()))
        if error.code() in PERMANENT_ERRORS or error.fatal():
            fatal.append(error)

    config: dict[str, Any] = {**settings.kafka_config(), "error_cb": on_error}
    admin = AdminClient(config)
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while True:
        try:
            return admin, admin.list_topics(topic, timeout=1.0)
        except KafkaException as exc:
            admin.poll(0)  # serve error callbacks
            if fatal or time.monotonic() >= deadline:
                reason = fatal[0].str() if fatal else str(exc)
                msg = (
                    f"cannot read metadata for {setting_name}={topic!r} "
                    f"from KAFKA_BROKERS={settings.brokers!r}: {reason}"
                )
                logger.error("%s", msg)
                raise KafkaSetupError(msg) from exc


def ensure_topic(settings: Settings, topic: str, config: Mapping[str, str], setting_name: str) -> None:
    """Create `topic` with `config` unless it exists; every worker may race here safely."""
    admin, metadata = fetch_metadata(settings, None, setting_name)
    if topic in metadata.topics and metadata.topics[topic].error is None:
        return
    # Match the input's parallelism so output partitions grow with it.
    input_meta = metadata.topics.get(settings.input_topic)
    partitions = len(input_meta.partitions) if input_meta is not None and input_meta.partitions else 1
    request = NewTopic(topic, num_partitions=partitions, replication_factor=-1, config=dict(config))
    future = admin.create_topics([request], request_timeout=ADMIN_TIMEOUT_S)[topic]
    try:
        future.result(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        msg = f"{setting_name}={topic!r} does not exist and could not be created: {exc}"
        raise TopicError(msg) from exc
    logger.info("created topic %s", kv(topic=topic, partitions=partitions, config=dict(config)))
