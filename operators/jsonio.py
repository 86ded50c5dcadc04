"""The one place loginflow talks to orjson, so options stay consistent."""

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def loads(data: bytes | str) -> Any:
    """Decode JSON text; raises `JSONDecodeError` on anything that is not JSON."""
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    """Encode `value` as compact JSON bytes with keys in insertion order.

    Insertion order (not sorted keys) is deterministic for the records we
    build, and it keeps `window_start` first, which reads better in a console.
    """
    return orjson.dumps(value)
