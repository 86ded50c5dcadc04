"""The dev kit: what tests, benchmarks and the demo share to run loginflow against a real local broker.

- `reference`: the independent batch answer to the contract (imports no product code).
- `memory_source`: an in-memory stand-in for the Kafka source.
- `generator`: login events: a pure core (`events`), Kafka and files (`kafka`), the CLI (`cli`).
- `broker`: the local broker through ``scripts/kafka``, free ports, reachability, `wait_until`.
- `records`: topics and records on a broker: create/delete topics, produce, read topics back.
- `demo` (with `demo_view`): ``make demo``, a command line on top of the rest.

Imports run one way: pure modules, then I/O (`generator.kafka`, `broker`, then
`records`), then command lines (`generator.cli`, `demo`); nothing here imports
`tests` or `bench`.
"""
