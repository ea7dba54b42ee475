"""Benchmarks anyone can rerun (``attention-flows bench …``); not shipped in the wheel."""
