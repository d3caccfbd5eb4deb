"""Wire formats and pure state machines: no I/O, no actors."""
