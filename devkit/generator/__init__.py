"""Login events for loginflow: a pure, seeded core (`events`), Kafka and files (`kafka`), the CLI (`cli`)."""
