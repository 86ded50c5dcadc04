"""Logging helpers: key=value context that stays greppable in production."""

import logging
import os
from datetime import datetime, timezone

from operators import jsonio

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
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s %(name)s pid={os.getpid()} %(message)s")
        )
    root.addHandler(handler)
    root.setLevel(level)
