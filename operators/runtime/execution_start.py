"""One item per worker when an execution starts: the cue to wake every exactly-once writer.

Bytewax snapshots a sink partition only at the end of an epoch in which it
wrote, and builds it only when its first item arrives. A partition whose
first commit falls in an epoch whose snapshot never became durable then
resumes with no state: it reads nothing back and writes everything it had
committed again. Waking every partition in the first epoch of each
execution gives each one a snapshot (its end offset) before it writes, in
the common case of that first epoch completing.
"""

from bytewax.inputs import DynamicSource, StatelessSourcePartition


class _Once(StatelessSourcePartition[None]):
    def __init__(self) -> None:
        self._sent = False

    def next_batch(self) -> list[None]:
        if self._sent:
            raise StopIteration
        self._sent = True
        return [None]


class ExecutionStart(DynamicSource[None]):
    """Emits a single `None` on every worker, then ends."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Once:
        """One partition per worker; nothing to resume."""
        return _Once()
