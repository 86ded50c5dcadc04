"""The input contract of `operators.events`, one rule per case."""

import json
import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devkit.generator.events import GeneratorConfig, generate
from operators.pure import events, jsonio
from operators.pure.events import MAX_EVENT_TIME, MIN_EVENT_TIME, UNKNOWN, LoginEvent, parse_event_time, parse_value
from operators.pure.partition import window_start

T = 1_694_479_551  # 2023-09-12, comfortably inside the accepted range

OPTIONAL = ["app_version", "device_type", "ip", "locale", "device_id"]


def doc(**fields: object) -> bytes:
    """A valid message with `fields` overriding or (as `...`) removing defaults."""
    base: dict[str, object] = {"user_id": "u1", "timestamp": T}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def test_full_event_keeps_every_field_value() -> None:
    value = doc(app_version="2.3.0", device_type="android", ip="10.0.0.1", locale="TX", device_id="d1")
    assert parse_value(value) == LoginEvent(float(T), "u1", "2.3.0", "android", "10.0.0.1", "TX", "d1")


def test_minimal_event_defaults_every_optional_field_to_unknown() -> None:
    assert parse_value(doc()) == LoginEvent(float(T), "u1", *[UNKNOWN] * 5)
    assert UNKNOWN == "unknown"


def test_event_time_is_a_float() -> None:
    event = parse_value(doc())
    assert isinstance(event, LoginEvent)
    assert type(event.event_time) is float


def test_unknown_fields_are_ignored() -> None:
    value = doc(extra="x", nested={"a": [1, 2]}, number=3, flag=True, nothing=None)
    assert parse_value(value) == parse_value(doc())


def test_non_ascii_strings_are_kept() -> None:
    event = parse_value(doc(user_id="ümlaut-用户", locale="ar-EG"))
    assert isinstance(event, LoginEvent)
    assert (event.user_id, event.locale) == ("ümlaut-用户", "ar-EG")


def test_byte_order_mark_is_not_reported_as_invalid_utf8() -> None:
    # b"\xef\xbb\xbf" is U+FEFF, well-formed UTF-8 but not JSON; orjson's message
    # mentions "UTF-8", which must not be taken for an encoding error.
    value = b"\xef\xbb\xbf" + doc()
    value.decode("utf-8")
    assert parse_value(value) == "invalid_json"


def test_whitespace_around_the_document_is_allowed() -> None:
    assert parse_value(b"  \n" + doc() + b"\t ") == parse_value(doc())


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"", "empty_value"),
        (b"{not json", "invalid_json"),
        (b'{"user_id": "u1", "timestamp": 1694479551', "invalid_json"),
        (b"   ", "invalid_json"),
        (b'{"user_id": "u1", "timestamp": NaN}', "invalid_json"),
        (b'{"user_id": "\xff"}', "invalid_utf8"),
        (b"\xff", "invalid_utf8"),
        (b'{"user_id": "u1", "timestamp": 1694479551}\xc3\x28', "invalid_utf8"),
        (b"[1]", "not_object"),
        (b'[{"user_id": "u1", "timestamp": 1694479551}]', "not_object"),
        (b'"text"', "not_object"),
        (b"42", "not_object"),
        (b"1.5", "not_object"),
        (b"true", "not_object"),
        (b"null", "not_object"),
    ],
)
def test_message_must_be_a_utf8_json_object(value: bytes | None, reason: str) -> None:
    assert parse_value(value) == reason


@pytest.mark.parametrize(
    ("user_id", "reason"),
    [
        (..., "missing_field:user_id"),
        (None, "missing_field:user_id"),
        (7, "bad_type:user_id"),
        (1.5, "bad_type:user_id"),
        (True, "bad_type:user_id"),
        ({"id": "u1"}, "bad_type:user_id"),
        (["u1"], "bad_type:user_id"),
        ("", "empty_field:user_id"),
    ],
)
def test_user_id_must_be_a_non_empty_string(user_id: object, reason: str) -> None:
    assert parse_value(doc(user_id=user_id)) == reason


def test_user_id_is_checked_before_timestamp() -> None:
    assert parse_value(doc(user_id=..., timestamp=...)) == "missing_field:user_id"


@pytest.mark.parametrize(
    ("timestamp", "event_time"),
    [
        (T, float(T)),
        (T + 0.5, T + 0.5),
        (str(T), float(T)),
        (f"{T}.5", T + 0.5),
        (f"{T}.000", float(T)),
        (f"000{T}", float(T)),
    ],
)
def test_timestamp_accepts_numbers_and_digit_strings(timestamp: object, event_time: float) -> None:
    event = parse_value(doc(timestamp=timestamp))
    assert isinstance(event, LoginEvent)
    assert event.event_time == event_time


def test_timestamp_json_number_in_exponent_form_is_accepted() -> None:
    # Only strings are held to plain digits; a JSON number may use any JSON syntax.
    event = parse_value(b'{"user_id": "u1", "timestamp": 1.694479551e9}')
    assert isinstance(event, LoginEvent)
    assert event.event_time == float(T)


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        (..., "missing_field:timestamp"),
        (None, "missing_field:timestamp"),
        (True, "bad_type:timestamp"),
        (False, "bad_type:timestamp"),
        ({"seconds": T}, "bad_type:timestamp"),
        ([T], "bad_type:timestamp"),
        ("1.2e9", "bad_format:timestamp"),
        (" 123", "bad_format:timestamp"),
        (f"{T} ", "bad_format:timestamp"),
        ("-5", "bad_format:timestamp"),
        ("+1694479551", "bad_format:timestamp"),
        ("١٢٣", "bad_format:timestamp"),  # Arabic-Indic digits: isdigit() is True, float() would parse them
        ("１６９４４７９５５１", "bad_format:timestamp"),  # fullwidth digits, same trap
        ("", "bad_format:timestamp"),
        (f"{T}.", "bad_format:timestamp"),
        (".5", "bad_format:timestamp"),
        ("1_694_479_551", "bad_format:timestamp"),
        ("nan", "bad_format:timestamp"),
        ("inf", "bad_format:timestamp"),
        ("2023-09-12T00:00:00Z", "bad_format:timestamp"),
    ],
)
def test_timestamp_rejects(timestamp: object, reason: str) -> None:
    assert parse_value(doc(timestamp=timestamp)) == reason


@pytest.mark.parametrize(
    ("timestamp", "accepted"),
    [
        (946_684_800, True),  # 2000-01-01T00:00:00Z, the first accepted instant
        (946_684_800.0, True),
        ("946684800", True),
        (946_684_799.999, False),
        ("946684799.999", False),
        (946_684_799, False),
        (4_102_444_799.5, True),  # the last half second before 2100-01-01
        ("4102444799.5", True),
        (4_102_444_799, True),
        (4_102_444_800, False),  # 2100-01-01T00:00:00Z is excluded
        (4_102_444_800.0, False),
        ("4102444800", False),
        (0, False),
        (-1, False),
        (-(10**30), False),
        (10**30, False),
        (2**64, False),
    ],
)
def test_timestamp_range_is_2000_inclusive_to_2100_exclusive(timestamp: float | str, accepted: bool) -> None:
    result = parse_value(doc(timestamp=timestamp))
    if accepted:
        assert isinstance(result, LoginEvent)
        assert result.event_time == float(timestamp)
    else:
        assert result == "timestamp_out_of_range"


def test_range_constants_are_the_documented_instants() -> None:
    assert (MIN_EVENT_TIME, MAX_EVENT_TIME) == (946_684_800.0, 4_102_444_800.0)


def test_huge_digit_string_is_out_of_range_not_a_crash() -> None:
    assert parse_value(doc(timestamp="9" * 400)) == "timestamp_out_of_range"


@pytest.mark.parametrize(
    ("raw", "result"),
    [
        (None, "missing_field:timestamp"),
        (True, "bad_type:timestamp"),
        (T, float(T)),
        (T + 0.25, T + 0.25),
        (f"{T}.25", T + 0.25),
        ("1.2e9", "bad_format:timestamp"),
        (10**30, "timestamp_out_of_range"),
        (-(10**30), "timestamp_out_of_range"),
        (math.inf, "timestamp_out_of_range"),
        (-math.inf, "timestamp_out_of_range"),
        (math.nan, "timestamp_out_of_range"),
        (b"1694479551", "bad_type:timestamp"),
        ((T,), "bad_type:timestamp"),
    ],
)
def test_parse_event_time(raw: object, result: float | str) -> None:
    assert parse_event_time(raw) == result


def test_parse_event_time_returns_float_for_int() -> None:
    assert type(parse_event_time(T)) is float


@pytest.mark.parametrize("name", OPTIONAL)
@pytest.mark.parametrize("raw", [..., None, ""])
def test_optional_field_absent_null_or_empty_is_unknown(name: str, raw: object) -> None:
    event = parse_value(doc(**{name: raw}))
    assert isinstance(event, LoginEvent)
    assert getattr(event, name) == "unknown"


@pytest.mark.parametrize("name", OPTIONAL)
def test_optional_field_string_is_kept_verbatim(name: str) -> None:
    event = parse_value(doc(**{name: " value with spaces "}))
    assert isinstance(event, LoginEvent)
    assert getattr(event, name) == " value with spaces "
    others = {field: getattr(event, field) for field in OPTIONAL if field != name}
    assert set(others.values()) == {"unknown"}


@pytest.mark.parametrize("name", OPTIONAL)
@pytest.mark.parametrize("raw", [0, 7, 1.5, True, False, {"a": "b"}, [], ["x"]])
def test_optional_field_of_another_type_is_rejected(name: str, raw: object) -> None:
    assert parse_value(doc(**{name: raw})) == f"bad_type:{name}"


def test_first_bad_optional_field_in_contract_order_is_reported() -> None:
    assert parse_value(doc(device_id=1, app_version=2)) == "bad_type:app_version"


def test_timestamp_is_checked_before_optional_fields() -> None:
    assert parse_value(doc(ip=1, timestamp="x")) == "bad_format:timestamp"


def _general_path(value: bytes | None) -> object:
    """The contract checked one rule at a time, bypassing the fast path."""
    if value is None:
        return "tombstone"
    try:
        doc = jsonio.loads(value)
    except jsonio.JSONDecodeError:
        return events._check_refused(value, events.DEFAULT_MAX_FIELD_BYTES)
    return events._check_document(doc, events.DEFAULT_MAX_FIELD_BYTES)


def test_fast_path_agrees_with_the_general_rules_on_generated_traffic() -> None:
    config = GeneratorConfig(
        count=5_000, users=200, bad_fraction=0.2, missing_device_type=0.1, odd_timestamps=0.2, seed=7
    )
    values = [message.value for message in generate(config)]
    fast = [parse_value(value) for value in values]
    assert fast == [_general_path(value) for value in values]
    # Both paths were exercised: most messages are valid, many are not.
    assert 0.5 < sum(isinstance(result, LoginEvent) for result in fast) / len(fast) < 0.95


@pytest.mark.parametrize(
    "value",
    [
        b'{"timestamp": 1709251200, "user_id": "u", "app_version": "1", "device_type": "d", "ip": "i", '
        b'"locale": "l", "device_id": ""}',
        b'{"timestamp": 1709251200, "user_id": "u", "app_version": 1, "device_type": "d", "ip": "i", '
        b'"locale": "l", "device_id": "x"}',
        b'{"timestamp": true, "user_id": "u", "app_version": "1", "device_type": "d", "ip": "i", '
        b'"locale": "l", "device_id": "x"}',
        b'{"timestamp": 99999999999999999999999, "user_id": "u", "app_version": "1", "device_type": "d", '
        b'"ip": "i", "locale": "l", "device_id": "x"}',
        b'{"timestamp": 1709251200, "user_id": "", "app_version": "1", "device_type": "d", "ip": "i", '
        b'"locale": "l", "device_id": "x"}',
        b'[1709251200, "u"]',
        b'"text"',
        # Over the field limit only in bytes: 300 four-byte characters.
        b'{"timestamp": 1709251200, "user_id": "u", "app_version": "' + "\U0001f600".encode() * 300 + b'", '
        b'"device_type": "d", "ip": "i", "locale": "l", "device_id": "x"}',
        # Under the limit in bytes, over the fast path's character bound.
        b'{"timestamp": 1709251200, "user_id": "' + b"u" * 1024 + b'", "app_version": "1", "device_type": "d", '
        b'"ip": "i", "locale": "l", "device_id": "x"}',
        b"",
        b"\xff",
        None,
    ],
)
def test_fast_path_agrees_with_the_general_rules_on_edge_shapes(value: bytes | None) -> None:
    assert parse_value(value) == _general_path(value)


def long_doc(**fields: object) -> bytes:
    return json.dumps({"user_id": "u1", "timestamp": T, **fields}).encode()


@pytest.mark.parametrize("field", ["user_id", "app_version", "device_type", "ip", "locale", "device_id"])
def test_a_field_longer_than_the_limit_is_rejected_as_too_long(field: str) -> None:
    assert parse_value(long_doc(**{field: "x" * 1024})) != f"too_long:{field}"
    assert parse_value(long_doc(**{field: "x" * 1025})) == f"too_long:{field}"


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    # 256 three-byte characters: 768 bytes pass, and 342 (1026 bytes) do not.
    assert isinstance(parse_value(long_doc(locale="€" * 256)), LoginEvent)
    assert parse_value(long_doc(locale="€" * 342)) == "too_long:locale"


def test_the_field_limit_is_a_parameter() -> None:
    assert parse_value(long_doc(ip="1" * 20), max_field_bytes=16) == "too_long:ip"
    assert isinstance(parse_value(long_doc(ip="1" * 16), max_field_bytes=16), LoginEvent)


def test_checks_run_in_contract_order_user_id_then_timestamp_then_optional_fields() -> None:
    both = json.dumps({"user_id": "u" * 2000, "app_version": "a" * 2000}).encode()
    assert parse_value(both) == "too_long:user_id"
    assert parse_value(json.dumps({"user_id": "u", "app_version": "a" * 2000}).encode()) == "missing_field:timestamp"
    assert parse_value(long_doc(app_version="a" * 2000, ip=7)) == "too_long:app_version"


def test_a_megabyte_field_is_rejected_without_error() -> None:
    assert parse_value(long_doc(app_version="9" * 1_200_000)) == "too_long:app_version"


def with_raw(value: bytes, **raw_json: str) -> bytes:
    """`value` (a JSON object) with more members whose values are raw JSON text."""
    members = [value[1:-1].decode()] if value != b"{}" else []
    members += [f'"{name}": {text}' for name, text in raw_json.items()]
    return ("{" + ", ".join(members) + "}").encode()


# JSON's grammar allows both; orjson refuses them, Python's json does not.
NOT_FOR_ORJSON = ["1e400", "-1e400", '[1, {"a": 1E+999}]', '"\\ud800"', '"x\\udc00y"', '["\\udfff\\ud800"]', "1" * 5000]


@pytest.mark.parametrize("raw", NOT_FOR_ORJSON)
def test_an_extra_field_orjson_refuses_is_ignored_like_any_other(raw: str) -> None:
    full = doc(app_version="2.3.0", device_type="android", ip="10.0.0.1", locale="TX", device_id="d1")
    value = with_raw(full, extra=raw)
    with pytest.raises(jsonio.JSONDecodeError):
        jsonio.loads(value)
    assert parse_value(value) == parse_value(full)
    assert parse_value(with_raw(doc(timestamp=f"{T}.5"), extra=raw)) == parse_value(doc(timestamp=f"{T}.5"))


def test_an_extra_field_whose_name_holds_a_lone_surrogate_is_ignored() -> None:
    assert parse_value(doc()[:-1] + b', "k\\ud800": 1e400}') == parse_value(doc())


@pytest.mark.parametrize("name", ["user_id", *OPTIONAL])
@pytest.mark.parametrize("text", ['"\\ud800"', '"ab\\udfffcd"', '"\\ude00\\ud83d"'])
def test_a_known_string_field_holding_a_lone_surrogate_is_a_bad_type(name: str, text: str) -> None:
    # No UTF-8 form exists for it, so it could not be a key in login-metrics.
    assert parse_value(with_raw(doc(**{name: ...}), **{name: text})) == f"bad_type:{name}"


def test_a_timestamp_holding_a_lone_surrogate_is_a_bad_type() -> None:
    assert parse_value(with_raw(doc(timestamp=...), timestamp='"1694479551\\ud800"')) == "bad_type:timestamp"


def test_an_escaped_surrogate_pair_is_one_character_not_a_lone_surrogate() -> None:
    event = parse_value(with_raw(doc(user_id=...), user_id='"u\\ud83d\\ude00"', extra='"\\ud800"'))
    assert isinstance(event, LoginEvent)
    assert event.user_id == "u\U0001f600"


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "1" * 400])
def test_a_timestamp_beyond_a_double_is_out_of_range(raw: str) -> None:
    assert parse_value(with_raw(doc(timestamp=...), timestamp=raw)) == "timestamp_out_of_range"


@pytest.mark.parametrize("name", ["user_id", *OPTIONAL])
def test_a_known_field_beyond_a_double_is_a_bad_type(name: str) -> None:
    assert parse_value(with_raw(doc(**{name: ...}), **{name: "1e400"})) == f"bad_type:{name}"


def test_the_contract_order_holds_for_what_orjson_refuses() -> None:
    value = with_raw(doc(timestamp="x", user_id=...), user_id='"u1"', ip='"\\ud800"')
    assert parse_value(value) == "bad_format:timestamp"
    value = with_raw(doc(user_id=..., timestamp=...), user_id='"\\ud800"', timestamp="1e400")
    assert parse_value(value) == "bad_type:user_id"
    assert parse_value(with_raw(doc(user_id=...), user_id="7", extra="1e400")) == "bad_type:user_id"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json_even_where_orjson_refuses_something_else(constant: str) -> None:
    assert parse_value(with_raw(doc(), extra=constant)) == "invalid_json"
    assert parse_value(with_raw(doc(), big="1e400", extra=constant)) == "invalid_json"
    assert parse_value(with_raw(doc(timestamp=...), timestamp=constant)) == "invalid_json"


def test_what_is_not_json_stays_invalid_json_when_orjson_refuses_something_else() -> None:
    assert parse_value(with_raw(doc(), big="1e400", bad="{")) == "invalid_json"
    assert parse_value(b"\xef\xbb\xbf" + with_raw(doc(), big="1e400")) == "invalid_json"
    assert parse_value(with_raw(doc(), big="1e400") + b"\xff") == "invalid_utf8"
    assert parse_value(with_raw(doc(), big="1e400") + b" x") == "invalid_json"
    deep = "[" * 2000 + "]" * 2000
    assert parse_value(with_raw(doc(), deep=deep)) == "invalid_json"
    assert parse_value(with_raw(doc(), big="1e400", deep=deep)) == "invalid_json"


@pytest.mark.parametrize("extra", ["1", "1e400"])
@pytest.mark.parametrize(
    ("first", "then"),
    [
        ('"user_id": 7', '"user_id": "u2"'),
        ('"user_id": "\\ud800"', '"user_id": "u2"'),
        ('"timestamp": 1e400', '"timestamp": 1694479551'),
    ],
)
def test_of_duplicated_keys_the_last_wins(first: str, then: str, extra: str) -> None:
    # With extra=1e400 the message takes the fallback decode; it must agree with orjson.
    value = f'{{{first}, "user_id": "u1", "timestamp": {T}, {then}, "extra": {extra}}}'.encode()
    expected = {"user_id": "u2"} if "user_id" in then else {}
    assert parse_value(value) == parse_value(doc(**expected))


WINDOWS = [1, 7, 60, 300, 3600]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("nines", [7, 8, 11, 20, 60])
def test_a_long_digit_string_just_before_a_window_boundary_stays_in_its_window(window: int, nines: int) -> None:
    boundary = 1_709_251_260 // window * window + window
    text = f"{boundary - 1}.{'9' * nines}"
    event = parse_value(doc(timestamp=text))
    assert isinstance(event, LoginEvent)
    assert event.event_time < boundary
    assert window_start(event.event_time, window) == boundary - window


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("4102444799.99999999999", True),  # before 2100-01-01 by its digits
        ("4102444799.9999999999999999999999999", True),
        ("946684799.99999999999999", False),  # before 2000-01-01 by its digits
        ("946684800.00000000000000000000001", True),
    ],
)
def test_the_range_limits_follow_a_digit_strings_digits(text: str, accepted: bool) -> None:
    result = parse_value(doc(timestamp=text))
    assert isinstance(result, LoginEvent) is accepted, result
    if not accepted:
        assert result == "timestamp_out_of_range"


def test_a_json_number_is_the_nearest_double_as_orjson_reads_it() -> None:
    # The documented semantics of JSON numbers: unlike a digit string, a long
    # JSON float rounds to nearest, here into the next second.
    event = parse_value(b'{"user_id": "u1", "timestamp": 1709251259.99999999999}')
    assert isinstance(event, LoginEvent)
    assert event.event_time == 1_709_251_260.0


_DIGITS = "0123456789"
digit_strings = st.builds(
    lambda whole, fraction: f"{whole}.{fraction}",
    # Often the last second before a boundary of every window in WINDOWS but 7.
    st.integers(946_684_800, 4_102_444_799) | st.integers(263_000, 1_139_567).map(lambda hour: hour * 3600 - 1),
    # Often nines enough to round up into the next second.
    st.text(_DIGITS, min_size=1, max_size=40)
    | st.builds(lambda nines, tail: "9" * nines + tail, st.integers(5, 30), st.text(_DIGITS, max_size=5)),
)


@given(digit_strings)
def test_a_digit_string_is_the_largest_double_not_above_its_value(text: str) -> None:
    event_time = parse_event_time(text)
    assert isinstance(event_time, float)
    assert Decimal(event_time) <= Decimal(text) < Decimal(math.nextafter(event_time, math.inf))


@given(digit_strings, st.sampled_from(WINDOWS))
def test_a_digit_strings_window_is_decided_by_its_digits(text: str, window: int) -> None:
    event_time = parse_event_time(text)
    assert isinstance(event_time, float)
    assert window_start(event_time, window) == int(Decimal(text) // window) * window


@pytest.mark.parametrize("text", ["1694479551", "1694479551.5", "1694479551.25", "1694479551.000", "0001694479551"])
def test_a_digit_string_a_double_holds_exactly_is_that_double(text: str) -> None:
    assert parse_event_time(text) == float(text)
