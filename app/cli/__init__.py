"""The ``attention-flows`` command line: one module per command family."""
