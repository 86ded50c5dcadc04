"""Stopping a process on purpose, with one line that says why.

An exception raised inside a Bytewax callback reaches the user wrapped in a
Rust panic, a backtrace and three chained tracebacks, with the reason buried
in the middle. When loginflow cannot go on (the brokers do not answer, a
topic is missing, the input topic grew, processes disagree on settings), it
says so in one last line naming the setting, and exits non-zero so that a
supervisor restarts it. A restart resumes from the last recovery snapshot,
exactly as after a crash.
"""

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

logger = logging.getLogger(__name__)

EXIT_CANNOT_RUN = 2
"""The exit code of a deliberate stop; a crash exits 1."""


def stop_process(reason: str, exit_code: int = EXIT_CANNOT_RUN) -> NoReturn:
    """Log `reason`, print it as the last line, and end the process at once."""
    logger.critical("stopping %s", reason)
    logging.shutdown()
    sys.stdout.flush()
    print(f"loginflow: {reason}", file=sys.stderr, flush=True)  # noqa: T201 - the one line a user must see
    # sys.exit would raise through Bytewax's Rust frames and bury the line.
    os._exit(exit_code)


@contextmanager
def stop_on(*errors: type[Exception]) -> Iterator[None]:
    """Turn `errors` raised in the block into `stop_process` with their message."""
    try:
        yield
    except errors as exc:
        stop_process(str(exc))
