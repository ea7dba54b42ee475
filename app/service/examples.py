"""The sentences the page offers for a pair, with their gold labels where the data has them."""

from __future__ import annotations

from dataclasses import dataclass, field

from attention.config import PairConfig
from attention.data import labelled_examples


@dataclass(frozen=True)
class Examples:
    """A pair's example sentences (in the page's order) and the gold label of those that have one."""

    texts: list[str] = field(default_factory=list)
    golds: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, config: PairConfig) -> Examples:
        items = example_items(config)
        return cls([text for text, _ in items], {text: gold for text, gold in items if gold})


def example_items(config: PairConfig) -> list[tuple[str, str | None]]:
    """The sentences the page offers with their gold label: the config's ``examples`` (no label), else held-out
    sentences of its data (the label the twin was never trained on)."""
    if config.examples:
        return [(text, None) for text in config.examples]
    if config.prepare is None:
        return []
    names = config.task.labels if config.task else ()
    try:
        return [(text, names[label] if label < len(names) else str(label)) for text, label in
                labelled_examples(config.prepare)]  # fmt: skip
    except Exception:  # examples are a convenience: a missing data package must not stop the dashboard
        return []
