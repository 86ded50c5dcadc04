"""What the demo reads from Kafka: its topics, created if missing, and what the dataflow writes to them."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devkit.demo_view import DemoStats
from operators.kafka.topics import metrics_topic_config
from operators.runtime.settings import Settings

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings, partitions: int) -> dict[str, list[int]]:
    """Create missing topics (`partitions` for input and metrics); returns the partition ids of each of the four."""
    admin = AdminClient(dict(settings.kafka_config()))
    # No replication factor given: the broker's default, so the demo also suits a bigger cluster.
    wanted = [
        NewTopic(settings.input_topic, partitions),
        NewTopic(settings.output_topic, partitions, config=metrics_topic_config(settings)),
        NewTopic(settings.dlq_topic, 1),
        NewTopic(settings.late_topic, 1),
    ]
    existing = admin.list_topics(timeout=15).topics
    missing = [topic for topic in wanted if topic.topic not in existing]
    for name, future in admin.create_topics(missing, request_timeout=15).items() if missing else []:
        try:
            future.result(timeout=30)
            log.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    # A topic created a moment ago may take a little while to show in the metadata with leaders.
    deadline = time.monotonic() + 15
    while True:
        topics = admin.list_topics(timeout=15).topics
        found = {
            name: sorted(meta.partitions)
            for name, meta in ((t.topic, topics.get(t.topic)) for t in wanted)
            if meta is not None
            and meta.error is None
            and meta.partitions
            and all(p.leader >= 0 for p in meta.partitions.values())
        }
        if len(found) == len(wanted):
            break
        if time.monotonic() > deadline:
            msg = f"topics missing from the metadata: {sorted({t.topic for t in wanted} - set(found))}"
            raise RuntimeError(msg)
        time.sleep(0.2)
    if len(found[settings.input_topic]) != partitions:
        count = len(found[settings.input_topic])
        log.warning("%s already exists with %d partitions; using them", settings.input_topic, count)
    return found


class Monitor:
    """Reads what the demo shows: input high watermarks and the three output topics."""

    def __init__(self, settings: Settings, partitions: Mapping[str, list[int]]) -> None:
        """Pin every output partition at its current end, before the dataflow starts."""
        self.settings = settings
        self.consumer = Consumer(
            {
                **settings.kafka_config(),
                "group.id": "loginflow-demo-monitor",
                "enable.auto.commit": "false",
                # The dataflow commits its output in transactions (exactly-once): show what is committed.
                "isolation.level": "read_committed",
            }
        )
        self.inputs = [TopicPartition(settings.input_topic, p) for p in partitions[settings.input_topic]]
        # assign() at offsets captured now: nothing produced after this point can be missed,
        # unlike a subscription whose offset reset happens only once the group settles.
        assigned = [
            TopicPartition(topic, p, self._high(TopicPartition(topic, p), patience=15))
            for topic in (settings.output_topic, settings.dlq_topic, settings.late_topic)
            for p in partitions[topic]
        ]
        self.consumer.assign(assigned)

    def _high(self, tp: TopicPartition, patience: float = 0.0) -> int:
        """The high watermark of `tp`, retrying for `patience` seconds.

        A partition created a moment ago can answer "not leader" for a little while.
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                return int(self.consumer.get_watermark_offsets(tp, timeout=5)[1])
            except KafkaException:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def input_total(self) -> int:
        """The input topic's high watermarks, summed over partitions."""
        return sum(self._high(tp) for tp in self.inputs)

    def poll(self, stats: DemoStats, timeout: float) -> int:
        """Feed whatever arrives within `timeout` into `stats`; returns how many messages came."""
        messages: list[Message] = self.consumer.consume(1000, timeout)
        for message in messages:
            if message.error() is not None:
                log.warning("monitor read error: %s", message.error())
            elif message.topic() == self.settings.output_topic:
                stats.add_metric(message.value())
            elif message.topic() == self.settings.dlq_topic:
                error = dict(message.headers() or []).get("error") or b"?"
                stats.add_dlq(error.decode(errors="replace") if isinstance(error, bytes) else str(error))
            else:
                stats.add_late()
        return len(messages)

    def drain(self, stats: DemoStats, quiet: float = 1.0) -> None:
        """Read until nothing has arrived for `quiet` seconds (bounded at 10 s)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.poll(stats, quiet):
            pass
