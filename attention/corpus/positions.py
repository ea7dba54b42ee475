"""Where an example's own (unpadded) tokens sit in a padded batch: read by the batch passes
(:mod:`attention.corpus.batch`), the tables (:mod:`attention.corpus.tables`) and the context-mixing figures
(:mod:`attention.corpus.mixing`)."""

from __future__ import annotations

import numpy as np


def own_positions(mask_row) -> slice | np.ndarray:
    """An example's real (unpadded) positions from its attention-mask row ``[position]``: a slice when they are
    contiguous (a view, no copy: always, for the right-padded batches of :func:`attention.corpus.batch.padded`),
    else their indices (masks from elsewhere)."""
    real = np.flatnonzero(np.asarray(mask_row))
    return slice(int(real[0]), int(real[-1]) + 1) if real[-1] - real[0] + 1 == real.size else real
