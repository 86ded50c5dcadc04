"""The logic of loginflow: pure typed functions and composite Bytewax operators.

`dataflow.py` wires these together; nothing here reads the environment or
touches Kafka at import time.
"""
