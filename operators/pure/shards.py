"""Routing counts to shards: one item per shard per read batch, not one per event.

Each read batch is pre-aggregated into per-shard partial counts, so the
runtime exchanges one item per shard per batch instead of one per event. A
shard is one slice times a hash bucket of its key values. Each update carries
its partition's watermark and progress (`operators.pure.partition`) beside the
counts, and a fingerprint of the settings that decide routing or any other
decision, so a process started with other settings is caught by the first
shard it writes to.
"""

import marshal
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Callable, NamedTuple

from operators.pure.partition import PartitionBatch
from operators.pure.slices import FIELDS, SliceSpec

KeyValues = tuple[str, ...]

SettingValue = str | int | float | bool | None

Decisions = tuple[tuple[str, SettingValue, bool], ...]
"""(SETTING_NAME, value, whether it is fixed across a resume), one per setting that decides something."""


WindowCounts = dict[int, dict[KeyValues, int]]
"""window_start -> key values -> count."""


class ConfigFingerprint(NamedTuple):
    """What every process must agree on; each field is named after its setting.

    Carried on every shard update, so a process started with other settings
    is caught by the first shard it writes to, whichever process holds it.
    `decisions` holds the settings that decide what is counted, rejected,
    late, let go of or keyed how (`Settings.decisions`).
    """

    slices: str
    window_seconds: int
    shards_per_slice: int
    routing_scheme: int
    decisions: Decisions = ()

    @classmethod
    def of(
        cls, slices: Sequence[SliceSpec], window_seconds: int, buckets: int, decisions: Decisions = ()
    ) -> "ConfigFingerprint":
        """The fingerprint of this version's routing with these settings."""
        text = ",".join(f"{spec.name}:{spec.min_count}" for spec in slices)
        return cls(text, window_seconds, buckets, ROUTING_VERSION, decisions)

    def settings(self) -> dict[str, SettingValue]:
        """Every value this fingerprint holds, by its setting's name."""
        routing: dict[str, SettingValue] = {
            name.upper(): value  # type: ignore[misc]  # the four routing fields are str or int
            for name, value in zip(self._fields[:4], self[:4], strict=True)
        }
        return routing | {name: value for name, value, _fixed in self.decisions}

    def mismatch(self, other: "ConfigFingerprint") -> str | None:
        """A message naming the first setting that differs in `other`, or None."""
        theirs = other.settings()
        for name, value in self.settings().items():
            if theirs.get(name) != value:
                return (
                    f"{name}: the processes of this dataflow disagree: {show_setting(name, value)} here, "
                    f"{show_setting(name, theirs.get(name))} in the process that sent a count; "
                    "start every process with the same settings"
                )
        return None


def show_setting(name: str, value: SettingValue) -> str:
    """A setting's value for a message; a secret shows only its digest's first characters."""
    if name == "PSEUDONYMIZE_KEY":
        return f"a key with digest {value}" if value else "no key"
    return repr(value)


class ConfigMismatchError(ValueError):
    """Two processes of one dataflow run with settings that route keys or windows differently."""


class ShardUpdate(NamedTuple):
    """One batch's contribution to one shard: counts plus the partition's progress."""

    slice_index: int
    partition: int
    partition_count: int
    # The partition's watermark (from its log) and progress (what it lets close).
    watermark: float
    progress: float
    counts: WindowCounts
    fingerprint: ConfigFingerprint

    def __reduce__(self) -> tuple[Callable[[bytes], "ShardUpdate"], tuple[bytes]]:
        """Cross processes as one `marshal` blob: 3x cheaper to write than pickle's per-object opcodes.

        Everything in an update is a builtin marshal handles (ints, floats,
        strings, tuples, dicts), and both ends run the same interpreter.
        """
        plain = (*self[:6], tuple(self.fingerprint))
        return _update_from_wire, (marshal.dumps(plain),)  # type: ignore[arg-type]  # builtins all the way down


def _update_from_wire(blob: bytes) -> ShardUpdate:
    fields = marshal.loads(blob)  # noqa: S302 - written by another process of this dataflow
    return ShardUpdate._make((*fields[:6], ConfigFingerprint._make(fields[6])))


ROUTING_PREFERENCE: tuple[str, ...] = ("user_id", "device_id", "ip", "locale", "app_version", "device_type")
"""Fields by how many distinct values they usually have, most first."""

HIGH_CARDINALITY = frozenset(ROUTING_PREFERENCE[:3])
"""Fields whose keys rarely repeat within one read batch."""

ROUTING_VERSION = 2
"""Bumped whenever a key would land in a different shard than before."""


def shard_key(spec: SliceSpec, bucket: int) -> str:
    """The state key of one shard: ``user_id+ip#3``."""
    return f"{spec.name}#{bucket}"


def key_getter(spec: SliceSpec) -> Callable[[tuple], KeyValues]:
    """A fast function from `LoginEvent` to the slice's key values, always a tuple."""
    # LoginEvent holds event_time first, then the fields in FIELDS order.
    indexes = [FIELDS.index(name) + 1 for name in spec.fields]
    if len(indexes) == 1:
        only = indexes[0]
        return lambda event: (event[only],)
    getter: Callable[[tuple], KeyValues] = itemgetter(*indexes)
    return getter


def routing_index(spec: SliceSpec) -> int:
    """Which of the slice's key values chooses its shard.

    Its most selective field: the two user slices then share one hash per
    user, and a slice keyed by user spreads over every shard even when its
    other fields have three values.
    """
    best = min(spec.fields, key=ROUTING_PREFERENCE.index)
    return spec.fields.index(best)


def bucket_of(value: str, buckets: int) -> int:
    """A hash bucket stable across processes (Python's own `hash` is salted)."""
    return zlib.crc32(value.encode()) % buckets


def shard_of(spec: SliceSpec, values: KeyValues, buckets: int) -> str:
    """The shard that holds `values` of `spec`."""
    return shard_key(spec, bucket_of(values[routing_index(spec)], buckets))


_event_time = itemgetter(0)


class ShardCounter:
    """Splits a partition batch into per-shard updates. Used as a `flat_map`."""

    def __init__(
        self, slices: tuple[SliceSpec, ...], window_seconds: int, buckets: int, decisions: Decisions = ()
    ) -> None:
        """Count `slices` in tumbling windows of `window_seconds`, `buckets` shards each."""
        self.slices = slices
        self.window_seconds = window_seconds
        self.buckets = buckets
        self._getters = [key_getter(spec) for spec in slices]
        self._routing = [routing_index(spec) for spec in slices]
        self._mostly_distinct = [
            spec.fields[index] in HIGH_CARDINALITY for spec, index in zip(slices, self._routing, strict=True)
        ]
        self._shard_keys = [[shard_key(spec, bucket) for bucket in range(buckets)] for spec in slices]
        self.fingerprint = ConfigFingerprint.of(slices, window_seconds, buckets, decisions)

    def __call__(self, batch: PartitionBatch) -> list[tuple[str, ShardUpdate]]:
        """Count `batch` per (slice, window, key) and route it to shards.

        Every shard hears of a progress change, even without counts, because
        a shard can only close windows once it has heard from every partition.
        """
        window = self.window_seconds
        buckets = self.buckets
        events = batch.events
        starts = batch.starts
        if starts is None:
            starts = [int(time // window) * window for time in map(_event_time, events)]
        # Routing values repeat across slices (user_id) and events: hash each once per batch.
        bucket_cache: dict[str, int] = {}
        updates: list[tuple[str, ShardUpdate]] = []
        for slice_index, getter in enumerate(self._getters):
            routing = self._routing[slice_index]
            per_bucket: list[WindowCounts] = [{} for _ in range(buckets)]
            if self._mostly_distinct[slice_index]:
                # About one event per key and batch: counting first would only
                # add a pass, so add each event to its shard's counts directly.
                keyed: Iterable[tuple[tuple[int, KeyValues], int]] = zip(
                    zip(starts, map(getter, events), strict=True), repeat(1)
                )
            else:
                keyed = Counter(zip(starts, map(getter, events), strict=True)).items()
            for (start, values), count in keyed:
                routed_by = values[routing]
                bucket = bucket_cache.get(routed_by)
                if bucket is None:
                    bucket = bucket_cache[routed_by] = bucket_of(routed_by, buckets)
                windows = per_bucket[bucket]
                keys = windows.get(start)
                if keys is None:
                    keys = windows[start] = {}
                keys[values] = keys.get(values, 0) + count
            shard_keys = self._shard_keys[slice_index]
            for bucket, counts in enumerate(per_bucket):
                if not counts and not batch.progressed:
                    continue
                update = ShardUpdate(
                    slice_index,
                    batch.partition,
                    batch.partition_count,
                    # A shard's watermarks only decide what is final.
                    batch.watermark if batch.settled is None else batch.settled,
                    batch.progress,
                    counts,
                    self.fingerprint,
                )
                updates.append((shard_keys[bucket], update))
        return updates
