"""Developer tooling for loginflow (event generator, helpers)."""
