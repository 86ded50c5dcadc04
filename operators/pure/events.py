r"""The input contract: turn one Kafka message value into a login event or a reason.

Parsing never raises. Every message becomes either a `LoginEvent` or a short
reason code (``invalid_json``, ``missing_field:timestamp``, ``bad_type:ip``...)
that travels with the original bytes to the dead-letter topic.

String fields are bounded (``too_long:<field>``): a key value travels in the
Kafka key and value of its login-metrics record, so an unbounded one could
make a record the broker refuses, and refusing it would stop the dataflow on
every resume.

orjson refuses two things JSON's grammar allows: a number beyond a double's
range (``1e400``) and an escaped lone surrogate (``"\ud800"``). Unknown
fields are ignored, so neither may reject a message from an extra field: only
what orjson refused is decoded again, with `jsonio.loads_wide`, and judged by
the same rules. A known field holding a lone surrogate is not a string
(``bad_type:<field>``): it has no UTF-8 form, so it could not travel in a
login-metrics record. ``1e400`` in `timestamp` is out of range.

A digit-string timestamp is read as the largest double not above its value,
rounded toward the past: so it lies in the second, the window and on the side
of every limit that its digits say (nearest rounding would put
``"1709251259.99999999999"`` in the next minute's window).

Nearly every message has one shape: a numeric timestamp in range, a user
and short, non-empty strings in the optional fields it has. An ASCII value
of that shape is decoded and validated in one C call by msgspec, straight
into the event's fields; it rejects anything else, and then the orjson path
decides alone. msgspec skips an unknown field's strings without checking their
UTF-8 or their depth, which is why only short ASCII values take that way.
"""

import math
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from operator import itemgetter
from typing import Annotated, Any, NamedTuple

import msgspec

from operators.pure import jsonio

OPTIONAL_FIELDS: tuple[str, ...] = ("app_version", "device_type", "ip", "locale", "device_id")
"""Fields that default to `UNKNOWN` when absent, null or empty."""

UNKNOWN = "unknown"

MIN_EVENT_TIME = 946_684_800.0
"""2000-01-01T00:00:00Z: earlier instants are rejected as out of range."""

MAX_EVENT_TIME = 4_102_444_800.0
"""2100-01-01T00:00:00Z: this instant and later ones are rejected."""

DEFAULT_MAX_FIELD_BYTES = 1024
"""The default bound on one string field, in UTF-8 bytes (MAX_FIELD_BYTES)."""

# A UTF-8 character takes at most 4 bytes, so a field of at most this many
# characters is within the byte limit without encoding it.
_MAX_UTF8_BYTES_PER_CHAR = 4

# ASCII digits only: `str.isdigit` and `\d` accept other scripts' digits,
# which `float` would then happily parse.
_TIMESTAMP_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


# The shape nearly every message has: all seven fields present, an integer
# timestamp and short, non-empty string values. A few C-level calls recognise
# it; anything else takes the general path, which decides alone.
_FIELDS_IN_EVENT_ORDER = itemgetter("timestamp", "user_id", *OPTIONAL_FIELDS)

# NamedTuple's generated __new__ runs Python code per call; building through
# tuple.__new__ gives the same LoginEvent at C speed on the hot path.
_new_event = tuple.__new__
_loads = jsonio.loads
_loads_wide = jsonio.loads_wide
_JSONDecodeError = jsonio.JSONDecodeError
new_raw_message = tuple.__new__


class RawMessage(NamedTuple):
    """One Kafka message as read, kept byte-exact for the DLQ and late topics."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int


class LoginEvent(NamedTuple):
    """A validated login. Field order after `event_time` matches `FIELDS`."""

    # Epoch seconds: a float, or an int of the same value from the orjson path.
    event_time: float
    user_id: str
    app_version: str
    device_type: str
    ip: str
    locale: str
    device_id: str


def parse_value(value: bytes | None, max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES) -> LoginEvent | str:
    """Validate one message value against the input contract.

    Returns the event, or the reason code for rejecting it.

    >>> parse_value(b'{"user_id": "u1", "timestamp": 1694479551}').device_type
    'unknown'
    >>> parse_value(b'{"user_id": "u1", "timestamp": true}')
    'bad_type:timestamp'
    """
    return make_parser(max_field_bytes)(value)


@cache
def make_parser(max_field_bytes: int) -> Callable[[bytes | None], LoginEvent | str]:
    """`parse_value` bound to one field limit, for `map` on the hot path."""
    decode = _common_shape_decoder(max_field_bytes)
    if decode is None:
        return _general_parser(max_field_bytes)

    def parse(value: bytes | None) -> LoginEvent | str:
        if value is not None and len(value) < _NEVER_TOO_DEEP_BYTES and value.isascii():
            try:
                return _new_event(LoginEvent, _astuple(decode(value)))
            except Exception:  # noqa: BLE001, S110 - not the common shape: the general path says why
                pass
        return _parse_general(value, max_field_bytes)

    return parse


def _general_parser(max_field_bytes: int) -> Callable[[bytes | None], LoginEvent | str]:
    """The orjson path alone, bound to one field limit."""

    def parse(value: bytes | None) -> LoginEvent | str:
        return _parse_general(value, max_field_bytes)

    return parse


_astuple = msgspec.structs.astuple

# orjson refuses nesting 1024 deep, which msgspec skips in an unknown field;
# a shorter value cannot nest that deep.
_NEVER_TOO_DEEP_BYTES = 2048


def _common_shape_decoder(max_field_bytes: int) -> Callable[[bytes], msgspec.Struct] | None:
    """A decoder of exactly the common shape, fields in `LoginEvent` order; None if no string could pass."""
    # Characters, not bytes: a \u escape in an ASCII value may stand for a
    # character of up to 4 UTF-8 bytes, so a quarter of the limit is safe.
    longest = max_field_bytes // _MAX_UTF8_BYTES_PER_CHAR
    if longest < 1:
        return None
    text = Annotated[str, msgspec.Meta(min_length=1, max_length=longest)]
    # A JSON number, integer or not, as a double: what the general path makes of it.
    seconds = Annotated[float, msgspec.Meta(ge=MIN_EVENT_TIME, lt=MAX_EVENT_TIME)]
    shape = msgspec.defstruct(
        "CommonShape",
        [
            ("event_time", seconds, msgspec.field(name="timestamp")),
            ("user_id", text),
            # Absent is `UNKNOWN`; null and empty are too, but by the general path.
            *((name, text, UNKNOWN) for name in OPTIONAL_FIELDS),
        ],
        gc=False,
    )
    return msgspec.json.Decoder(shape).decode


def _parse_general(value: bytes | None, max_field_bytes: int) -> LoginEvent | str:
    """The contract over orjson's document: decides alone every value msgspec's shape refused."""
    if value is None:
        return "tombstone"
    try:
        doc = _loads(value)
    except _JSONDecodeError:
        return _check_refused(value, max_field_bytes)
    try:
        fields = _FIELDS_IN_EVENT_ORDER(doc)
    except Exception:  # noqa: BLE001 - not an object, or a field missing: the general checks say which
        return _check_document(doc, max_field_bytes)
    event_time = fields[0]
    if type(event_time) is int and MIN_EVENT_TIME <= event_time < MAX_EVENT_TIME:
        try:
            # One C-level pass checks that all six are strings and sums their
            # lengths; within a quarter of the limit, no field can exceed it.
            joined = "".join(fields[1:])
        except TypeError:
            return _check_document(doc, max_field_bytes)
        if len(joined) * _MAX_UTF8_BYTES_PER_CHAR <= max_field_bytes and "" not in fields:
            return _new_event(LoginEvent, fields)
    return _check_document(doc, max_field_bytes)


def _too_long(text: str, max_field_bytes: int) -> bool:
    if len(text) * _MAX_UTF8_BYTES_PER_CHAR <= max_field_bytes:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > max_field_bytes


_KNOWN_FIELDS: tuple[str, ...] = ("user_id", "timestamp", *OPTIONAL_FIELDS)

# Python's json joins an escaped surrogate pair into one character, so any
# surrogate left in a decoded string was alone.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


# What only `loads_wide` decodes needs one of: a surrogate's escape, an
# exponent, or an integer part of 309 digits (the least beyond a double).
_WIDE_JSON = re.compile(rb"\\u[dD][89a-fA-F]|[0-9][eE]|[0-9]{309}")


class _NotAString:
    """Stands in for a known field's string that holds a lone surrogate."""


_NOT_A_STRING = _NotAString()


def _check_refused(value: bytes, max_field_bytes: int) -> LoginEvent | str:
    """Judge a value orjson refused: only JSON's own rules may reject it here."""
    if not value:
        return "empty_value"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    if not _WIDE_JSON.search(value):
        # Nothing orjson refuses but JSON allows, so its answer stands, and
        # plain garbage does not pay for a second decode.
        return "invalid_json"
    try:
        # A byte order mark is valid UTF-8 but not JSON: invalid_json.
        doc = _loads_wide(text)
    except ValueError:
        return "invalid_json"
    if isinstance(doc, dict):
        for name in _KNOWN_FIELDS:
            raw = doc.get(name)
            if type(raw) is str and _LONE_SURROGATE.search(raw):
                doc[name] = _NOT_A_STRING
    return _check_document(doc, max_field_bytes)


def _check_document(doc: Any, max_field_bytes: int) -> LoginEvent | str:
    """Every rule of the contract, one at a time: the fast path must agree with this."""
    if not isinstance(doc, dict):
        return "not_object"

    get = doc.get
    user_id = get("user_id")
    if type(user_id) is not str or not user_id:
        return _user_id_problem(user_id)
    if _too_long(user_id, max_field_bytes):
        return "too_long:user_id"

    event_time = parse_event_time(get("timestamp"))
    if isinstance(event_time, str):
        return event_time

    optional = _normalize_optional(tuple(map(get, OPTIONAL_FIELDS)), max_field_bytes)
    if isinstance(optional, str):
        return optional
    return _new_event(LoginEvent, (event_time, user_id, *optional))


def _user_id_problem(user_id: Any) -> str:
    if user_id is None:
        return "missing_field:user_id"
    if not isinstance(user_id, str):
        return "bad_type:user_id"
    return "empty_field:user_id"


def _normalize_optional(values: tuple[Any, ...], max_field_bytes: int) -> tuple[str, ...] | str:
    """Absent, null or empty becomes `UNKNOWN`; a non-string or an over-long string is the reject reason."""
    normalized: list[str] = []
    for name, raw in zip(OPTIONAL_FIELDS, values, strict=True):
        if raw is None or raw == "":
            normalized.append(UNKNOWN)
        elif isinstance(raw, str):
            if _too_long(raw, max_field_bytes):
                return f"too_long:{name}"
            normalized.append(raw)
        else:
            return f"bad_type:{name}"
    return tuple(normalized)


def parse_event_time(raw: Any) -> float | str:
    """Read epoch seconds from a JSON number or a string of digits.

    Returns the instant, or the reason code for rejecting it.
    """
    if raw is None:
        return "missing_field:timestamp"
    # bool is a subclass of int, so it must be ruled out first.
    if isinstance(raw, bool):
        return "bad_type:timestamp"
    if isinstance(raw, int):
        # Compare before converting: a huge JSON integer overflows float().
        if not MIN_EVENT_TIME <= raw < MAX_EVENT_TIME:
            return "timestamp_out_of_range"
        return float(raw)
    if isinstance(raw, float):
        seconds = raw
    elif isinstance(raw, str):
        if not _TIMESTAMP_TEXT.fullmatch(raw):
            return "bad_format:timestamp"
        seconds = _digits_to_seconds(raw)
    else:
        return "bad_type:timestamp"
    # Written so that NaN, which compares false to everything, is out of range.
    if not MIN_EVENT_TIME <= seconds < MAX_EVENT_TIME:
        return "timestamp_out_of_range"
    return seconds


def _digits_to_seconds(text: str) -> float:
    """The largest double not above the value of `text` (ASCII digits, maybe a fraction).

    `float` rounds to nearest, which can carry ``...59.99999999999`` up into
    the next second and so across a window boundary or the 2100 limit.
    """
    seconds = float(text)
    # Below MIN_EVENT_TIME or above MAX_EVENT_TIME, the digits are out of
    # range too (both are doubles): no need to look closer. An integer in
    # range is exact as a double.
    if MIN_EVENT_TIME <= seconds <= MAX_EVENT_TIME and "." in text and Decimal(seconds) > Decimal(text):
        return math.nextafter(seconds, -math.inf)
    return seconds
