"""Which models a view draws for the "mode" option (``pretrained``, ``finetuned`` or ``comparison``), and the
colours that choice implies: decided here once for every figure builder."""

from __future__ import annotations

import numpy as np

from app.figures.theme import MODEL_COLOURS, STATUS_COLOURS

MODELS = ("pretrained", "finetuned")
DIFFERENCE = "difference"  # the panel of fine-tuned − pre-trained


def shown_models(mode: str) -> tuple[str, ...]:
    """The models drawn in ``mode``: both in comparison mode, else the chosen one."""
    return MODELS if mode == "comparison" else (mode,)


def shown_panels(mode: str) -> tuple[str, ...]:
    """The panels of a side-by-side view: :func:`shown_models`, plus their difference in comparison mode."""
    return (*MODELS, DIFFERENCE) if mode == "comparison" else (mode,)


def single_panel(mode: str) -> str:
    """What a one-panel view shows: the difference in comparison mode, else the chosen model."""
    return DIFFERENCE if mode == "comparison" else mode


def mode_colour(mode: str, status: str) -> str:
    """A graph link's (or legend entry's) colour: by ``status`` (which graphs draw it) in comparison mode, else
    the chosen model's colour."""
    return STATUS_COLOURS[status] if mode == "comparison" else MODEL_COLOURS[mode]


def reach_colours(mode: str, reached: np.ndarray) -> np.ndarray:
    """``[n]`` colours (object array) of tokens from ``reached`` ``[n, shown model]`` (bool: the model's trace
    reaches the token): in comparison mode by which traces reach it (both, only the pre-trained or only the
    fine-tuned one; :data:`~app.figures.theme.STATUS_COLOURS`), else the chosen model's colour."""
    if mode != "comparison":
        return np.full(len(reached), MODEL_COLOURS[mode], dtype=object)
    both, pretrained = reached.all(axis=1), reached[:, 0]
    status = np.where(both, "shared", np.where(pretrained, "pretrained_only", "finetuned_only"))
    return np.array([STATUS_COLOURS[s] for s in status], dtype=object)
