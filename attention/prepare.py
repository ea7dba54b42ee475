"""Make the fine-tuned twin: the pre-trained encoder plus a classification head, trained on held-in data.

``prepare_finetuned`` is what ``attention-flows prepare`` runs. It is deterministic for a given recipe (seeded data
split, seeded initialisation, one torch thread), never trains on the held-out rows, writes atomically (a temporary
folder renamed into place) and does nothing when a model made from the same recipe already exists.
"""

from __future__ import annotations

# Lazy imports (torch, transformers, tqdm): loaded when fine-tuning, so `import attention` stays light.
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock

from attention.config import PairConfig, PrepareRecipe, load_config, resolve_model_dir
from attention.data import load_labelled, split_labelled
from attention.errors import PrepareError
from attention.settings import Settings, configure_torch, load_settings
from attention.version import __version__

CARD_FILE = "training.json"


@dataclass(frozen=True)
class PrepareResult:
    """What ``prepare_finetuned`` did. ``skipped`` is True when an up-to-date model already existed."""

    path: Path
    skipped: bool
    held_out_accuracy: float
    seconds: float
    steps: int


def prepared_dir(config: PairConfig, settings: Settings) -> Path:
    """Folder the config's fine-tuned model is written to."""
    if not config.finetuned.prepared:
        raise PrepareError(
            f"Config '{config.name}' does not ask for a prepared model (its [finetuned] has no 'prepared').",
            "Only configs whose fine-tuned model is made by this project can be prepared.",
        )
    return settings.models_dir / config.finetuned.prepared


def read_card(folder: Path) -> dict | None:
    """The training record written next to a prepared model, or None."""
    card = folder / CARD_FILE
    return json.loads(card.read_text(encoding="utf-8")) if card.is_file() else None


def prepare_finetuned(
    config: str | Path | PairConfig = "default",
    *,
    settings: Settings | None = None,
    force: bool = False,
    target: Path | None = None,
    recipe_overrides: dict | None = None,
    progress: bool = True,
) -> PrepareResult:
    """Fine-tune the pair's pre-trained model on the recipe's data and save it (safetensors + tokenizer + card).

    ``target`` overrides the output folder and ``recipe_overrides`` changes recipe fields (tests use both for a
    small, fast variant). Returns the held-out accuracy measured on ``recipe.held_out_size`` unseen sentences.
    """
    settings = settings or load_settings()
    pair_config = config if isinstance(config, PairConfig) else load_config(config)
    out_dir = target or prepared_dir(pair_config, settings)
    if pair_config.prepare is None or pair_config.task is None:
        raise PrepareError(f"Config '{pair_config.name}' has no [prepare] recipe or [task].", "Add both tables.")
    recipe = pair_config.prepare.model_copy(update=recipe_overrides or {})
    recipe = PrepareRecipe.model_validate(recipe.model_dump())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # One prepare per folder at a time: a second `prepare` (another shell, another test worker) waits, then finds
    # the model the first one made instead of training it again.
    with FileLock(out_dir.parent / f".{out_dir.name}.lock"):
        card = read_card(out_dir)
        if card and card.get("recipe") == recipe.model_dump() and not force:
            return PrepareResult(out_dir, True, card["held_out_accuracy"], 0.0, card["steps"])
        return _prepare(pair_config, recipe, out_dir, settings, progress)


def _prepare(
    pair_config: PairConfig, recipe: PrepareRecipe, out_dir: Path, settings: Settings, progress: bool
) -> PrepareResult:
    """Train, measure and save the twin (the caller holds the folder's lock)."""
    base_dir = resolve_model_dir(pair_config.pretrained, config_file=pair_config.source_path, settings=settings)
    configure_torch(settings)
    started = time.perf_counter()
    split = split_labelled(load_labelled(recipe), recipe)
    labels = pair_config.task.labels
    if sorted(split.train["label"].unique()) != list(range(len(labels))):
        raise PrepareError(
            f"Training labels {sorted(split.train['label'].unique())} do not match the {len(labels)} task labels.",
            "Make [task].labels list one name per class id 0..N-1.",
        )
    model, tokenizer, steps = _train(base_dir, split.train, recipe, labels, progress)
    accuracy = _accuracy(model, tokenizer, split.held_out, recipe, progress)
    seconds = time.perf_counter() - started
    record = {
        "package_version": __version__,
        "base_model": pair_config.pretrained.display_name,
        "base_path": str(base_dir),
        "task": pair_config.task.name,
        "labels": list(labels),
        "train_rows": len(split.train),
        "held_out_rows": len(split.held_out),
        "held_out_accuracy": accuracy,
        "steps": steps,
        "seconds": round(seconds, 1),
        "torch_threads": settings.torch_threads,
        "recipe": recipe.model_dump(),
    }
    _save_atomically(model, tokenizer, record, out_dir)
    return PrepareResult(out_dir, False, accuracy, seconds, steps)


def _batches(
    frame: pd.DataFrame, batch_size: int, rng: np.random.Generator | None
) -> Iterator[tuple[list[str], np.ndarray]]:
    """(texts, labels) batches, shuffled by ``rng`` or in order."""
    order = rng.permutation(len(frame)) if rng is not None else np.arange(len(frame))
    for start in range(0, len(order), batch_size):
        rows = frame.iloc[order[start : start + batch_size]]
        yield rows["text"].tolist(), rows["label"].to_numpy()


def _train(
    base_dir: Path, train: pd.DataFrame, recipe: PrepareRecipe, labels: tuple[str, ...], progress: bool
) -> tuple[Any, Any, int]:
    """Fine-tune encoder + new head with AdamW and linear warm-up/decay; returns (model, tokenizer, steps)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # the new head's "MISSING classifier.*" load report is expected here
    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir,
        local_files_only=True,
        attn_implementation="eager",
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model.train()
    steps = recipe.epochs * math.ceil(len(train) / recipe.batch_size)
    warmup = int(recipe.warmup_ratio * steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / max(warmup, 1), max(0.0, (steps - step) / max(steps - warmup, 1)))
    )
    rng = np.random.default_rng(recipe.seed)
    bar = tqdm(total=steps, desc="fine-tuning", unit="step", disable=not progress)
    for _ in range(recipe.epochs):
        for texts, targets in _batches(train, recipe.batch_size, rng):
            batch = tokenizer(texts, truncation=True, max_length=recipe.max_length, padding=True, return_tensors="pt")
            loss = model(**batch, labels=torch.tensor(targets, dtype=torch.long)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    return model, tokenizer, steps


def _accuracy(model: Any, tokenizer: Any, held_out: pd.DataFrame, recipe: PrepareRecipe, progress: bool) -> float:
    import torch
    from tqdm.auto import tqdm

    correct = 0
    batches = _batches(held_out, 64, None)
    with torch.inference_mode():
        for texts, targets in tqdm(batches, total=math.ceil(len(held_out) / 64), desc="held-out", disable=not progress):
            batch = tokenizer(texts, truncation=True, max_length=recipe.max_length, padding=True, return_tensors="pt")
            predicted = model(**batch).logits.argmax(-1).numpy()
            correct += int((predicted == targets).sum())
    return correct / len(held_out)


def _card_text(record: dict) -> str:
    recipe = record["recipe"]
    return "\n".join(
        [
            f"# {record['base_model']} fine-tuned for {record['task']}",
            "",
            "Made by `attention-flows prepare` (Attention Flows "
            f"{record['package_version']}). Reproducible: same recipe, same seed, same split.",
            "",
            f"- Base model: {record['base_model']}",
            f"- Data: `{recipe['data_package']}` / `{recipe['data_file']}`, rows with source == `{recipe['source']}`",
            f"- Labels: {', '.join(record['labels'])}",
            f"- Seed: {recipe['seed']}; training rows: {record['train_rows']}; epochs: {recipe['epochs']}; "
            f"batch size: {recipe['batch_size']}; max length: {recipe['max_length']}; "
            f"learning rate: {recipe['learning_rate']}",
            f"- Optimiser steps: {record['steps']} ({record['seconds']} s, {record['torch_threads']} torch thread(s))",
            f"- **Held-out accuracy: {record['held_out_accuracy']:.4f}** on {record['held_out_rows']} sentences "
            "never used in training",
            "",
        ]
    )


def _save_atomically(model: Any, tokenizer: Any, record: dict, out_dir: Path) -> None:
    """Write the model folder under a temporary name, then rename it into place (never a half-written model)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / CARD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        (staging / "README.md").write_text(_card_text(record), encoding="utf-8")
        _follow_umask(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _follow_umask(folder: Path) -> None:
    """Give ``folder`` and everything in it the modes a plain ``mkdir`` / ``open`` would: mkdtemp makes 0700 and
    safetensors writes 0600, so a prepared model would otherwise be private while the rest of the data home is not."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
