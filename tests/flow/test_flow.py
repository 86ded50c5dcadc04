"""The whole topology on in-memory partitions, with 1 and 2 workers.

No wall clock is involved: the memory source finishes every partition like
a bounded read, so every window closes by event time or at the end.
"""

import hashlib
import hmac
import json
import random
from collections.abc import Callable

import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

from dataflow import Sinks, build_flow
from devkit.memory_source import MemorySource
from devkit.reference import expected_output, metrics_from_records
from operators.pure.encoding import KafkaRecord
from operators.runtime.settings import Settings
from tests.outputs import by_source, json_of

T0 = 1_709_251_200  # 2024-03-01T00:00:00Z, a window boundary for 60 s windows


def login(t: float, user: str = "u1", device: str = "d1", **extra: object) -> bytes:
    doc = {
        "user_id": user,
        "device_id": device,
        "ip": "10.0.0.1",
        "app_version": "2.3.0",
        "device_type": "android",
        "locale": "TX",
        "timestamp": t,
        **extra,
    }
    return json.dumps(doc).encode()


Runner = Callable[..., None]


@pytest.fixture(params=["1_worker", "2_workers"])
def runner(request: pytest.FixtureRequest) -> Runner:
    if request.param == "1_worker":
        return run_main
    return lambda flow: cluster_main(flow, [], 0, worker_count_per_proc=2)


def run(partitions: dict[int, list[bytes | None]], runner: Runner, **env: str) -> dict[str, list[KafkaRecord]]:
    settings = Settings.from_env({"WINDOW_SECONDS": "60", "ALLOWED_LATENESS_SECONDS": "10", **env})
    out: dict[str, list[KafkaRecord]] = {"metrics": [], "dlq": [], "late": []}
    source = MemorySource(
        {p: [(f"k{p}".encode(), value) for value in values] for p, values in partitions.items()},
        settings.window_seconds,
        settings.allowed_lateness_seconds,
    )
    sinks = Sinks(TestingSink(out["metrics"]), TestingSink(out["dlq"]), TestingSink(out["late"]))
    runner(build_flow(settings, source=source, sinks=sinks))
    return out


def metric_values(records: list[KafkaRecord]) -> list[dict]:
    return sorted((json_of(r.value) for r in records), key=lambda d: (d["window_start"], d["slice"], str(d["key"])))


def test_counts_one_window_exactly(runner: Runner) -> None:
    partitions: dict[int, list[bytes | None]] = {0: [login(T0 + 1), login(T0 + 2), login(T0 + 3, user="u2")]}
    out = run(partitions, runner, SLICES="user_id+device_id:2,app_version+device_type:1")
    assert metric_values(out["metrics"]) == [
        {
            "window_start": "2024-03-01T00:00:00Z",
            "window_end": "2024-03-01T00:01:00Z",
            "slice": "app_version+device_type",
            "key": {"app_version": "2.3.0", "device_type": "android"},
            "count": 3,
        },
        {
            "window_start": "2024-03-01T00:00:00Z",
            "window_end": "2024-03-01T00:01:00Z",
            "slice": "user_id+device_id",
            "key": {"user_id": "u1", "device_id": "d1"},
            "count": 2,
        },
    ]
    assert out["dlq"] == [] and out["late"] == []


def test_metric_key_is_deterministic_and_names_window_slice_and_values(runner: Runner) -> None:
    out = run({0: [login(T0 + 1)]}, runner, SLICES="user_id:1")
    (record,) = out["metrics"]
    assert json_of(record.key) == ["2024-03-01T00:00:00Z", "user_id", "u1"]


def test_rejects_keep_bytes_and_reason(runner: Runner) -> None:
    bad = [b"{not json", None, b"", b"[1]", json.dumps({"user_id": "u", "timestamp": True}).encode()]
    out = run({0: bad, 1: [login(T0)]}, runner)
    got = sorted(
        (dict(r.headers)["source_partition"], dict(r.headers)["source_offset"], dict(r.headers)["error"], r.value)
        for r in out["dlq"]
    )
    assert got == [
        (b"0", b"0", b"invalid_json", b"{not json"),
        (b"0", b"1", b"tombstone", None),
        (b"0", b"2", b"empty_value", b""),
        (b"0", b"3", b"not_object", b"[1]"),
        (b"0", b"4", b"bad_type:timestamp", bad[4]),
    ]
    assert all(dict(r.headers)["source_topic"] == b"user-login" for r in out["dlq"])


def test_late_event_goes_to_late_topic_and_is_not_counted(runner: Runner) -> None:
    # T0+70 moves partition 0's watermark to exactly T0+60, the end of [T0, T0+60): closed.
    partitions: dict[int, list[bytes | None]] = {0: [login(T0 + 1), login(T0 + 70), login(T0 + 30)]}
    out = run(partitions, runner, SLICES="user_id:1")
    assert [(r.value, dict(r.headers)["window_start"]) for r in out["late"]] == [
        (login(T0 + 30), b"2024-03-01T00:00:00Z")
    ]
    assert [json_of(r.value)["count"] for r in sorted(out["metrics"], key=lambda r: r.key or b"")] == [1, 1]


def test_event_within_allowed_lateness_still_counts(runner: Runner) -> None:
    # T0+69.5 puts the watermark at T0+59.5: the first window is still open for T0+30.
    out = run({0: [login(T0 + 1), login(T0 + 69.5), login(T0 + 30)]}, runner, SLICES="user_id:1")
    assert out["late"] == []
    counts = {json_of(r.value)["window_start"]: json_of(r.value)["count"] for r in out["metrics"]}
    assert counts == {"2024-03-01T00:00:00Z": 2, "2024-03-01T00:01:00Z": 1}


def test_slow_partition_holds_windows_open_for_its_on_time_events(runner: Runner) -> None:
    # Partition 0 races an hour ahead; partition 1's early events must still count.
    fast: list[bytes | None] = [login(T0 + 60 * i, user="fast") for i in range(60)]
    slow: list[bytes | None] = [login(T0 + 5, user="slow"), login(T0 + 6, user="slow")]
    out = run({0: fast, 1: slow}, runner, SLICES="user_id:1")
    values = [json_of(r.value) for r in out["metrics"]]
    counts = {(value["window_start"], value["key"]["user_id"]): value["count"] for value in values}
    assert counts[("2024-03-01T00:00:00Z", "slow")] == 2
    assert out["late"] == []


def test_random_skewed_input_matches_batch_answer(runner: Runner) -> None:
    rng = random.Random(7)
    partitions: dict[int, list[bytes | None]] = {}
    for partition, weight in ((0, 100), (1, 10), (2, 1)):
        values: list[bytes | None] = []
        for i in range(3 * weight):
            t = T0 + i * 1800 / (3 * weight) + rng.uniform(-5, 5)
            if rng.random() < 0.05:
                t -= 200  # late
            users = [f"u{n}" for n in range(5)]
            values.append(
                login(t, user=rng.choice(users), device=rng.choice(["d1", "d2"]), ip=rng.choice(["1.1.1.1", "2.2.2.2"]))
            )
            if rng.random() < 0.05:
                values.append(rng.choice([b"oops", None, b"{}", json.dumps({"user_id": "x", "timestamp": 1}).encode()]))
        partitions[partition] = values
    out = run(partitions, runner)
    expected = expected_output(partitions, 60, 10)
    assert expected.rejects and expected.late, "the input must exercise rejects and late events"
    assert metrics_from_records([r.value for r in out["metrics"]]) == expected.metrics
    assert by_source(out["dlq"], "error", partitions) == expected.rejects
    assert by_source(out["late"], "window_start", partitions) == expected.late


def test_pseudonymized_fields_carry_a_keyed_hmac_and_counts_are_unchanged(runner: Runner) -> None:
    partitions: dict[int, list[bytes | None]] = {0: [login(T0 + 1), login(T0 + 2), login(T0 + 3, user="u2")]}
    plain = run(partitions, runner, SLICES="user_id+ip:1,app_version:1")
    hidden = run(
        partitions, runner, SLICES="user_id+ip:1,app_version:1", PSEUDONYMIZE="ip,user_id", PSEUDONYMIZE_KEY="k" * 32
    )
    expected_hmac = hmac.new(b"k" * 32, b"u1", hashlib.sha256).hexdigest()
    keys = [v["key"] for v in metric_values(hidden["metrics"])]
    assert {"user_id": expected_hmac, "ip": hmac.new(b"k" * 32, b"10.0.0.1", hashlib.sha256).hexdigest()} in keys
    assert {"app_version": "2.3.0"} in keys, "fields not listed stay readable"
    assert not any(b"10.0.0.1" in (r.value or b"") or b"10.0.0.1" in (r.key or b"") for r in hidden["metrics"])
    assert sorted(v["count"] for v in metric_values(hidden["metrics"])) == sorted(
        v["count"] for v in metric_values(plain["metrics"])
    )
