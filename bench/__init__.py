"""`make bench`: loginflow against the consume ceiling and its peers, with correctness checked.

Entry point: ``python -m bench`` (see `bench.__main__`). Peers live in
`bench.peers`; every contender runs as its own process against a broker the
harness starts for itself.
"""
