"""Process plumbing: settings, logs, metrics, stopping on purpose, the recovery store."""
