"""An independent batch answer to the loginflow contract, for tests and the benchmark to compare with.

Deliberately written without importing the product: the standard library's
json instead of orjson, plain loops instead of shards. It reads the README's
contract literally, one partition at a time in offset order.

The rules it states (docs/contracts.md): a message is JSON by JSON's grammar,
so numbers of any size and escaped lone surrogates are JSON, NaN and Infinity
are not, and the last of duplicated keys wins. A known field's string holding
a lone surrogate has no UTF-8 form and is a ``bad_type``. A JSON number with a
fraction or an exponent is the nearest double; a JSON integer and a digit
string are exact: a digit string's range and window follow its digits, and
its event time (what lateness compares) is the largest double not above it.
"""

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from fractions import Fraction

OPTIONAL = ("app_version", "device_type", "ip", "locale", "device_id")
LOW = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()
HIGH = datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()
DEFAULT_SLICES = (
    (("user_id", "device_id"), 2),
    (("user_id", "ip"), 2),
    (("app_version", "locale"), 1),
    (("app_version", "device_type"), 1),
)

Slices = Sequence[tuple[tuple[str, ...], int]]
MetricKey = tuple[str, str, tuple[str, ...]]
"""(window_start ISO, slice name, key values)."""


def _reject_constant(name: str) -> float:
    raise ValueError(name)


MAX_FIELD_BYTES = 1024
"""The README's default limit on one string field, in UTF-8 bytes."""

MAX_AHEAD = 300.0
"""The README's default MAX_AHEAD_OF_RECORD_SECONDS."""


def _too_long(text: str, limit: int) -> bool:
    return len(text.encode("utf-8")) > limit


def _is_text(value: object) -> bool:
    """A string with a UTF-8 form: no lone surrogate."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _integer(text: str) -> int | Decimal:
    # Python's int() refuses more than 4300 digits; JSON has no such limit.
    return int(text) if len(text) < 4000 else Decimal(text)


def _below(value: Fraction) -> float:
    """The largest double not above `value`."""
    nearest = float(value)
    return math.nextafter(nearest, -math.inf) if Fraction(nearest) > value else nearest


def classify(
    value: bytes | None,
    max_field_bytes: int = MAX_FIELD_BYTES,
    record_time: float | None = None,
    max_ahead: float = MAX_AHEAD,
) -> dict | str:
    """The validated event as a dict with ``t`` and ``exact``, or the reason code.

    ``t`` is the event time as a double, ``exact`` the instant its text
    spells. `record_time` is the Kafka record's timestamp in seconds (None or
    0 or less: the record has none, and the rule does not apply).
    """
    if value is None:
        return "tombstone"
    if value == b"":
        return "empty_value"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_int=_integer)
    except (ValueError, RecursionError):
        return "invalid_json"
    if not isinstance(doc, dict):
        return "not_object"
    user = doc.get("user_id")
    if user is None:
        return "missing_field:user_id"
    if not _is_text(user):
        return "bad_type:user_id"
    if user == "":
        return "empty_field:user_id"
    if _too_long(user, max_field_bytes):
        return "too_long:user_id"
    ts = doc.get("timestamp")
    if ts is None:
        return "missing_field:timestamp"
    if type(ts) is bool:
        return "bad_type:timestamp"
    if isinstance(ts, str):
        if not _is_text(ts):
            return "bad_type:timestamp"
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", ts):
            return "bad_format:timestamp"
        exact: int | Fraction = Fraction(Decimal(ts))
    elif isinstance(ts, int):
        exact = ts
    elif isinstance(ts, Decimal):
        return "timestamp_out_of_range"  # an integer of 4000 digits or more
    elif isinstance(ts, float):
        if not math.isfinite(ts):
            return "timestamp_out_of_range"
        exact = Fraction(ts)
    else:
        return "bad_type:timestamp"
    if not (LOW <= exact < HIGH):
        return "timestamp_out_of_range"
    # A JSON number already is a double (or an integer one holds exactly).
    t = _below(Fraction(exact)) if isinstance(ts, str) else float(ts)
    event = {"t": t, "exact": exact, "user_id": user}
    for name in OPTIONAL:
        raw = doc.get(name)
        if raw is None or raw == "":
            event[name] = "unknown"
        elif _is_text(raw):
            if _too_long(raw, max_field_bytes):
                return f"too_long:{name}"
            event[name] = raw
        else:
            return f"bad_type:{name}"
    if record_time is not None and record_time > 0 and event["t"] - record_time > max_ahead:
        return "timestamp_ahead_of_record"
    return event


def iso(seconds: int) -> str:
    """``seconds`` since the epoch as the contract's UTC text, e.g. ``2024-01-01T00:00:00Z``."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Expected:
    """What a correct run over the whole input produces."""

    metrics: dict[MetricKey, int] = field(default_factory=dict)
    rejects: dict[tuple[int, int], str] = field(default_factory=dict)
    """(partition, offset) -> reason."""
    late: dict[tuple[int, int], str] = field(default_factory=dict)
    """(partition, offset) -> window_start ISO."""
    counted: int = 0


def expected_output(
    partitions: Mapping[int, Sequence[bytes | None]],
    window: int,
    lateness: float,
    slices: Slices = DEFAULT_SLICES,
    max_field_bytes: int = MAX_FIELD_BYTES,
    record_times: Mapping[int, Sequence[float | None]] | None = None,
    max_ahead: float = MAX_AHEAD,
) -> Expected:
    """Compute the exact answer for message values given per partition in offset order.

    `record_times`, beside `partitions`, holds each record's Kafka timestamp in seconds.
    """
    out = Expected()
    counts: dict[MetricKey, int] = defaultdict(int)
    for partition, values in partitions.items():
        front = -math.inf
        times: Sequence[float | None] = [None] * len(values) if record_times is None else record_times[partition]
        for offset, value in enumerate(values):
            event = classify(value, max_field_bytes, times[offset], max_ahead)
            if isinstance(event, str):
                out.rejects[(partition, offset)] = event
                continue
            start = event["exact"] // window * window
            if start + window <= front - lateness:
                out.late[(partition, offset)] = iso(start)
                continue
            front = max(front, event["t"])
            out.counted += 1
            for fields, _ in slices:
                counts[(iso(start), "+".join(fields), tuple(event[f] for f in fields))] += 1
    minimum = {"+".join(fields): low for fields, low in slices}
    out.metrics = {key: n for key, n in counts.items() if n >= minimum[key[1]]}
    return out


def metrics_from_records(values: Iterable[bytes | None]) -> dict[MetricKey, int]:
    """Decode login-metrics record values into the same shape as `Expected.metrics`.

    Every login-metrics record has a value: a missing one (a tombstone) is an error.
    """
    result: dict[MetricKey, int] = {}
    for raw in values:
        if raw is None:
            msg = "a login-metrics record without a value"
            raise ValueError(msg)
        record = json.loads(raw)
        key = (record["window_start"], record["slice"], tuple(record["key"][f] for f in record["slice"].split("+")))
        assert key not in result, f"emitted twice: {key}"
        result[key] = record["count"]
    return result
