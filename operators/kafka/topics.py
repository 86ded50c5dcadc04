"""Topic metadata: the input topic's partitions, and missing output topics created as their contracts need.

The metrics topic is keyed by (window, slice, key values) and the latest
record per key is the answer, so it is created compacted; every window adds
new keys, so it is also trimmed by time (OUTPUT_RETENTION_HOURS). The DLQ and
late topics forward input messages byte for byte, so they are created to
take the largest message the input topic takes.
"""

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ClusterMetadata, ConfigResource, NewTopic

from operators.kafka.client import client_reporting
from operators.runtime.logs import kv
from operators.runtime.settings import Settings

logger = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = "max.message.bytes"

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


# librdkafka reports a broker certificate no trusted CA signed as a plain _SSL
# error and retries it forever, but no retry can fix it: the client's trust
# store is wrong, which for loginflow is one setting.
UNTRUSTED_CERTIFICATE = "certificate verify failed"
CA_HINT = (
    "the broker's certificate is not signed by a CA this client trusts; "
    "set KAFKA_PROP_SSL_CA_LOCATION to the PEM file of the CA that signed it"
)


def is_permanent(error: KafkaError) -> bool:
    """Whether no retry can fix `error`: a permanent code, a fatal error, or an untrusted broker certificate."""
    if error.code() in PERMANENT_ERRORS or error.fatal():
        return True
    return error.code() == KafkaError._SSL and UNTRUSTED_CERTIFICATE in error.str()


def explain(error: KafkaError) -> str:
    """The error's text, with the setting to change when one is to blame."""
    if error.code() == KafkaError._SSL and UNTRUSTED_CERTIFICATE in error.str():
        return f"{CA_HINT} ({error.str()})"
    return str(error.str())


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

    def note_fatal(error: KafkaError) -> None:
        if is_permanent(error):
            fatal.append(error)

    config: dict[str, Any] = {**settings.kafka_config(), **client_reporting(on_error=note_fatal)}
    admin = AdminClient(config)
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while True:
        try:
            return admin, admin.list_topics(topic, timeout=1.0)
        except KafkaException as exc:
            admin.poll(0)  # serve error callbacks
            if fatal or time.monotonic() >= deadline:
                reason = explain(fatal[0]) if fatal else str(exc)
                msg = (
                    f"cannot read metadata for {setting_name}={topic!r} "
                    f"from KAFKA_BROKERS={settings.brokers!r}: {reason}"
                )
                raise KafkaSetupError(msg) from exc


def metrics_topic_config(settings: Settings) -> dict[str, str]:
    """How login-metrics is created: compacted by key, and trimmed after OUTPUT_RETENTION_HOURS."""
    return {"cleanup.policy": "compact,delete", "retention.ms": str(settings.output_retention_hours * 3_600_000)}


def topic_partition_count(settings: Settings, topic: str, setting_name: str) -> int:
    """How many partitions `topic` has, failing clearly if it has none."""
    _admin, metadata = fetch_metadata(settings, topic, setting_name)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        problem = found.error if found is not None else "not found"
        msg = f"{setting_name}={topic!r} has no readable partitions on {settings.brokers}: {problem}"
        raise TopicError(msg)
    return len(found.partitions)


def topic_max_message_bytes(settings: Settings, topic: str) -> int | None:
    """The topic's max.message.bytes, or None when the broker does not say."""
    admin = AdminClient({**settings.kafka_config(), **client_reporting()})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource], request_timeout=ADMIN_TIMEOUT_S)[resource].result(
            timeout=ADMIN_TIMEOUT_S
        )
    except KafkaException as exc:
        logger.warning("cannot read topic config %s", kv(topic=topic, reason=exc))
        return None
    entry = configs.get(MAX_MESSAGE_BYTES)
    return int(entry.value) if entry is not None and entry.value else None


def ensure_topic(
    settings: Settings,
    topic: str,
    config: Mapping[str, str],
    setting_name: str,
    fits_input_messages: bool = False,
) -> None:
    """Create `topic` with `config` unless it exists; every worker may race here safely.

    With `fits_input_messages`, the topic takes messages as large as the input topic does.
    """
    admin, metadata = fetch_metadata(settings, None, setting_name)
    if topic in metadata.topics and metadata.topics[topic].error is None:
        return
    # Match the input's parallelism so output partitions grow with it.
    input_meta = metadata.topics.get(settings.input_topic)
    partitions = len(input_meta.partitions) if input_meta is not None and input_meta.partitions else 1
    config = dict(config)
    if fits_input_messages:
        input_limit = topic_max_message_bytes(settings, settings.input_topic)
        if input_limit is not None:
            config[MAX_MESSAGE_BYTES] = str(input_limit)
    request = NewTopic(topic, num_partitions=partitions, replication_factor=-1, config=config)
    future = admin.create_topics([request], request_timeout=ADMIN_TIMEOUT_S)[topic]
    try:
        future.result(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        error = exc.args[0]
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        msg = f"{setting_name}={topic!r} does not exist and could not be created: {exc}"
        raise TopicError(msg) from exc
    logger.info("created topic %s", kv(topic=topic, partitions=partitions, config=config))


class SourceError(KafkaSetupError):
    """The input topic cannot be read as configured."""


def list_partitions(settings: Settings) -> list[int]:
    """The partition ids of the input topic, failing clearly if it is missing."""
    _admin, metadata = fetch_metadata(settings, settings.input_topic, "INPUT_TOPIC")
    topic = metadata.topics.get(settings.input_topic)
    if topic is None or topic.error is not None or not topic.partitions:
        problem = topic.error if topic is not None else "not found"
        msg = f"INPUT_TOPIC={settings.input_topic!r} is not readable on {settings.brokers}: {problem}"
        raise SourceError(msg)
    return sorted(topic.partitions)


def input_topic_id(settings: Settings) -> str | None:
    """The input topic's id, which changes when the topic is deleted and created again; None if not known."""
    admin = AdminClient({**settings.kafka_config(), **client_reporting()})
    topic = settings.input_topic
    try:
        future = admin.describe_topics(TopicCollection([topic]), request_timeout=ADMIN_TIMEOUT_S)[topic]
        description = future.result(timeout=ADMIN_TIMEOUT_S)
    except KafkaException as exc:
        # Brokers before 2.8 and ACLs without Describe give no id: resume on offsets alone.
        logger.warning("cannot read the topic id %s", kv(topic=topic, reason=exc))
        return None
    topic_id = description.topic_id
    return None if topic_id is None else str(topic_id)
