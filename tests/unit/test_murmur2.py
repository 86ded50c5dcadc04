"""Kafka's murmur2 partitioner, against the values Kafka's own tests pin."""

import pytest

from operators.kafka.transactional_writer import taken_over, transactional_id
from operators.pure.murmur2 import murmur2, partition_for
from operators.pure.replay_skip import identity
from operators.runtime.settings import Settings

# From Apache Kafka's UtilsTest.testMurmur2 (clients/src/test/.../utils/UtilsTest.java).
KAFKA_CASES = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), KAFKA_CASES.items())
def test_murmur2_matches_kafkas_java_implementation(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_is_the_positive_hash_modulo_the_partition_count() -> None:
    assert partition_for(b"foobar", 7) == (-790332482 & 0x7FFFFFFF) % 7
    assert {partition_for(b"key-%d" % i, 3) for i in range(100)} == {0, 1, 2}
    assert partition_for(b"", 5) == (murmur2(b"") & 0x7FFFFFFF) % 5


def test_identity_is_the_whole_record_whatever_the_header_shape() -> None:
    assert identity(b"k", b"v", [("error", b"x")]) == identity(b"k", b"v", {"error": b"x"})
    assert identity(b"k", b"v", [("error", "x")]) == identity(b"k", b"v", [("error", b"x")])
    assert identity(b"k", b"v", None) == identity(b"k", b"v", [])
    # A revision has the key of the record it revises: it must not be skipped as a copy.
    assert identity(b'["w","s","u"]', b'{"count":2}', []) != identity(b'["w","s","u"]', b'{"count":3}', [])


def test_transactional_ids_are_stable_per_prefix_topic_and_partition() -> None:
    settings = Settings(transactional_id_prefix="prod")
    assert transactional_id(settings, "login-metrics", 2) == "prod-login-metrics-2"


def test_the_taken_over_line_names_the_setting_the_id_and_the_prefix_in_use() -> None:
    line = taken_over("loginflow-56e2fcab55-login-metrics-0", "loginflow-56e2fcab55", derived=True)
    assert line.startswith("TRANSACTIONAL_ID_PREFIX: transactional id 'loginflow-56e2fcab55-login-metrics-0' ")
    assert "give each dataflow its own prefix (this one uses 'loginflow-56e2fcab55', derived from its topic" in line
    assert "set by TRANSACTIONAL_ID_PREFIX" in taken_over("prod-login-metrics-0", "prod", derived=False)
    assert "\n" not in line
