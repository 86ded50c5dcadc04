"""The msgspec fast path of `operators.pure.events` against the contract's general path.

The fast path decides a value only when msgspec accepts it as the common
shape; whatever it accepts must get exactly the answer the orjson path gives.
The property builds documents near that shape, with the corners where JSON
decoders differ: bytes that are not UTF-8 or not JSON inside fields the
shape skips, escapes, surrogates, numbers orjson refuses, duplicated keys,
deep nesting, then mutates single bytes.
"""

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from operators.pure import events, jsonio
from operators.pure.events import LoginEvent, make_parser

T = 1_709_251_200
FIELDS = ("timestamp", "user_id", *events.OPTIONAL_FIELDS)


def general_path(value: bytes | None, max_field_bytes: int) -> LoginEvent | str:
    """The contract checked one rule at a time, with neither fast path."""
    if value is None:
        return "tombstone"
    try:
        doc = jsonio.loads(value)
    except jsonio.JSONDecodeError:
        return events._check_refused(value, max_field_bytes)
    return events._check_document(doc, max_field_bytes)


def same_answer(fast: LoginEvent | str, general: LoginEvent | str) -> bool:
    """Equal, and an event's strings are equal as strings (an int time may equal its float)."""
    if isinstance(fast, str) or isinstance(general, str):
        return fast == general
    return fast == general and all(type(a) is type(b) for a, b in zip(fast[1:], general[1:], strict=True))


# Raw JSON text for a field's value: valid, invalid, and the decoders' corners.
raw_values = st.sampled_from(
    [
        '"u"',
        '"2.3.0"',
        '""',
        "null",
        "1",
        "true",
        "[]",
        "{}",
        '"a\\u00e9"',
        '"\\ud83d\\ude00"',
        '"\\ud800"',
        '"\\udc00x"',
        '"\\u0000"',
        '"a\\nb"',
        "1e400",
        "-0",
        "NaN",
        "Infinity",
        "01",
        "1.",
        "+1",
        "'a'",
        '"\\x"',
        "9" * 400,
        "[" * 1100 + "]" * 1100,
        "[" * 600 + "]" * 600,
        '"' + "x" * 300 + '"',
        '"' + "é" * 100 + '"',
    ]
)
raw_bytes = st.sampled_from([b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"a\x01"', b'"\xc3\xa9"'])
timestamps = st.sampled_from(
    [
        str(T),
        f"{T}.5",
        "1.7092512e9",
        f'"{T}"',
        f'"{T}.25"',
        "946684800",
        "946684799.999",
        "4102444800",
        "4102444799.5",
        "true",
        "null",
        '""',
        "1e400",
        "-1",
        str(T) + "0" * 20,
    ]
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A JSON object's bytes near the common shape, maybe malformed."""
    members: list[bytes] = []
    for name in FIELDS:
        presence = draw(st.sampled_from(["plain", "plain", "plain", "absent", "odd", "twice"]))
        if presence == "absent":
            continue
        if name == "timestamp":
            value = draw(timestamps).encode()
        elif presence == "plain":
            value = json.dumps(draw(st.text(min_size=1, max_size=12))).encode()
        else:
            value = draw(st.one_of(raw_values.map(str.encode), raw_bytes))
        members.append(b'"' + name.encode() + b'":' + value)
        if presence == "twice":
            members.append(b'"' + name.encode() + b'":' + draw(st.one_of(raw_values.map(str.encode), raw_bytes)))
    for _ in range(draw(st.integers(0, 2))):
        members.append(b'"extra":' + draw(st.one_of(raw_values.map(str.encode), raw_bytes)))
    order = draw(st.permutations(members))
    value = b"{" + b",".join(order) + b"}"
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(value)))
        byte = bytes([draw(st.integers(0, 255))])
        value = value[:at] + byte + value[at + draw(st.integers(0, 1)) :]
    return value


@settings(
    max_examples=1500, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(documents(), st.sampled_from([1024, 64, 16, 4, 3]))
@example(b'{"timestamp":1709251200,"user_id":"u","extra":"\xff"}', 1024)
@example(b'{"timestamp":1709251200,"user_id":"u","timestamp":"1709251200"}', 1024)
@example(b'{"user_id":"u","timestamp":1709251200,"extra":' + b"[" * 1100 + b"]" * 1100 + b"}", 1024)
def test_the_fast_path_answers_as_the_general_path(value: bytes, max_field_bytes: int) -> None:
    assert same_answer(make_parser(max_field_bytes)(value), general_path(value, max_field_bytes))


@pytest.mark.parametrize(
    "value",
    [
        # msgspec skips an unknown field's string without checking its UTF-8.
        b'{"timestamp":1709251200,"user_id":"u","z":"\xff\xfe"}',
        # msgspec takes the last of duplicated keys, as orjson does; a bad first one is refused.
        b'{"timestamp":1,"user_id":"u","timestamp":1709251200}',
        b'{"timestamp":1709251200,"user_id":"u","user_id":"v"}',
        b'{"timestamp":1709251200,"user_id":"u","device_type":null}',
        b'{"timestamp":1709251200,"user_id":"u","device_type":""}',
    ],
)
def test_values_where_the_decoders_differ_get_the_contracts_answer(value: bytes) -> None:
    assert same_answer(make_parser(1024)(value), general_path(value, 1024))


def test_the_common_shape_takes_the_fast_path() -> None:
    # Guards the speed this path exists for: the generated shape must not fall back.
    decode = events._common_shape_decoder(1024)
    assert decode is not None
    value = json.dumps({"user_id": "u", "timestamp": T, "ip": "10.0.0.1"}).encode()
    assert events._astuple(decode(value)) == (float(T), "u", "unknown", "unknown", "10.0.0.1", "unknown", "unknown")
