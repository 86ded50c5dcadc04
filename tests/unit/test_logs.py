import json
import logging

from operators.logs import JsonFormatter, kv


def test_kv_renders_pairs_in_order() -> None:
    assert kv(partition=3, offset=17, reason="bad_type:ip") == "partition=3 offset=17 reason=bad_type:ip"


def test_json_formatter_writes_one_parseable_object_with_utc_time() -> None:
    record = logging.LogRecord("operators.x", logging.WARNING, __file__, 1, "late %s", ("partition=1",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "operators.x" and entry["msg"] == "late partition=1"
    assert entry["ts"].endswith("+00:00")
