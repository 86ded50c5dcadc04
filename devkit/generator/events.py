"""Generate take-home-shaped login events (JSON) for the loginflow dataflow.

The core is pure and deterministic: :func:`drafts` turns a :class:`GeneratorConfig`
into a stream of :class:`Draft` messages, :func:`stamp` fixes a draft's timestamp and
encodes it, and :func:`generate` does both for a whole run, so the same config and
seed always give a byte-identical stream. Kafka producing and file I/O live in
:mod:`devkit.generator.kafka`, the command line in :mod:`devkit.generator.cli`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import orjson

DEFAULT_START = 1709251200  # 2024-03-01T00:00:00Z: fixed so bulk runs are reproducible
MAX_BAD_SIZE_LIMIT = 1_000_000  # Kafka's default 1 MiB message limit minus headroom

APP_VERSIONS = ("2.3.0", "2.3.1", "2.4.0", "2.4.1", "2.5.0", "3.0.0")
DEVICE_TYPES = ("android", "iOS")
US_STATES = tuple(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO "
    "MT NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY".split()
)
BAD_KINDS = (
    "bad:invalid_json",
    "bad:not_object",
    "bad:empty",
    "bad:tombstone",
    "bad:invalid_utf8",
    "bad:missing_user_id",
    "bad:missing_timestamp",
    "bad:timestamp_bool",
    "bad:timestamp_out_of_range",
    "bad:wrong_type",
    "bad:empty_user_id",
    "bad:random_bytes",
)
# Byte sequences that no strict UTF-8 decoder accepts (lone continuation byte,
# bad 2-byte lead, encoded surrogate, overlong 5-byte form).
INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80")

# Timestamp encodings accepted by the input contract.
TS_INT, TS_FLOAT, TS_STR_INT, TS_STR_FLOAT = range(4)


@dataclass(frozen=True)
class GeneratorConfig:
    """All knobs of one generator run; see ``--help`` for their meaning."""

    count: int | None = 10_000  # None = endless (realtime mode only)
    rate: float = 0.0  # events/s; only shapes the simulated clock of realtime drafts here
    users: int = 1000
    devices_per_user: int = 2
    ips_per_user: int = 2
    missing_device_type: float = 0.03
    bad_fraction: float = 0.0
    max_bad_size: int = 4096
    late_fraction: float = 0.0
    late_by: float = 300.0
    partitions: int = 3
    skew: tuple[float, ...] = ()  # empty = equal weights
    jitter: float = 2.0
    start: float = DEFAULT_START
    span: float = 7200.0
    realtime: bool = False
    odd_timestamps: float = 0.05
    seed: int = 42

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(problem)

    def _problem(self) -> str | None:
        for name in ("missing_device_type", "bad_fraction", "late_fraction", "odd_timestamps"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                return f"{name} must be within [0, 1]"
        if self.count is None and not self.realtime:
            return "bulk mode needs a finite count"
        if self.count is not None and self.count < 0:
            return "count must be >= 0"
        if min(self.users, self.devices_per_user, self.ips_per_user, self.partitions) < 1:
            return "users, devices/IPs per user and partitions must be >= 1"
        if not 1 <= self.max_bad_size <= MAX_BAD_SIZE_LIMIT:
            return f"max_bad_size must be within [1, {MAX_BAD_SIZE_LIMIT}]"
        if self.skew and len(self.skew) != self.partitions:
            return "skew needs exactly one weight per partition"
        if self.skew and (min(self.skew) < 0 or sum(self.skew) <= 0):
            return "skew weights must be >= 0 with a positive sum"
        if self.span <= 0 or self.jitter < 0 or self.late_by < 0 or self.rate < 0:
            return "span must be > 0; jitter, late_by and rate must be >= 0"
        return None

    @property
    def weights(self) -> tuple[float, ...]:
        """Partition weights, equal unless ``skew`` is set."""
        return self.skew or (1.0,) * self.partitions


class GeneratedMessage(NamedTuple):
    """One Kafka message ready to produce to an explicit partition."""

    partition: int
    key: bytes | None
    value: bytes | None
    kind: str  # "ok", "late" or "bad:<what>"


class Draft(NamedTuple):
    """A message whose timestamp is not fixed yet.

    ``time`` is absolute in bulk mode and an offset from the send clock in realtime
    mode; None means ``body`` is final (or absent, then ``raw`` is the value).
    """

    partition: int
    key: bytes | None
    kind: str
    body: dict[str, Any] | None
    time: float | None
    ts_style: int
    raw: bytes | None = None
    mangle: Callable[[bytes], bytes] | None = None


class _User(NamedTuple):
    user_id: str
    key: bytes
    app_version: str
    locale: str
    devices: tuple[tuple[str, str], ...]  # (device_id, device_type): a device keeps its OS
    ips: tuple[str, ...]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ip(rng: random.Random) -> str:
    first = rng.choice([o for o in range(1, 224) if o not in (10, 127)])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _user_pool(rng: random.Random, config: GeneratorConfig) -> list[_User]:
    pool = []
    for _ in range(config.users):
        user_id = _uuid(rng)
        devices = tuple((_uuid(rng), rng.choice(DEVICE_TYPES)) for _ in range(config.devices_per_user))
        ips = tuple(_ip(rng) for _ in range(config.ips_per_user))
        pool.append(_User(user_id, user_id.encode(), rng.choice(APP_VERSIONS), rng.choice(US_STATES), devices, ips))
    return pool


def split_count(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` proportionally to ``weights`` (largest remainder, sums exactly)."""
    norm = sum(weights)
    shares = [total * w / norm for w in weights]
    counts = [math.floor(s) for s in shares]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - shares[i], i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _bulk_slots(config: GeneratorConfig, rng: random.Random) -> Iterator[tuple[int, float]]:
    """(partition, event time) pairs merged across partitions by nominal event time.

    Every partition spreads its own count evenly over the same span, so weight only
    changes density; jitter pulls events a little earlier, never before ``start``.
    """
    counts = split_count(config.count or 0, config.weights)
    start, span, jitter = config.start, config.span, config.jitter
    # (nominal time, partition, index); nominal = centre of the event's 1/n slice.
    heap = [(start + span * 0.5 / n, p, 0) for p, n in enumerate(counts) if n]
    heapq.heapify(heap)
    while heap:
        nominal, p, j = heap[0]
        if j + 1 < counts[p]:
            heapq.heapreplace(heap, (start + span * (j + 1.5) / counts[p], p, j + 1))
        else:
            heapq.heappop(heap)
        yield p, max(start, nominal - rng.random() * jitter)


def _realtime_slots(config: GeneratorConfig, rng: random.Random) -> Iterator[tuple[int, float]]:
    cum = list(itertools.accumulate(config.weights))
    parts = range(config.partitions)
    n = 0
    while config.count is None or n < config.count:
        n += 1
        yield rng.choices(parts, cum_weights=cum)[0], -rng.random() * config.jitter


def drafts(config: GeneratorConfig) -> Iterator[Draft]:
    """Yield the deterministic message stream of a run, timestamps not yet encoded."""
    rng = random.Random(config.seed)
    pool = _user_pool(rng, config)
    slots = _realtime_slots(config, rng) if config.realtime else _bulk_slots(config, rng)
    # Bound method and int(random() * n) instead of randrange: this is the hot loop.
    rand = rng.random
    n_users, late_by, missing, odd = len(pool), config.late_by, config.missing_device_type, config.odd_timestamps
    bad, late = config.bad_fraction, config.late_fraction
    for partition, t in slots:
        user = pool[int(rand() * n_users)]
        device_id, device_type = user.devices[int(rand() * len(user.devices))]
        ip = user.ips[int(rand() * len(user.ips))]
        if rand() >= missing:
            body = {
                "user_id": user.user_id,
                "app_version": user.app_version,
                "device_type": device_type,
                "ip": ip,
                "locale": user.locale,
                "device_id": device_id,
            }
        else:
            body = {
                "user_id": user.user_id,
                "app_version": user.app_version,
                "ip": ip,
                "locale": user.locale,
                "device_id": device_id,
            }
        style = TS_INT if rand() >= odd else 1 + int(rand() * 3)
        if rand() < bad:
            yield _bad(rng, config, Draft(partition, user.key, "", body, t, style))
        elif rand() < late:
            yield Draft(partition, user.key, "late", body, t - late_by, style)
        else:
            yield Draft(partition, user.key, "ok", body, t, style)


def _truncate(value: bytes, frac: float) -> bytes:
    # Cutting a JSON object anywhere before its last byte leaves it unbalanced.
    return value[: max(1, int(len(value) * frac))]


def _append_field(value: bytes, raw_string: bytes) -> bytes:
    return value[:-1] + b',"comment":"' + raw_string + b'"}'


def _wrap_array(value: bytes) -> bytes:
    return b"[" + value + b"]"


def _double_encode(value: bytes) -> bytes:
    return orjson.dumps(value.decode())


_WRONG_TYPES: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = (
    ("ip", lambda b: int(b["ip"].replace(".", ""))),
    ("locale", lambda b: {"code": b["locale"]}),
    ("app_version", lambda b: [int(x) for x in b["app_version"].split(".")]),
    ("device_type", lambda b: 1),
    ("device_id", lambda b: True),
)


def _bad(rng: random.Random, config: GeneratorConfig, d: Draft) -> Draft:
    """Turn a valid draft into one of :data:`BAD_KINDS`."""
    kind = rng.choice(BAD_KINDS)
    d = d._replace(kind=kind)
    body = dict(d.body or {})
    if kind == "bad:invalid_json":
        return d._replace(mangle=partial(_truncate, frac=rng.uniform(0.05, 0.95)))
    if kind == "bad:not_object":
        shape = rng.randrange(3)
        if shape == 2:
            return d._replace(key=None, body=None, raw=str(rng.randrange(10**10)).encode())
        return d._replace(mangle=_wrap_array if shape == 0 else _double_encode)
    if kind == "bad:empty":
        return d._replace(body=None, raw=b"")
    if kind == "bad:tombstone":
        return d._replace(body=None, raw=None)
    if kind == "bad:invalid_utf8":
        return d._replace(mangle=partial(_append_field, raw_string=b"x" + rng.choice(INVALID_UTF8)))
    if kind == "bad:missing_user_id":
        del body["user_id"]
        return d._replace(key=None, body=body)
    if kind in ("bad:missing_timestamp", "bad:timestamp_bool", "bad:timestamp_out_of_range"):
        if kind == "bad:timestamp_bool":
            body["timestamp"] = rng.random() < 0.5
        elif kind == "bad:timestamp_out_of_range":
            body["timestamp"] = rng.choice(
                (
                    int(config.start * 1000) + rng.randrange(10**6),  # milliseconds, not seconds
                    1e12,
                    -rng.randrange(1, 10**9),
                    631152000 + rng.randrange(365 * 86400),  # somewhere in 1990
                )
            )
        return d._replace(body=body, time=None)
    if kind == "bad:wrong_type":
        name, make = rng.choice(_WRONG_TYPES)
        body[name] = make(body)
        return d._replace(body=body)
    if kind == "bad:empty_user_id":
        body["user_id"] = ""
        return d._replace(key=b"", body=body)
    # bad:random_bytes: log-uniform size so most are small but some approach the max.
    size = max(1, int(math.exp(rng.uniform(0.0, math.log(config.max_bad_size)))))
    # A leading byte >= 0x80 can never start a JSON document.
    raw = bytes([rng.randrange(0x80, 0x100)]) + rng.randbytes(size - 1)
    return d._replace(key=None, body=None, raw=raw)


def format_timestamp(t: float, style: int) -> int | float | str:
    """Encode epoch seconds as a JSON int, float with a fraction, or digit string."""
    if style == TS_INT:
        return math.floor(t)
    if style == TS_STR_INT:
        return str(math.floor(t))
    # Truncate (not round) to milliseconds so the second never changes.
    frac = math.floor(t * 1000) / 1000
    if frac == math.floor(frac):
        frac += 0.5
    return frac if style == TS_FLOAT else repr(frac)


def stamp(d: Draft, clock: float = 0.0) -> GeneratedMessage:
    """Fix a draft's timestamp at ``clock + d.time`` and encode it."""
    if d.body is None:
        return GeneratedMessage(d.partition, d.key, d.raw, d.kind)
    body = d.body if d.time is None else {**d.body, "timestamp": format_timestamp(clock + d.time, d.ts_style)}
    value = orjson.dumps(body)
    if d.mangle is not None:
        value = d.mangle(value)
    return GeneratedMessage(d.partition, d.key, value, d.kind)


def generate(config: GeneratorConfig) -> Iterator[GeneratedMessage]:
    """Yield the fully encoded, deterministic stream of a run.

    Realtime configs are stamped with a simulated send clock (``start + i / rate``),
    which keeps this function pure; the live producer stamps with wall-clock time.
    """
    if not config.realtime:
        yield from map(stamp, drafts(config))
        return
    step = 1.0 / config.rate if config.rate > 0 else 0.0
    for i, d in enumerate(drafts(config)):
        yield stamp(d, config.start + i * step)


def summarize(messages: Iterable[GeneratedMessage]) -> dict[str, int]:
    """Count messages per kind."""
    return dict(Counter(m.kind for m in messages))


def kind_totals(kinds: dict[str, int]) -> dict[str, int]:
    """Collapse per-kind counts to ok/late/bad."""
    bad = sum(n for k, n in kinds.items() if k.startswith("bad:"))
    return {"ok": kinds.get("ok", 0), "late": kinds.get("late", 0), "bad": bad}
