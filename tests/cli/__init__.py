"""The attention-flows command line, run as a user runs it."""
