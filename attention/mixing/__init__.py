"""Context mixing: what each token's representation is really made of, layer by layer (contribution maps), and
each input token's signed part of a class logit (DecompX). See docs/method.md §"Context mixing"."""

from attention.mixing.contributions import (
    MEASURES,
    MIXING_MEASURES,
    Contributions,
    contributions,
    contributions_for,
)
from attention.mixing.layers import UnsupportedArchitectureError

__all__ = [
    "MEASURES",
    "MIXING_MEASURES",
    "Contributions",
    "UnsupportedArchitectureError",
    "contributions",
    "contributions_for",
]
