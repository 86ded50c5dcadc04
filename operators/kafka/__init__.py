"""Everything that talks to the Kafka broker: the source, the sinks, topic setup."""
