"""The texts the figure standard, the gallery and the browser tests draw: a sentence of about 30 tokens, a long review
and a sentence pair. The review is the one the issues call "the 137-word review": 121 words and punctuation marks
(106 words), 124 tokens with [CLS] and [SEP] — past the 40 tokens above which long inputs fold."""

from __future__ import annotations

THIRTY_TOKENS = (  # 26 tokens with [CLS] and [SEP]
    "the film is a slow , careful portrait of a family in crisis , and its quiet ending stays with you long after ."
)
LONG_REVIEW = (
    "i went into this movie expecting very little , and for the first half hour it seemed i was right : the plot is "
    "thin , the dialogue is clumsy and the lead actor looks bored . but then something changes . the music swells , "
    "the camera finds the faces of the children , and the story turns into a lovely , moving meditation on memory "
    "and loss . by the end i was in tears , and i am not ashamed to say that this is one of the most beautiful films "
    "of the year , flawed , uneven , sometimes silly , but honest and brave in a way that most greedy bastards in "
    "hollywood never manage ."
)
INPUTS: dict[str, tuple[str, str | None]] = {
    "sentence": (THIRTY_TOKENS, None),
    "review": (LONG_REVIEW, None),
    "pair": ("a man is playing a guitar on the stage .", "a person performs music for an audience ."),
}
