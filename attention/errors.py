"""Errors that carry a user-facing message: what went wrong and how to fix it.

Every error the engine raises on purpose derives from :class:`AttentionFlowsError`. The dashboard and the
command line show ``str(error)`` to the user verbatim, so messages name the problem *and* the fix.
"""

from __future__ import annotations


class AttentionFlowsError(Exception):
    """Base class: ``problem`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip())


class ConfigError(AttentionFlowsError):
    """A configuration file is missing, malformed, or names something that does not exist."""


class ModelLoadError(AttentionFlowsError):
    """A model or tokenizer could not be loaded from its configured location."""


class IncompatibleModelsError(AttentionFlowsError):
    """The two models of a pair cannot be compared (different vocabulary, layers or heads)."""


class InputTextError(AttentionFlowsError):
    """The text to analyse is empty or longer than the model accepts."""


class NotAClassifierError(AttentionFlowsError):
    """A prediction was asked of a model that has no classification head."""


class TargetClassError(AttentionFlowsError):
    """A target class that the classifier does not have (unknown name, index out of range)."""


class NoAttentionsError(AttentionFlowsError):
    """The model's forward pass returned no attention weights."""


class PrepareError(AttentionFlowsError):
    """Fine-tuning the default twin failed (missing data package, bad recipe)."""
