"""The package version (read by the build and recorded in model cards, corpora and sidecars)."""

__version__ = "0.1.0"
