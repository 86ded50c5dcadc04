"""`read_login_events`: user-login in, three streams out.

The input step parses each message in log order and keeps its partition's
event-time front (`operators.pure.partition`), so one read batch already
says which of its messages are on time, which are late and which are not
login events at all. This operator only splits that answer into streams.
"""

from dataclasses import dataclass
from functools import partial

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source

from operators.kafka.source import LoginSource
from operators.pure.encoding import RecordChunk, encode_late_events, encode_rejects
from operators.pure.partition import PartitionBatch
from operators.runtime.settings import Settings


@dataclass(frozen=True)
class LoginStreams:
    """What `read_login_events` splits the input into."""

    events: Stream[PartitionBatch]
    """Each read batch's on-time events, with its partition's watermark and progress."""
    rejects: Stream[RecordChunk]
    """Dead-letter records: each message that is not a valid login event, with its reason."""
    late: Stream[RecordChunk]
    """Late-topic records: each login event whose window its partition had already passed."""


@operator
def read_login_events(
    step_id: str, flow: Dataflow, settings: Settings, source: Source[PartitionBatch] | None = None
) -> LoginStreams:
    """Read INPUT_TOPIC (or `source`, in tests) into events, rejects and late events."""
    batches = op.input("read_and_parse", flow, source if source is not None else LoginSource(settings))
    topic = settings.input_topic
    rejects = op.map("encode_rejects", batches, partial(encode_rejects, source_topic=topic))
    late = op.map("encode_late_events", batches, partial(encode_late_events, source_topic=topic))
    return LoginStreams(events=batches, rejects=rejects, late=late)
