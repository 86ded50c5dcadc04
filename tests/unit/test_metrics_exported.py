"""Counters the alerts watch exist at 0 as soon as the dataflow is built, before any event."""

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.testing import TestingSource
from prometheus_client import REGISTRY

from operators.count import count_slices_in_windows
from operators.pure.partition import PartitionBatch
from operators.runtime.settings import Settings, parse_slices


def test_building_the_flow_exports_the_window_closed_counters_of_every_slice_at_zero() -> None:
    # Slices no other test in this process counts, so nothing else touched their series.
    slices = parse_slices("device_type+locale+ip:1,device_id+app_version:3")
    flow = Dataflow("zeroed")
    events: Stream[PartitionBatch] = op.input("events", flow, TestingSource([]))
    count_slices_in_windows("count", events, Settings(slices=slices))
    for spec in slices:
        for name in ("loginflow_counts_for_closed_windows_total", "loginflow_windows_let_go_total"):
            assert REGISTRY.get_sample_value(name, {"slice": spec.name}) == 0.0, (name, spec.name)
