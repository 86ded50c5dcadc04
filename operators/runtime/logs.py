"""Logging helpers: key=value context that stays greppable in production."""

import logging
import os
from datetime import datetime, timezone

from operators.pure import jsonio

LOG_FORMATS = ("kv", "json")


def kv(**context: object) -> str:
    """Render context as ``key=value`` pairs in the order given."""
    return " ".join(f"{key}={value}" for key, value in context.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log pipelines that parse fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render `record` with a UTC timestamp; exceptions go in ``exc``."""
        entry = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": os.getpid(),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return jsonio.dumps(entry).decode()


def configure_logging(level: str, log_format: str = "kv") -> None:
    """Set up root logging once per process, unless the host app already did."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s pid={os.getpid()} %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


class RateLimit(logging.Filter):
    """Pass at most `burst` records per `period` seconds, then say how many were dropped.

    A client that cannot reach its broker reports the same failure many times
    a second; a few lines per period say as much, and keep the one line that
    explains the exit from scrolling away.
    """

    def __init__(self, burst: int = 3, period: float = 10.0) -> None:
        """Allow `burst` records in each window of `period` seconds."""
        super().__init__()
        self.burst = burst
        self.period = period
        self._window_start = -float("inf")
        self._passed = 0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether `record` is within this period's budget."""
        now = record.created
        if now - self._window_start >= self.period:
            if self._dropped:
                record.msg = f"{record.msg} ({self._dropped} more suppressed in the last {self.period:.0f}s)"
            self._window_start = now
            self._passed = 0
            self._dropped = 0
        if self._passed < self.burst:
            self._passed += 1
            return True
        self._dropped += 1
        return False
