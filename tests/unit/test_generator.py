"""Pin the login-event generator: determinism, event shape, partition skew, bad and late kinds, files.

The contract checker below is written from the README's input contract on purpose,
without importing the product, so a generator bug cannot hide behind a parser bug.
"""

import base64
import json
import math
import re
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from devkit.generator import kafka as generator_kafka
from devkit.generator.cli import main
from devkit.generator.events import (
    BAD_KINDS,
    TS_FLOAT,
    TS_INT,
    TS_STR_FLOAT,
    TS_STR_INT,
    GeneratedMessage,
    GeneratorConfig,
    drafts,
    format_timestamp,
    generate,
    split_count,
    stamp,
    summarize,
)
from devkit.generator.kafka import pump, read_jsonl, write_jsonl
from devkit.records import consume_all

ROOT = Path(__file__).resolve().parents[2]
LOW, HIGH = 946_684_800, 4_102_444_800  # the contract's [2000-01-01, 2100-01-01)
DIGITS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
OPTIONAL = ("app_version", "device_type", "ip", "locale", "device_id")

# One mixed sample shared by the read-only tests: generating is the slow part.
MIXED = GeneratorConfig(count=24_000, bad_fraction=0.25, late_fraction=0.1, missing_device_type=0.1)


@pytest.fixture(scope="module")
def mixed() -> list[GeneratedMessage]:
    return list(generate(MIXED))


def contract(value: bytes | None) -> dict[str, Any] | None:
    """The parsed event if ``value`` satisfies the input contract, else None."""
    if not value:
        return None
    try:
        doc = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("user_id"), str) or not doc["user_id"]:
        return None
    ts = doc.get("timestamp")
    if isinstance(ts, bool) or not isinstance(ts, int | float | str):
        return None
    if isinstance(ts, str) and not DIGITS.fullmatch(ts):
        return None
    if not LOW <= float(ts) < HIGH:
        return None
    if any(doc.get(name) is not None and not isinstance(doc[name], str) for name in OPTIONAL):
        return None
    return doc


def event_time(message: GeneratedMessage) -> float:
    assert message.value is not None
    return float(json.loads(message.value)["timestamp"])


def by_partition(messages: Iterable[GeneratedMessage]) -> dict[int, list[GeneratedMessage]]:
    parts: dict[int, list[GeneratedMessage]] = defaultdict(list)
    for m in messages:
        parts[m.partition].append(m)
    return parts


# --- determinism ---------------------------------------------------------------------------------


def test_same_config_and_seed_give_identical_bytes(mixed: list[GeneratedMessage]) -> None:
    assert list(generate(MIXED)) == mixed


def test_different_seeds_give_different_streams() -> None:
    one = list(generate(GeneratorConfig(count=500, seed=1)))
    two = list(generate(GeneratorConfig(count=500, seed=2)))
    assert [m.value for m in one] != [m.value for m in two]
    assert {m.key for m in one}.isdisjoint({m.key for m in two})  # fresh uuids per seed


def test_cli_output_in_a_fresh_process_matches_generate(tmp_path: Path) -> None:
    # A separate interpreter has a different hash seed: nothing may depend on it.
    out = tmp_path / "events.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "devkit.generator",
        "--count",
        "3000",
        "--bad-fraction",
        "0.2",
        "--late-fraction",
        "0.05",
        "--skew",
        "3,1",
        "--seed",
        "7",
        "--to-file",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "generator: wrote 3,000 messages" in done.stderr
    expected = GeneratorConfig(count=3000, bad_fraction=0.2, late_fraction=0.05, partitions=2, skew=(3, 1), seed=7)
    assert list(read_jsonl(out)) == list(generate(expected))


# --- shape of valid events -----------------------------------------------------------------------


def test_valid_events_satisfy_the_contract_and_bad_ones_do_not(mixed: list[GeneratedMessage]) -> None:
    for m in mixed:
        doc = contract(m.value)
        if m.kind in ("ok", "late"):
            assert doc is not None, m
            assert m.key == doc["user_id"].encode()
            assert uuid.UUID(doc["user_id"]).version == 4
            assert uuid.UUID(doc["device_id"]).version == 4
            assert doc.get("device_type", "android") in ("android", "iOS")
            assert len(doc["locale"]) == 2 and doc["locale"].isupper()
            assert all(0 <= int(octet) <= 255 for octet in doc["ip"].split("."))
        else:
            assert m.kind in BAD_KINDS
            assert doc is None, m


def test_users_have_stable_devices_ips_and_attributes() -> None:
    messages = list(generate(GeneratorConfig(count=20_000, users=50, devices_per_user=2, ips_per_user=3)))
    devices, ips, attrs = defaultdict(set), defaultdict(set), defaultdict(set)
    device_types = defaultdict(set)
    for m in messages:
        doc = json.loads(m.value or b"")
        devices[doc["user_id"]].add(doc["device_id"])
        ips[doc["user_id"]].add(doc["ip"])
        attrs[doc["user_id"]].add((doc["app_version"], doc["locale"]))
        if "device_type" in doc:
            device_types[doc["device_id"]].add(doc["device_type"])
    assert len(devices) == 50
    assert all(len(v) == 2 for v in devices.values())
    assert all(len(v) == 3 for v in ips.values())
    assert all(len(v) == 1 for v in attrs.values())
    assert all(len(v) == 1 for v in device_types.values())  # a device never changes OS


def test_missing_device_type_fraction_is_honoured(mixed: list[GeneratedMessage]) -> None:
    valid = [json.loads(m.value or b"") for m in mixed if m.kind in ("ok", "late")]
    missing = sum("device_type" not in doc for doc in valid) / len(valid)
    assert missing == pytest.approx(0.1, abs=0.015)


def test_timestamps_come_in_every_accepted_format(mixed: list[GeneratedMessage]) -> None:
    raw = [json.loads(m.value or b"")["timestamp"] for m in mixed if m.kind in ("ok", "late")]
    forms = Counter(
        "int" if isinstance(ts, int) else "float" if isinstance(ts, float) else "str." if "." in ts else "str"
        for ts in raw
    )
    assert forms["int"] / len(raw) == pytest.approx(0.95, abs=0.01)
    assert min(forms["float"], forms["str"], forms["str."]) > 0.01 * len(raw) / 3
    assert all(ts % 1 for ts in raw if isinstance(ts, float))  # floats always carry a fraction
    assert all(DIGITS.fullmatch(ts) for ts in raw if isinstance(ts, str))


def test_format_timestamp_never_changes_the_second() -> None:
    t = 1709251234.9999
    assert format_timestamp(t, TS_INT) == 1709251234
    assert format_timestamp(t, TS_STR_INT) == "1709251234"
    assert format_timestamp(t, TS_FLOAT) == 1709251234.999
    assert format_timestamp(t, TS_STR_FLOAT) == "1709251234.999"
    assert format_timestamp(1709251234.0, TS_FLOAT) == 1709251234.5  # an integral float would read as an int


# --- partitions and event time -------------------------------------------------------------------


def test_partition_weights_change_density_not_the_span() -> None:
    config = GeneratorConfig(count=30_300, partitions=2, skew=(100, 1))
    parts = by_partition(generate(config))
    assert len(parts[0]) == 30_000
    assert len(parts[1]) == 300
    slack = 0.02 * config.span
    for messages in parts.values():
        times = [event_time(m) for m in messages]
        assert config.start <= min(times) <= config.start + slack
        assert config.start + config.span - slack <= max(times) < config.start + config.span


def test_split_count_is_exact_and_proportional() -> None:
    assert split_count(10, (1, 1, 1)) == [4, 3, 3]
    assert split_count(101, (100, 1)) == [100, 1]
    assert split_count(7, (0, 1)) == [0, 7]
    assert sum(split_count(999_999, (5, 3, 1, 1))) == 999_999


def test_each_partition_is_ordered_up_to_the_jitter(mixed: list[GeneratedMessage]) -> None:
    for messages in by_partition(mixed).values():
        front = -math.inf
        for m in messages:
            if m.kind != "ok":
                continue
            t = event_time(m)
            # +1: whole-second timestamps round every event down by up to a second.
            assert t >= front - MIXED.jitter - 1
            assert MIXED.start <= t < MIXED.start + MIXED.span
            front = max(front, t)


def test_partitions_are_interleaved_by_event_time(mixed: list[GeneratedMessage]) -> None:
    assert len({m.partition for m in mixed[:10]}) == MIXED.partitions
    front = -math.inf
    for m in mixed:
        if m.kind == "ok":
            t = event_time(m)
            assert t >= front - MIXED.jitter - 1  # the merged stream is as ordered as each partition
            front = max(front, t)


def test_late_events_trail_their_partition_by_late_by(mixed: list[GeneratedMessage]) -> None:
    gaps = []
    for messages in by_partition(mixed).values():
        front = None
        for m in messages:
            if m.kind == "ok":
                front = max(front or 0.0, event_time(m))
            elif m.kind == "late" and front is not None:
                gaps.append(front - event_time(m))
    # Slack: jitter, whole-second rounding and the ~1 s spacing of a partition's events,
    # a few of them when bad or late neighbours hold the front back.
    assert all(abs(gap - MIXED.late_by) <= MIXED.jitter + 6 for gap in gaps)
    assert sum(gaps) / len(gaps) == pytest.approx(MIXED.late_by, abs=2)
    assert len(gaps) > 1000
    late_share = sum(m.kind == "late" for m in mixed) / sum(m.kind in ("ok", "late") for m in mixed)
    assert late_share == pytest.approx(MIXED.late_fraction, abs=0.015)


# --- bad messages --------------------------------------------------------------------------------


def test_bad_fraction_is_honoured_and_every_bad_kind_appears(mixed: list[GeneratedMessage]) -> None:
    kinds = summarize(mixed)
    bad = sum(n for kind, n in kinds.items() if kind.startswith("bad:"))
    assert bad / len(mixed) == pytest.approx(MIXED.bad_fraction, abs=0.015)
    assert set(kinds) == {"ok", "late", *BAD_KINDS}


def test_bad_kinds_look_like_what_they_claim(mixed: list[GeneratedMessage]) -> None:
    def doc(m: GeneratedMessage) -> Any:
        return json.loads(m.value or b"")

    for m in mixed:
        if m.kind == "bad:tombstone":
            assert m.value is None and m.key is not None
        elif m.kind == "bad:empty":
            assert m.value == b""
        elif m.kind == "bad:invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                (m.value or b"").decode("utf-8")
        elif m.kind == "bad:invalid_json":
            with pytest.raises(ValueError, match="."):
                doc(m)
        elif m.kind == "bad:not_object":
            assert not isinstance(doc(m), dict)
        elif m.kind == "bad:missing_user_id":
            assert "user_id" not in doc(m) and m.key is None
        elif m.kind == "bad:empty_user_id":
            assert doc(m)["user_id"] == "" and m.key == b""
        elif m.kind == "bad:missing_timestamp":
            assert "timestamp" not in doc(m)
        elif m.kind == "bad:timestamp_bool":
            assert isinstance(doc(m)["timestamp"], bool)
        elif m.kind == "bad:timestamp_out_of_range":
            assert not LOW <= doc(m)["timestamp"] < HIGH
        elif m.kind == "bad:wrong_type":
            assert any(not isinstance(doc(m).get(name, ""), str) for name in OPTIONAL)
        elif m.kind == "bad:random_bytes":
            assert m.key is None and m.value and m.value[0] >= 0x80


def test_random_bytes_reach_max_bad_size() -> None:
    config = GeneratorConfig(count=4000, bad_fraction=1.0, max_bad_size=200_000)
    sizes = [len(m.value or b"") for m in generate(config) if m.kind == "bad:random_bytes"]
    assert max(sizes) <= 200_000
    assert max(sizes) > 50_000  # log-uniform sizes: mostly small, some close to the limit
    assert sorted(sizes)[len(sizes) // 2] < 5_000


# --- realtime mode -------------------------------------------------------------------------------


def test_realtime_drafts_are_stamped_at_send_time() -> None:
    count = 4000
    config = GeneratorConfig(count=count, realtime=True, rate=100, skew=(3, 1), partitions=2, late_fraction=0.1)
    clock = 1_800_000_000.0
    for d in drafts(config):
        m = stamp(d, clock)
        t = event_time(m)
        if m.kind == "late":
            assert clock - config.late_by - config.jitter - 1 <= t <= clock - config.late_by
        else:
            assert clock - config.jitter - 1 <= t <= clock
    share = Counter(d.partition for d in drafts(config))
    assert share[0] / count == pytest.approx(0.75, abs=0.03)


def test_generate_simulates_the_send_clock_in_realtime_mode() -> None:
    config = GeneratorConfig(count=1000, realtime=True, rate=50)
    messages = list(generate(config))
    assert messages == list(generate(config))
    assert config.start + 999 / 50 - config.jitter - 1 <= event_time(messages[-1]) <= config.start + 999 / 50


def test_realtime_without_count_is_endless() -> None:
    stream = drafts(GeneratorConfig(count=None, realtime=True))
    assert sum(1 for _ in zip(range(50_000), stream, strict=False)) == 50_000


# --- config and CLI ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"skew": (1, 2)},  # three partitions by default
        {"bad_fraction": 1.5},
        {"count": None},  # bulk mode needs to know how much to spread over the span
        {"max_bad_size": 2_000_000},
        {"partitions": 2, "skew": (0, 0)},
        {"span": 0},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="."):
        GeneratorConfig(**kwargs)


@pytest.mark.parametrize(
    "argv",
    [
        ["--realtime", "--to-file", "x.jsonl"],
        ["--duration", "5", "--to-file", "x.jsonl"],  # bulk duration without a rate
        ["--skew", "1,a"],
        ["--to-file", "a", "--from-file", "b"],
    ],
)
def test_cli_rejects_inconsistent_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_maps_options_onto_the_config(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    argv = [
        "--rate",
        "100",
        "--duration",
        "20",
        "--users",
        "10",
        "--partitions",
        "4",
        "--span",
        "60",
        "--start",
        "1700000000",
        "--late-fraction",
        "0.2",
        "--late-by",
        "30",
        "--jitter",
        "0",
        "--missing-device-type",
        "0",
        "--odd-timestamps",
        "0",
        "--no-progress",
        "--to-file",
        str(out),
    ]
    assert main(argv) == 0
    expected = GeneratorConfig(
        count=2000,
        rate=100,
        users=10,
        partitions=4,
        span=60,
        start=1700000000,
        late_fraction=0.2,
        late_by=30,
        jitter=0,
        missing_device_type=0,
        odd_timestamps=0,
    )
    assert list(read_jsonl(out)) == list(generate(expected))


def test_help_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devkit.generator", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "--bad-fraction" in done.stdout and "--from-file" in done.stdout


# --- files and pacing ----------------------------------------------------------------------------


def test_file_round_trip_is_byte_exact(tmp_path: Path) -> None:
    messages = list(generate(GeneratorConfig(count=3000, bad_fraction=0.5)))
    messages.append(GeneratedMessage(0, b"\xff\x00key", b"\x00\xff", "bad:random_bytes"))
    path = tmp_path / "events.jsonl"
    assert write_jsonl(messages, path) == summarize(messages)
    assert list(read_jsonl(path)) == messages
    kinds = {m.kind for m in messages}
    assert {"bad:tombstone", "bad:invalid_utf8", "bad:random_bytes", "bad:empty"} <= kinds
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert any(r.get("value", "") is None for r in records)  # tombstones stay null
    assert any("value_b64" in r for r in records)
    assert base64.b64decode(records[-1]["key_b64"]) == b"\xff\x00key"
    assert all(set(r) <= {"partition", "kind", "key", "key_b64", "value", "value_b64"} for r in records)


class FakeClock:
    """Stands in for the ``time`` module so pacing runs on a virtual clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_pump_paces_to_the_rate_and_stops_at_the_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(generator_kafka, "time", clock)
    sent: list[float] = []

    def send(item: int) -> str:
        sent.append(clock.now)
        return "ok"

    kinds: Counter[str] = Counter()
    pump(range(10_000), send, kinds, rate=200, duration=2.0)
    assert kinds["ok"] == len(sent) == pytest.approx(400, abs=2)
    assert sent[-1] - sent[0] == pytest.approx(2.0, abs=0.02)


# --- Kafka (only with a reachable KAFKA_BROKERS) -------------------------------------------------


def read_topic(brokers: str, topic: str) -> dict[int, list[tuple[Any, Any]]]:
    """The topic to the high watermark it has once the generator returned, so duplicates show."""
    got: dict[int, list[tuple[Any, Any]]] = defaultdict(list)
    for record in consume_all(brokers, topic):
        got[record.partition].append((record.key, record.value))
    return got


@pytest.mark.kafka
def test_produces_byte_exact_messages_to_their_partitions(kafka_brokers: str, tmp_path: Path) -> None:
    brokers = kafka_brokers
    config = GeneratorConfig(count=3000, bad_fraction=0.3, max_bad_size=300_000, partitions=3, skew=(5, 1, 1))
    expected = by_partition(generate(config))
    recording = tmp_path / "events.jsonl"
    write_jsonl(generate(config), recording)
    topics = [f"gen-test-{uuid.uuid4().hex[:12]}", f"gen-test-{uuid.uuid4().hex[:12]}"]
    common = ["--brokers", brokers, "--create-topic", "--partitions", "3", "--no-progress"]
    try:
        assert (
            main(
                [
                    *common,
                    "--topic",
                    topics[0],
                    "--count",
                    "3000",
                    "--bad-fraction",
                    "0.3",
                    "--max-bad-size",
                    "300000",
                    "--skew",
                    "5,1,1",
                ]
            )
            == 0
        )
        assert main([*common, "--topic", topics[1], "--from-file", str(recording), "--rate", "5000"]) == 0
        for topic in topics:
            got = read_topic(brokers, topic)
            # None stays None and b"" stays b"": tombstones and empty values are different bad kinds.
            assert got == {p: [(m.key, m.value) for m in ms] for p, ms in expected.items()}
    finally:
        AdminClient({"bootstrap.servers": brokers}).delete_topics(topics)
