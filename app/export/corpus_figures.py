"""The corpus page's figures that export, by name: the one list the page's cards, the export engine
(:mod:`app.export.corpus`), its sidecar (:mod:`app.export.corpus_sidecar`) and ``attention-flows corpus export``
read. Plain data, so the command line's parser can list the names without loading pandas or plotly."""

from __future__ import annotations

from dataclasses import dataclass

from attention.errors import AttentionFlowsError


@dataclass(frozen=True)
class CorpusFigure:
    """One figure of the corpus page: its card's title and the options it takes (``metric``: the change measure of
    the head grid and the layer view; ``word``: the word query's word)."""

    title: str
    takes: tuple[str, ...]


CORPUS_FIGURES: dict[str, CorpusFigure] = {
    "heads": CorpusFigure("Which heads changed", ("metric",)),
    "layers": CorpusFigure("Which layers changed", ("metric",)),
    "word": CorpusFigure("Word query: attention from the traced token to a word", ("word",)),
    "head-map": CorpusFigure("Head similarity map", ()),
}
DEFAULT_METRIC = "js_divergence"


class CorpusExportError(AttentionFlowsError):
    """A corpus figure that cannot be exported as asked (an unknown figure, an option it does not take)."""


def check_figure(name: object) -> str:
    """``name`` if it names a corpus figure; else an error that lists the names."""
    if not isinstance(name, str) or name not in CORPUS_FIGURES:
        raise CorpusExportError(
            f"There is no corpus figure called {name!r}.", f"Use one of: {', '.join(CORPUS_FIGURES)}."
        )
    return name


def figure_options(name: str, *, metric: str | None = None, word: str | None = None) -> dict[str, str]:
    """The options figure ``name`` is drawn with, checked: those it takes (``metric`` defaults to
    :data:`DEFAULT_METRIC`; ``word`` is needed and stripped), and none it does not take."""
    figure = CORPUS_FIGURES[check_figure(name)]
    given = {"metric": metric, "word": word}
    extra = [option for option, value in given.items() if value is not None and option not in figure.takes]
    if extra:
        takes = f"it takes {', '.join('--' + t for t in figure.takes)}" if figure.takes else "it takes no option"
        raise CorpusExportError(f"Figure '{name}' takes no --{extra[0]} ({takes}).", f"Drop --{extra[0]}.")
    options: dict[str, str] = {}
    if "metric" in figure.takes:
        options["metric"] = metric or DEFAULT_METRIC
    if "word" in figure.takes:
        if not isinstance(word, str) or not word.strip():
            raise CorpusExportError(f"Figure '{name}' needs a word.", "Give it with --word, e.g. --word great.")
        options["word"] = word.strip()
    return options
