"""Every setting loginflow reads, parsed and checked in one place.

Each field's comment names the environment variable that sets it; the README's
settings table lists the same names. A bad value raises `ConfigError` naming the
variable, before any Kafka client is built.
"""

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from operators.pure.encoding import Pseudonymizer
from operators.pure.events import DEFAULT_MAX_FIELD_BYTES
from operators.pure.partition import DEFAULT_MAX_AHEAD_OF_RECORD_SECONDS
from operators.pure.shards import Decisions
from operators.pure.sizes import PRODUCER_MAX_MESSAGE_BYTES, oversized_metric, record_budget
from operators.pure.slices import FIELDS, SliceSpec
from operators.pure.window_shard import DEFAULT_MAX_WINDOWS
from operators.runtime.logs import LOG_FORMATS

DEFAULT_SLICES = "user_id+device_id:2,user_id+ip:2,app_version+locale:1,app_version+device_type:1"

StartOffset = Literal["earliest", "latest"]

PROCESSING_GUARANTEES = ("at-least-once", "exactly-once")

TRANSACTIONAL_ID_PREFIX_BASE = "loginflow"
"""The readable start of a derived prefix, and the whole prefix loginflow used before it derived one."""


class ConfigError(ValueError):
    """A setting has a value loginflow cannot run with."""


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one dataflow process."""

    # KAFKA_BROKERS: comma-separated bootstrap servers.
    brokers: str = "localhost:9092"
    # INPUT_TOPIC
    input_topic: str = "user-login"
    # OUTPUT_TOPIC
    output_topic: str = "login-metrics"
    # DLQ_TOPIC: rejected messages, original bytes plus an `error` header.
    dlq_topic: str = "user-login-dlq"
    # LATE_TOPIC: events whose window may already have been emitted.
    late_topic: str = "user-login-late"
    # WINDOW_SECONDS: tumbling window length, aligned to the Unix epoch.
    window_seconds: int = 60
    # ALLOWED_LATENESS_SECONDS: how far behind its partition's event-time front
    # an event may arrive and still count.
    allowed_lateness_seconds: float = 10.0
    # MAX_AHEAD_OF_RECORD_SECONDS: how far an event time may be ahead of its
    # Kafka record's timestamp; further is `timestamp_ahead_of_record`.
    max_ahead_of_record_seconds: float = DEFAULT_MAX_AHEAD_OF_RECORD_SECONDS
    # MAX_WINDOWS_PER_SHARD: open plus revisable windows one shard keeps; the
    # oldest beyond it are let go (`window_let_go` on the DLQ for later counts).
    max_windows_per_shard: int = DEFAULT_MAX_WINDOWS
    # SLICES: fields joined by `+`, each with `:min_count`, comma-separated.
    slices: tuple[SliceSpec, ...] = field(default_factory=lambda: parse_slices(DEFAULT_SLICES))
    # STOP_AT_END: stop once every input partition is read to its end.
    stop_at_end: bool = False
    # START_OFFSET: where to start when there is no recovery state.
    start_offset: StartOffset = "earliest"
    # SHARDS_PER_SLICE: state keys per slice; more spreads work over more workers.
    shards_per_slice: int = 4
    # BATCH_SIZE: most messages read from one partition in one step.
    batch_size: int = 5000
    # MAX_FIELD_BYTES: longest string field accepted, in UTF-8 bytes; longer is `too_long:<field>`.
    # Bounded so that a login-metrics record fits the producer, and checked at
    # the start against OUTPUT_TOPIC's max.message.bytes.
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES
    # OUTPUT_RETENTION_HOURS: retention.ms of login-metrics when loginflow creates it.
    output_retention_hours: int = 168
    # PROCESSING_GUARANTEE: at-least-once, or exactly-once (transactional outputs, committed each epoch).
    processing_guarantee: str = "at-least-once"
    # TRANSACTIONAL_ID_PREFIX: transactional.id is <prefix>-<topic>-<partition> with exactly-once.
    # Unset (empty here): `derived_transactional_id_prefix` of the four topic names.
    transactional_id_prefix: str = ""
    # LOG_LEVEL
    log_level: str = "INFO"
    # LOG_FORMAT: kv (key=value lines) or json (one object per line).
    log_format: str = "kv"
    # PSEUDONYMIZE: fields whose values login-metrics carries as keyed HMACs.
    pseudonymize: frozenset[str] = frozenset()
    # PSEUDONYMIZE_KEY: the HMAC secret; required when PSEUDONYMIZE is set.
    pseudonymize_key: bytes = field(default=b"", repr=False)
    # KAFKA_PROP_*: librdkafka properties for every client,
    # KAFKA_PROP_SECURITY_PROTOCOL -> security.protocol.
    kafka_props: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold passwords

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from environment variables (``os.environ`` by default)."""
        if env is None:
            env = os.environ
        defaults = cls()
        settings = cls(
            brokers=_non_empty(env, "KAFKA_BROKERS", defaults.brokers),
            input_topic=_non_empty(env, "INPUT_TOPIC", defaults.input_topic),
            output_topic=_non_empty(env, "OUTPUT_TOPIC", defaults.output_topic),
            dlq_topic=_non_empty(env, "DLQ_TOPIC", defaults.dlq_topic),
            late_topic=_non_empty(env, "LATE_TOPIC", defaults.late_topic),
            window_seconds=_positive_int(env, "WINDOW_SECONDS", defaults.window_seconds),
            allowed_lateness_seconds=_non_negative_float(
                env, "ALLOWED_LATENESS_SECONDS", defaults.allowed_lateness_seconds
            ),
            max_ahead_of_record_seconds=_non_negative_float(
                env, "MAX_AHEAD_OF_RECORD_SECONDS", defaults.max_ahead_of_record_seconds
            ),
            max_windows_per_shard=_positive_int(env, "MAX_WINDOWS_PER_SHARD", defaults.max_windows_per_shard),
            slices=_slices(env),
            stop_at_end=_bool(env, "STOP_AT_END", defaults.stop_at_end),
            start_offset=_start_offset(env),
            shards_per_slice=_positive_int(env, "SHARDS_PER_SLICE", defaults.shards_per_slice),
            batch_size=_positive_int(env, "BATCH_SIZE", defaults.batch_size),
            max_field_bytes=_positive_int(env, "MAX_FIELD_BYTES", defaults.max_field_bytes),
            output_retention_hours=_positive_int(env, "OUTPUT_RETENTION_HOURS", defaults.output_retention_hours),
            processing_guarantee=_choice(
                env, "PROCESSING_GUARANTEE", PROCESSING_GUARANTEES, defaults.processing_guarantee
            ),
            transactional_id_prefix=_optional_non_empty(env, "TRANSACTIONAL_ID_PREFIX"),
            log_level=_log_level(env),
            log_format=_choice(env, "LOG_FORMAT", LOG_FORMATS, defaults.log_format),
            pseudonymize=_pseudonymize(env),
            pseudonymize_key=_pseudonymize_key(env),
            kafka_props=kafka_props_from_env(env),
        )
        _check_metric_size(settings)
        return settings

    def __post_init__(self) -> None:
        """Derive the transactional id prefix when none is given, so every process of a dataflow has the same."""
        if not self.transactional_id_prefix:
            derived = derived_transactional_id_prefix(
                self.input_topic, self.output_topic, self.dlq_topic, self.late_topic
            )
            # The documented way to set a field of a frozen dataclass while it is built.
            object.__setattr__(self, "transactional_id_prefix", derived)

    @property
    def transactional_id_prefix_is_derived(self) -> bool:
        """Whether the prefix came from the topic names rather than TRANSACTIONAL_ID_PREFIX."""
        topics = (self.input_topic, self.output_topic, self.dlq_topic, self.late_topic)
        return self.transactional_id_prefix == derived_transactional_id_prefix(*topics)

    @property
    def exactly_once(self) -> bool:
        """Whether outputs are written in transactions committed at each epoch."""
        return self.processing_guarantee == "exactly-once"

    def decisions(self) -> Decisions:
        """The settings every process must agree on beyond routing, and whether a resume may change each.

        Fixed across a resume: what decides whether a replayed message counts,
        is rejected or is late, and how a key is written. Changing one under
        recovery state could leave a message counted by one run and rejected
        by the next. Topics, the memory bound and bounded-or-tail may change
        across a resume (docs/operations.md says why), but two processes of
        one run must still agree on them.
        """
        key_digest = ""
        if self.pseudonymize_key:
            key_digest = hmac.new(self.pseudonymize_key, b"loginflow settings", hashlib.sha256).hexdigest()[:12]
        return (
            ("ALLOWED_LATENESS_SECONDS", self.allowed_lateness_seconds, True),
            ("MAX_AHEAD_OF_RECORD_SECONDS", self.max_ahead_of_record_seconds, True),
            ("MAX_FIELD_BYTES", self.max_field_bytes, True),
            ("PSEUDONYMIZE", ",".join(sorted(self.pseudonymize)), True),
            ("PSEUDONYMIZE_KEY", key_digest, True),
            ("PROCESSING_GUARANTEE", self.processing_guarantee, True),
            ("STOP_AT_END", self.stop_at_end, False),
            ("MAX_WINDOWS_PER_SHARD", self.max_windows_per_shard, False),
            ("INPUT_TOPIC", self.input_topic, False),
            ("OUTPUT_TOPIC", self.output_topic, False),
            ("DLQ_TOPIC", self.dlq_topic, False),
            ("LATE_TOPIC", self.late_topic, False),
            ("TRANSACTIONAL_ID_PREFIX", self.transactional_id_prefix, False),
        )

    def pseudonymizer(self) -> Pseudonymizer | None:
        """What replaces the PSEUDONYMIZE fields in login-metrics, if any are listed."""
        if not self.pseudonymize:
            return None
        return Pseudonymizer(self.pseudonymize, self.pseudonymize_key)

    def kafka_config(self) -> dict[str, str]:
        """The librdkafka settings every client starts from."""
        return {"bootstrap.servers": self.brokers, **self.kafka_props}


def derived_transactional_id_prefix(input_topic: str, output_topic: str, dlq_topic: str, late_topic: str) -> str:
    """`loginflow-` and a digest of the topics a dataflow reads and writes.

    Two dataflows that differ in any of the four topics get different
    transactional ids, so they cannot fence each other by accident, while every
    process and every restart of one dataflow computes the same prefix. The
    readable start keeps ids recognisable, and a PREFIXED `loginflow` ACL on
    transactional ids still covers them.

    >>> derived_transactional_id_prefix("user-login", "login-metrics", "user-login-dlq", "user-login-late")
    'loginflow-56e2fcab55'
    """
    # Named fields, newline-separated: Kafka topic names never contain "=" or a newline.
    text = "\n".join(
        f"{name}={topic}"
        for name, topic in (("input", input_topic), ("output", output_topic), ("dlq", dlq_topic), ("late", late_topic))
    )
    return f"{TRANSACTIONAL_ID_PREFIX_BASE}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def parse_slices(text: str) -> tuple[SliceSpec, ...]:
    """Parse ``user_id+ip:2,app_version+locale:1`` into slice specs.

    >>> parse_slices("user_id+ip:2")
    (SliceSpec(fields=('user_id', 'ip'), min_count=2),)
    """
    specs: list[SliceSpec] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        names, sep, count_text = item.partition(":")
        if not sep:
            msg = f"SLICES: {item!r} has no ':min_count' (e.g. 'user_id+ip:2')"
            raise ConfigError(msg)
        fields = tuple(name.strip() for name in names.split("+"))
        unknown = [name for name in fields if name not in FIELDS]
        if unknown:
            msg = f"SLICES: unknown field {unknown[0]!r} in {item!r}; known fields: {', '.join(FIELDS)}"
            raise ConfigError(msg)
        if len(set(fields)) != len(fields):
            msg = f"SLICES: {item!r} names a field twice"
            raise ConfigError(msg)
        try:
            min_count = int(count_text)
        except ValueError:
            min_count = 0
        if min_count < 1:
            msg = f"SLICES: min_count in {item!r} must be a positive integer"
            raise ConfigError(msg)
        specs.append(SliceSpec(fields, min_count))
    if not specs:
        msg = "SLICES: at least one slice is required"
        raise ConfigError(msg)
    # `ip+user_id` counts exactly what `user_id+ip` counts.
    field_sets = [frozenset(spec.fields) for spec in specs]
    if len(set(field_sets)) != len(field_sets):
        msg = "SLICES: the same combination of fields is listed twice"
        raise ConfigError(msg)
    return tuple(specs)


def _check_metric_size(settings: Settings) -> None:
    # No topic setting can take a record the producer itself refuses.
    budget = record_budget(PRODUCER_MAX_MESSAGE_BYTES)
    oversized = oversized_metric(settings.slices, settings.max_field_bytes, budget, settings.pseudonymizer())
    if oversized is not None:
        largest, bound = oversized
        msg = (
            f"MAX_FIELD_BYTES: {settings.max_field_bytes} lets a login-metrics record reach {largest} bytes, "
            f"more than the {PRODUCER_MAX_MESSAGE_BYTES} a producer sends; with these SLICES it must be "
            f"at most {bound}"
        )
        raise ConfigError(msg)


def _non_empty(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).strip()
    if not value:
        msg = f"{name}: must not be empty"
        raise ConfigError(msg)
    return value


def _optional_non_empty(env: Mapping[str, str], name: str) -> str:
    """The stripped value, or "" when unset; set but blank is an error."""
    if name not in env:
        return ""
    return _non_empty(env, name, "")


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"{name}: must be a positive integer, got {text!r}"
        raise ConfigError(msg)
    return value


def _non_negative_float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        msg = f"{name}: must be a non-negative number of seconds, got {text!r}"
        raise ConfigError(msg)
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name)
    if text is None:
        return default
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    msg = f"{name}: must be true or false, got {text!r}"
    raise ConfigError(msg)


def _slices(env: Mapping[str, str]) -> tuple[SliceSpec, ...]:
    return parse_slices(env.get("SLICES", DEFAULT_SLICES))


def _start_offset(env: Mapping[str, str]) -> StartOffset:
    text = env.get("START_OFFSET", "earliest").strip().lower()
    if text == "earliest":
        return "earliest"
    if text == "latest":
        return "latest"
    msg = f"START_OFFSET: must be 'earliest' or 'latest', got {text!r}"
    raise ConfigError(msg)


def _log_level(env: Mapping[str, str]) -> str:
    text = env.get("LOG_LEVEL", "INFO").strip().upper()
    if not isinstance(logging.getLevelName(text), int):
        msg = f"LOG_LEVEL: unknown level {text!r}"
        raise ConfigError(msg)
    return text


def kafka_props_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The librdkafka properties set by ``KAFKA_PROP_*`` variables (shared with the tools)."""
    prefix = "KAFKA_PROP_"
    props = {}
    for name, value in env.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            props[name[len(prefix) :].lower().replace("_", ".")] = value
    return props


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    text = env.get(name, default).strip().lower()
    if text not in allowed:
        msg = f"{name}: must be one of {', '.join(allowed)}, got {text!r}"
        raise ConfigError(msg)
    return text


def _pseudonymize(env: Mapping[str, str]) -> frozenset[str]:
    names = frozenset(name.strip() for name in env.get("PSEUDONYMIZE", "").split(",") if name.strip())
    unknown = sorted(names - set(FIELDS))
    if unknown:
        msg = f"PSEUDONYMIZE: unknown field {unknown[0]!r}; known fields: {', '.join(FIELDS)}"
        raise ConfigError(msg)
    return names


def _pseudonymize_key(env: Mapping[str, str]) -> bytes:
    key = env.get("PSEUDONYMIZE_KEY", "")
    if env.get("PSEUDONYMIZE", "").strip() and len(key) < 16:
        msg = "PSEUDONYMIZE_KEY: required with PSEUDONYMIZE, at least 16 characters"
        raise ConfigError(msg)
    return key.encode()
