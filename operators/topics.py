"""Create missing output topics with the settings their contracts need.

The metrics topic is keyed by (window, slice, key values) and re-emissions
after a resume are byte-identical, so it is created compacted: the compacted
view is the exact answer. DLQ and late topics keep the broker's defaults.
"""

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from operators.logs import kv
from operators.settings import Settings

logger = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 30.0
COMPACTED = {"cleanup.policy": "compact"}


class TopicError(RuntimeError):
    """An output topic is missing and cannot be created."""


def ensure_topic(settings: Settings, topic: str, config: Mapping[str, str], setting_name: str) -> None:
    """Create `topic` with `config` unless it exists; every worker may race here safely."""
    admin_config: dict[str, Any] = dict(settings.kafka_config())
    admin = AdminClient(admin_config)
    metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
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
