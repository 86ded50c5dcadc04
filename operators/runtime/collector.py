"""Garbage-collector settings for a flow that allocates millions of short-lived containers.

Every message becomes a dict and a tuple, and each read batch holds thousands
of them until the next step. With CPython's default thresholds (700, 10, 10)
the collector runs several young-generation passes per batch, promotes the
batch's objects, and repeatedly walks the window state, which only grows
while windows are open. Nothing in loginflow forms reference cycles on the
hot path, so reference counting frees it all anyway: the collector is only a
safety net here, and can run far less often. Measured with
``bench/profile_loginflow.py``: about a third less CPU per message.
"""

import gc
import logging

from operators.runtime.logs import kv

logger = logging.getLogger(__name__)

YOUNG_THRESHOLD = 100_000
"""Allocations between young-generation passes (CPython default: 700)."""

OLDER_THRESHOLDS = (50, 100)
"""Passes of the younger generation between passes of the older ones (default: 10, 10)."""


def relax_collector() -> None:
    """Make the cyclic collector run rarely; idempotent, process-wide."""
    wanted = (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    if gc.get_threshold() != wanted:
        previous = gc.get_threshold()
        gc.set_threshold(*wanted)
        logger.debug("gc thresholds set %s", kv(previous=previous, now=wanted))
