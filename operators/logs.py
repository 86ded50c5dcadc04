"""Logging helpers: key=value context that stays greppable in production."""

import logging
import os


def kv(**context: object) -> str:
    """Render context as ``key=value`` pairs in the order given."""
    return " ".join(f"{key}={value}" for key, value in context.items())


def configure_logging(level: str) -> None:
    """Set up root logging once per process, unless the host app already did."""
    root = logging.getLogger()
    if root.handlers:
        return
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s %(name)s pid={os.getpid()} %(message)s",
    )
