"""Pure logic: no Kafka, no clock, no Bytewax runtime, no process state; values in, values out (they may log)."""
