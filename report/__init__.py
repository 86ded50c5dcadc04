"""The results report: `login-metrics`, the DLQ and the late topic of one cluster as one offline HTML page.

A tool beside the dataflow, not part of it: it reads what a run wrote, with
the dataflow's own settings, and imports nothing of the running topology.
`python -m report --help` (or `make report`) lists its options.
"""
