"""The crash, rescale and exactly-once tests' input: 150,000 logins over 3 partitions of skewed length.

Long enough that a run spans several snapshots (with BATCH_SIZE=10), skewed
so that partitions finish at different times, with rejects and late events
so that every output topic has something a crash could lose or repeat.
"""

from devkit.generator.events import GeneratorConfig, generate
from devkit.records import produce
from devkit.reference import Expected, expected_output
from tests.outputs import Inputs, TopicFactory, read_partitions

WINDOW = 60
LATENESS = 2

CONFIG = GeneratorConfig(
    count=150_000,
    users=2000,
    partitions=3,
    skew=(4.0, 2.0, 1.0),
    span=7200.0,
    bad_fraction=0.03,
    late_fraction=0.01,
    late_by=300.0,
    seed=23,
)


def produce_skewed_input(brokers: str, topic_factory: TopicFactory) -> tuple[str, Inputs, Expected]:
    """A fresh input topic holding the input, what it holds, and the reference answer."""
    topic = topic_factory(partitions=CONFIG.partitions)
    produce(brokers, topic, [(m.partition, m.key, m.value) for m in generate(CONFIG)])
    inputs = read_partitions(brokers, topic)
    return topic, inputs, expected_output(inputs, WINDOW, LATENESS)
