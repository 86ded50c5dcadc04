"""Sizes on the way through: cutting a forward to fit, the metric record bound, batch and fetch limits, topic config."""

import pytest

from operators.kafka.client import producer_config, reader_config
from operators.kafka.topics import metrics_topic_config
from operators.pure.encoding import KafkaRecord, Pseudonymizer, encode_metric
from operators.pure.sizes import (
    PRODUCER_MAX_MESSAGE_BYTES,
    TRUNCATED_BYTES,
    largest_field_bytes_within,
    largest_metric_bytes,
    record_budget,
    record_size,
    truncated,
)
from operators.pure.window_counts import WindowCount
from operators.runtime.settings import ConfigError, Settings, parse_slices

ALL_FIELDS = parse_slices("user_id+app_version+device_type+ip+locale+device_id:1")


def test_a_refused_forward_keeps_its_key_and_headers_and_says_how_long_it_was() -> None:
    record = KafkaRecord(b"key", b"v" * 2_000_000, [("error", b"too_long:app_version")])
    cut = truncated(record, 1_048_588)
    assert cut.key == b"key"
    assert cut.value == b"v" * TRUNCATED_BYTES
    assert cut.headers == [("error", b"too_long:app_version"), ("truncated", b"2000000")]


def test_truncation_leaves_room_for_the_key_in_a_small_topic() -> None:
    cut = truncated(KafkaRecord(b"k" * 1000, b"v" * 50_000, []), 10_000)
    assert cut.key == b"k" * 1000
    # Room is kept for both headers a cut may add.
    headers = len("truncated") + len("50000") + len("truncated_key") + len("1000")
    assert len(cut.value or b"") == record_budget(10_000) - 1000 - headers
    assert record_size(cut) <= record_budget(10_000)


@pytest.mark.parametrize(("limit", "key_length"), [(10_000, 200_000), (100_000, 200_000), (1_048_588, 3_000_000)])
def test_a_key_too_large_for_the_topic_is_cut_too_and_says_how_long_it_was(limit: int, key_length: int) -> None:
    record = KafkaRecord(b"k" * key_length, b"not json", [("error", b"invalid_json")])
    cut = truncated(record, limit)
    assert cut.value == b"not json"
    assert cut.headers == [("error", b"invalid_json"), ("truncated", b"8"), ("truncated_key", str(key_length).encode())]
    headers = len("errorinvalid_json") + len("truncated8") + len(f"truncated_key{key_length}")
    assert cut.key == b"k" * min(TRUNCATED_BYTES, (record_budget(limit) - headers) // 2)
    assert record_size(cut) <= record_budget(limit)


def test_a_cut_keeps_a_missing_key_and_value_missing() -> None:
    cut = truncated(KafkaRecord(None, None, [("error", b"tombstone"), ("pad", b"x" * 20_000)]), 10_000)
    assert (cut.key, cut.value) == (None, None)


def test_the_metric_bound_is_the_size_of_the_worst_record_the_encoder_writes() -> None:
    # Control characters are orjson's longest escape (six bytes for one).
    for pseudonymizer in (None, Pseudonymizer(frozenset({"ip", "user_id"}), b"k" * 16)):
        [spec] = ALL_FIELDS
        values = tuple("\x1f" * 1000 for _ in spec.fields)
        worst = encode_metric(WindowCount(4_102_444_740, 4_102_444_800, spec, values, 2**63 - 1), pseudonymizer)
        assert largest_metric_bytes(ALL_FIELDS, 1000, pseudonymizer) == record_size(worst)
    # Six fields, each in the key and in the value, six bytes per byte.
    assert largest_metric_bytes(ALL_FIELDS, 1001) - largest_metric_bytes(ALL_FIELDS, 1000) == 72


def test_the_largest_field_bound_is_tight() -> None:
    budget = record_budget(1_048_588)
    for slices in (Settings().slices, ALL_FIELDS):
        bound = largest_field_bytes_within(slices, budget)
        assert largest_metric_bytes(slices, bound) <= budget < largest_metric_bytes(slices, bound + 1)


def test_max_field_bytes_a_producer_cannot_send_is_refused_naming_the_variable() -> None:
    bound = largest_field_bytes_within(ALL_FIELDS, record_budget(PRODUCER_MAX_MESSAGE_BYTES))
    env = {"SLICES": "user_id+app_version+device_type+ip+locale+device_id:1"}
    assert Settings.from_env({**env, "MAX_FIELD_BYTES": str(bound)}).max_field_bytes == bound
    with pytest.raises(ConfigError, match=rf"^MAX_FIELD_BYTES: .* must be at most {bound}$"):
        Settings.from_env({**env, "MAX_FIELD_BYTES": str(bound + 1)})
    # Pseudonymized fields are 64 hex characters whatever their length.
    hidden = {**env, "PSEUDONYMIZE": "user_id,app_version,device_type,ip,locale,device_id"}
    assert Settings.from_env({**hidden, "PSEUDONYMIZE_KEY": "k" * 16, "MAX_FIELD_BYTES": str(bound * 10)})


def test_a_producer_batches_no_more_than_its_topic_takes() -> None:
    assert producer_config(Settings(), record_budget(100_000))["batch.size"] == str(record_budget(100_000))
    assert producer_config(Settings())["batch.size"] == "1000000"
    assert producer_config(Settings(), record_budget(1_048_588))["batch.size"] == "1000000"


def test_the_reader_takes_a_response_as_large_as_any_message_a_broker_can_hold() -> None:
    # A fetch returns an oversized first batch whole; Kafka's size limits are int32.
    # A 102 MB message (under the broker's default 100 MiB request limit) made
    # librdkafka's default 100 MB reader retry forever: "Invalid response size".
    config = reader_config(Settings(), on_error=lambda _error: None)
    assert config["receive.message.max.bytes"] == 2**31 - 1
    chosen = Settings(kafka_props={"receive.message.max.bytes": "5000000"})
    assert reader_config(chosen, on_error=lambda _error: None)["receive.message.max.bytes"] == "5000000"


def test_login_metrics_is_compacted_and_trimmed_by_time() -> None:
    assert metrics_topic_config(Settings()) == {"cleanup.policy": "compact,delete", "retention.ms": "604800000"}
    assert metrics_topic_config(Settings(output_retention_hours=2))["retention.ms"] == "7200000"


def test_a_producer_lingers_long_enough_to_join_a_closing_windows_bursts() -> None:
    # A closing window's records arrive in bursts a few ms apart; at librdkafka's
    # 5 ms each burst was its own batch per partition, which cost the broker
    # most of its CPU for loginflow's output (operators/kafka/client.py).
    # Bounded above: a burst's last records wait this long, and windows must close fast.
    assert 50 <= int(producer_config(Settings())["linger.ms"]) <= 100
