"""Differential fuzz: the in-memory flow against the independent reference, on random configurations.

Hypothesis draws a configuration (partitions and their skew, disorder within
and beyond the allowed lateness, the kinds and share of bad input, window
length, slices and minimum counts, field limit, workers, batch and shard
counts) and an input, runs the real topology on it with `bytewax.testing`,
and compares every record, reject and late event with `devkit.reference`.
A mismatch shrinks to a minimal configuration and input. Inputs include the
parsing corners of the contract: extra fields orjson refuses (numbers beyond
a double, lone surrogates), the same in known fields, duplicated keys, NaN,
and digit-string timestamps too long for a double just before a window
boundary.

A second property runs the same input in two bounded runs on one recovery
directory, the second after more input was appended: the latest record per
key must equal the one-run answer, and no reject or late event may repeat.

`make test` runs FUZZ_EXAMPLES=20 of each with a fixed seed; `make fuzz`
runs FUZZ_EXAMPLES=300 fresh ones.
"""

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, cluster_main, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import Sinks, build_flow
from devkit.memory_source import MemorySource
from devkit.reference import Expected, expected_output, metrics_from_records
from operators.pure.encoding import KafkaRecord
from operators.runtime.settings import Settings
from tests.outputs import by_source, latest_metrics

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))
DERANDOMIZE = os.environ.get("FUZZ_RANDOM", "") == ""
fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_709_251_200  # 2024-03-01T00:00:00Z

FIELD_COMBOS = [
    ("user_id",),
    ("user_id", "device_id"),
    ("user_id", "ip"),
    ("app_version", "locale"),
    ("app_version", "device_type"),
    ("ip", "locale", "device_type"),
]

Values = dict[int, list[bytes | None]]


@dataclass(frozen=True)
class Config:
    window: int
    lateness: float
    slices: tuple[tuple[tuple[str, ...], int], ...]
    shards: int
    workers: int
    batch_size: int
    max_field_bytes: int

    def env(self) -> dict[str, str]:
        return {
            "WINDOW_SECONDS": str(self.window),
            "ALLOWED_LATENESS_SECONDS": str(self.lateness),
            "SLICES": ",".join(f"{'+'.join(fields)}:{minimum}" for fields, minimum in self.slices),
            "SHARDS_PER_SLICE": str(self.shards),
            "MAX_FIELD_BYTES": str(self.max_field_bytes),
        }


configs = st.builds(
    Config,
    window=st.sampled_from([1, 7, 60, 300]),
    lateness=st.sampled_from([0.0, 0.5, 3.0, 45.0, 400.0]),
    slices=st.lists(
        st.tuples(st.sampled_from(FIELD_COMBOS), st.integers(1, 3)),
        min_size=1,
        max_size=4,
        unique_by=lambda item: frozenset(item[0]),
    ).map(tuple),
    shards=st.integers(1, 5),
    workers=st.integers(1, 3),
    batch_size=st.integers(1, 8),
    max_field_bytes=st.sampled_from([8, 1024]),
)

small_text = st.sampled_from(["a", "b", "c", "ü", "€€€€", "long-value-x"])


# Extra fields as raw JSON text: JSON allows all of them, orjson refuses the
# numbers beyond a double and the lone surrogates, and the contract ignores
# them all. (json.dumps would write inf as Infinity, which is not JSON.)
EXTRAS = [
    '"extra": 1',
    '"extra": 1e400',
    '"extra": [-1e400, {"deep": 2E+999}]',
    '"extra": "\\ud800"',
    '"extra": ["a\\udc00b", "\\ud83d\\ude00"]',
    '"k\\udfff": null',
    '"extra": ' + "9" * 400,
]


def with_members(value: bytes, *members: str) -> bytes:
    """A JSON object's text with `members` (raw ``"name": value`` text) appended."""
    return value[:-1] + "".join(f", {member}" for member in members).encode() + b"}"


def near_boundary(t: float, window: int, nines: int) -> str:
    """A digit string just before the first window boundary after `t`, too long for a double to keep."""
    boundary = (int(t) // window + 1) * window
    return f"{boundary - 1}.{'9' * nines}"


@st.composite
def good_event(draw: st.DrawFn, t: float, window: int = 60, extras: bool = True) -> bytes:
    doc: dict[str, object] = {"user_id": draw(st.sampled_from(["u1", "u2", "u3", "user-with-a-long-id"]))}
    long_digits = near_boundary(t, window, draw(st.integers(7, 25)))
    doc["timestamp"] = draw(st.sampled_from([t, int(t), str(int(t)), f"{t:.3f}", long_digits]))
    for name in ("app_version", "device_type", "ip", "locale", "device_id"):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue  # absent
        doc[name] = None if choice == 1 else "" if choice == 2 else draw(small_text)
    value = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()
    if extras and draw(st.integers(0, 3)) == 0:
        value = with_members(value, draw(st.sampled_from(EXTRAS)))
    return value


@st.composite
def bad_message(draw: st.DrawFn, t: float) -> bytes | None:
    kind = draw(st.integers(0, 12))
    good = json.loads(draw(good_event(t, extras=False)))
    if kind == 0:
        return None
    if kind == 1:
        return b""
    if kind == 2:
        return draw(st.sampled_from([b"{not json", b"[1, 2]", b'"text"', b"12", b"\xff\xfe", b"{}"]))
    if kind == 3:
        good.pop(draw(st.sampled_from(["user_id", "timestamp"])))
    elif kind == 4:
        good[draw(st.sampled_from(["user_id", "ip", "locale", "device_id", "app_version"]))] = 7
    elif kind == 5:
        good["timestamp"] = draw(st.sampled_from([True, "soon", -5, 1e12, "1.5e9", [1]]))
    elif kind == 6:
        good["user_id"] = ""
    elif kind == 7:
        good[draw(st.sampled_from(["user_id", "device_type", "locale"]))] = "x" * draw(st.integers(5, 40))
    elif kind == 8:
        good["timestamp"] = 4_102_444_800 + draw(st.integers(0, 10))
    elif kind == 9:
        # What orjson refuses, in a known field or beside one that is not JSON.
        name = draw(st.sampled_from(["user_id", "timestamp", "ip", "device_id"]))
        raw = draw(st.sampled_from(['"\\ud800"', '"x\\udfff"', "1e400", "-1e400"]))
        good.pop(name, None)
        return with_members(json.dumps(good).encode(), f'"{name}": {raw}')
    elif kind == 10:
        # Duplicated keys: the last wins, also when an earlier one is refused by orjson.
        name = draw(st.sampled_from(["user_id", "timestamp", "locale"]))
        first = draw(st.sampled_from(["7", '"\\ud800"', "1e400"]))
        return b'{"' + name.encode() + b'": ' + first.encode() + b", " + json.dumps(good).encode()[1:]
    elif kind == 11:
        constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return with_members(json.dumps(good).encode(), '"extra": 1e400', f'"other": {constant}')
    else:
        return json.dumps(good).encode()  # another good one
    return json.dumps(good).encode()


@st.composite
def partition_log(draw: st.DrawFn, config: Config, length: int) -> list[bytes | None]:
    bad_share = draw(st.sampled_from([0.0, 0.1, 0.4]))
    step = draw(st.sampled_from([0.1, 1.0, config.window / 2, config.window * 3]))
    t = T0 + draw(st.floats(0, 2 * config.window))
    values: list[bytes | None] = []
    for _ in range(length):
        # Disorder: mostly forward, sometimes back within the lateness, sometimes far beyond it.
        jump = draw(st.sampled_from(["forward", "forward", "forward", "within", "beyond"]))
        if jump == "forward":
            t += draw(st.floats(0, step))
        at = t - (draw(st.floats(0, config.lateness)) if jump == "within" else 0.0)
        if jump == "beyond":
            at = t - config.lateness - draw(st.floats(config.window, 3 * config.window + 1))
        at = round(at, 3)
        if draw(st.floats(0, 1)) < bad_share:
            values.append(draw(bad_message(at)))
        else:
            values.append(draw(good_event(at, config.window)))
    return values


@st.composite
def cases(draw: st.DrawFn) -> tuple[Config, Values]:
    config = draw(configs)
    partitions = draw(st.integers(1, 4))
    lengths = [draw(st.integers(0, 40)) for _ in range(partitions)]
    return config, {p: draw(partition_log(config, n)) for p, n in enumerate(lengths)}


def run_flow(config: Config, inputs: Values, recovery: RecoveryConfig | None = None) -> dict[str, list[KafkaRecord]]:
    settings = Settings.from_env(config.env())
    out: dict[str, list[KafkaRecord]] = {"metrics": [], "dlq": [], "late": []}
    source = MemorySource(
        {p: [(b"k", value) for value in values] for p, values in inputs.items()},
        settings.window_seconds,
        settings.allowed_lateness_seconds,
        batch_size=config.batch_size,
        max_field_bytes=settings.max_field_bytes,
    )
    flow = build_flow(settings, source=source, sinks=Sinks(*(TestingSink(out[name]) for name in out)))
    epoch = timedelta(seconds=10)
    if config.workers == 1:
        run_main(flow, epoch_interval=epoch, recovery_config=recovery)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=config.workers, epoch_interval=epoch, recovery_config=recovery)
    return out


def assert_matches(out: dict[str, list[KafkaRecord]], expected: Expected, inputs: Values) -> None:
    assert metrics_from_records([r.value for r in out["metrics"]]) == expected.metrics
    assert by_source(out["dlq"], "error", inputs) == expected.rejects
    assert by_source(out["late"], "window_start", inputs) == expected.late


@fuzz_settings
@given(cases())
def test_the_flow_gives_the_reference_answer_on_random_configurations(case: tuple[Config, Values]) -> None:
    config, inputs = case
    expected = expected_output(inputs, config.window, config.lateness, config.slices, config.max_field_bytes)
    assert_matches(run_flow(config, inputs), expected, inputs)


@fuzz_settings
@given(cases(), st.floats(0, 1))
def test_a_bounded_run_continued_on_more_input_gives_the_one_run_answer(
    case: tuple[Config, Values], cut: float
) -> None:
    config, inputs = case
    first = {p: values[: int(len(values) * cut)] for p, values in inputs.items()}
    # Every window stays revisable until every log passed it: no horizon,
    # no clock, so the second run's on-time counts always merge.
    with tempfile.TemporaryDirectory() as directory:
        init_db_dir(Path(directory), 2)
        recovery = RecoveryConfig(directory)
        before = run_flow(config, first, recovery)
        after = run_flow(config, inputs, recovery)
    expected = expected_output(inputs, config.window, config.lateness, config.slices, config.max_field_bytes)
    both = {name: before[name] + after[name] for name in before}
    assert latest_metrics(r.value for r in both["metrics"]) == {key: n for key, n in expected.metrics.items()}
    assert by_source(both["dlq"], "error") == expected.rejects
    assert by_source(both["late"], "window_start") == expected.late
