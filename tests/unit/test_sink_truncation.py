"""Pure parts of the output path: truncating a refused forward, the metrics topic's config."""

from operators.kafka.sink import TRUNCATED_VALUE_BYTES, truncated
from operators.kafka.topics import metrics_topic_config
from operators.pure.encoding import KafkaRecord
from operators.runtime.settings import Settings


def test_a_refused_forward_keeps_its_key_and_headers_and_says_how_long_it_was() -> None:
    record = KafkaRecord(b"key", b"v" * 2_000_000, [("error", b"too_long:app_version")])
    cut = truncated(record, 1_048_588)
    assert cut.key == b"key"
    assert cut.value == b"v" * TRUNCATED_VALUE_BYTES
    assert cut.headers == [("error", b"too_long:app_version"), ("truncated", b"2000000")]


def test_truncation_leaves_room_for_the_key_in_a_small_topic() -> None:
    cut = truncated(KafkaRecord(b"k" * 1000, b"v" * 50_000, []), 10_000)
    assert len(cut.value or b"") == 10_000 - 1000 - 4096
    assert truncated(KafkaRecord(b"k" * 20_000, b"v" * 10, []), 10_000).value == b""


def test_login_metrics_is_compacted_and_trimmed_by_time() -> None:
    assert metrics_topic_config(Settings()) == {"cleanup.policy": "compact,delete", "retention.ms": "604800000"}
    assert metrics_topic_config(Settings(output_retention_hours=2))["retention.ms"] == "7200000"
