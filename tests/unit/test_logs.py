import json
import logging

from operators.runtime.logs import JsonFormatter, RateLimit, kv


def test_kv_renders_pairs_in_order() -> None:
    assert kv(partition=3, offset=17, reason="bad_type:ip") == "partition=3 offset=17 reason=bad_type:ip"


def test_json_formatter_writes_one_parseable_object_with_utc_time() -> None:
    record = logging.LogRecord("operators.x", logging.WARNING, __file__, 1, "late %s", ("partition=1",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "WARNING" and entry["logger"] == "operators.x" and entry["msg"] == "late partition=1"
    assert entry["ts"].endswith("+00:00")


def test_rate_limit_passes_a_burst_per_period_then_counts_what_it_dropped() -> None:
    limit = RateLimit(burst=2, period=10.0)

    def record(at: float) -> logging.LogRecord:
        entry = logging.LogRecord("kafka", logging.ERROR, __file__, 1, "connect failed %s", ("x",), None)
        entry.created = at
        return entry

    assert [limit.filter(record(t)) for t in (0.0, 0.1, 0.2, 5.0, 9.9)] == [True, True, False, False, False]
    later = record(10.0)
    assert limit.filter(later) is True
    assert later.getMessage() == "connect failed x (3 more suppressed in the last 10s)"
    assert limit.filter(record(10.1)) is True
    assert limit.filter(record(10.2)) is False
