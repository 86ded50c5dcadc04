"""Pure logic: no I/O, no clock, no Bytewax runtime; each function a value in, a value out."""
