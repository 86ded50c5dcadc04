"""loginflow: login events in, windowed counts per slice key out, nothing lost on the way.

    user-login ─ read_login_events ─┬─ events ─ count_slices_in_windows ─┬─ metrics ──► login-metrics
                                    │                                    └─ uncounted ─┐
                                    ├─ rejects ────────────────────────────────────────┴► DLQ
                                    └─ late ───────────────────────────────────────────► late topic

Run with ``python -m bytewax.run dataflow`` (add ``-w N``, or ``-i/-a`` for
several processes, and ``-r/-s/-b`` for recovery). Settings come from the
environment; see the README table or `operators.runtime.settings.Settings`.
"""

import sys

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source

from operators.count import count_slices_in_windows
from operators.pure.partition import PartitionBatch
from operators.read import read_login_events
from operators.runtime.abandoned_epochs import RecoveryStoreError
from operators.runtime.execution_start import ExecutionStart
from operators.runtime.logs import configure_logging
from operators.runtime.recovery_start import SharedRecoveryDirectoryError, prepare_recovery_store, read_mountinfo
from operators.runtime.run_args import run_recovery_directory
from operators.runtime.settings import ConfigError, Settings
from operators.runtime.shutdown import stop_on
from operators.write import Sinks, kafka_sinks, write_kafka


def build_flow(
    settings: Settings, *, source: Source[PartitionBatch] | None = None, sinks: Sinks | None = None
) -> Dataflow:
    """The loginflow dataflow, reading Kafka and writing Kafka unless tests give a source and sinks."""
    sinks = sinks if sinks is not None else kafka_sinks(settings)
    flow = Dataflow("loginflow")

    logins = read_login_events("read_user_login", flow, settings, source)
    counts = count_slices_in_windows("count_slices_in_windows", logins.events, settings)

    started = op.input("announce_start", flow, ExecutionStart())
    write_kafka("write_login_metrics", counts.metrics, sinks.metrics, started)
    write_kafka("write_dlq", op.merge("merge_dead_letters", logins.rejects, counts.uncounted), sinks.dlq, started)
    write_kafka("write_late", logins.late, sinks.late, started)
    return flow


def _start_or_exit() -> Settings:
    """The settings, with the recovery store ready to resume from, or exit with one line saying why."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        # One line naming the variable beats a traceback from deep in bytewax.run.
        sys.exit(f"loginflow: bad setting: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    # None unless this is a `bytewax.run` start: an import by any other program deletes nothing.
    directory = run_recovery_directory()
    if directory is not None:
        # Now, before Bytewax opens the store: see operators/runtime/abandoned_epochs.py.
        try:
            with stop_on(SharedRecoveryDirectoryError):
                prepare_recovery_store(directory, read_mountinfo())
        except RecoveryStoreError as exc:
            sys.exit(f"loginflow: {exc}")
    return settings


flow = build_flow(_start_or_exit())
