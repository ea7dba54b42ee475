"""Make the fine-tuned twin: the pre-trained encoder plus a classification head, trained on held-in data.

``prepare_finetuned`` is what ``attention-flows prepare`` runs. It is deterministic for a given recipe (seeded data
split, seeded initialisation, one torch thread), never trains on the held-out rows, writes atomically (a temporary
folder renamed into place) and does nothing when a model made from the same recipe already exists.
"""

from __future__ import annotations

# Lazy imports (torch, transformers, tqdm): loaded when fine-tuning, so `import attention` stays light.
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from filelock import FileLock

from attention.config import PairConfig, PrepareRecipe, gguf_converted_dir, load_config, resolve_model_dir
from attention.data import load_labelled, split_labelled
from attention.errors import PrepareError
from attention.files import follow_umask, staged_folder
from attention.gguf import read_conversion
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
    base_zero_shot_accuracy: float | None = None  # the pre-trained decoder's own accuracy with the recipe's prompt


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


def same_recipe(card: dict, recipe: PrepareRecipe) -> bool:
    """Whether a card's recipe is ``recipe`` (a card written before a field existed holds that field's default)."""
    if not isinstance(card.get("recipe"), dict):
        return False
    try:
        return PrepareRecipe.model_validate(card["recipe"]) == recipe
    except ValueError:
        return False


def base_source_sha256(pair_config: PairConfig, settings: Settings) -> str | None:
    """The SHA-256 of the GGUF file the pair's pre-trained model was converted from (its conversion card), or None
    for a base that is not a GGUF file or not converted yet."""
    if not pair_config.pretrained.gguf_file:
        return None
    card = read_conversion(gguf_converted_dir(pair_config.pretrained, settings))
    return card.get("source_sha256") if card else None


def base_changed(card: dict, pair_config: PairConfig, settings: Settings) -> bool:
    """Whether the twin on ``card`` was fine-tuned from another GGUF file than the one now converted (a card written
    before the field existed says nothing: not changed)."""
    recorded = card.get("base_source_sha256")
    return recorded is not None and recorded != base_source_sha256(pair_config, settings)


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
        if card and same_recipe(card, recipe) and not base_changed(card, pair_config, settings) and not force:
            zero_shot = card.get("base_zero_shot_accuracy")
            return PrepareResult(out_dir, True, card["held_out_accuracy"], 0.0, card["steps"], zero_shot)
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
    zero_shot = None
    if recipe.zero_shot_prompt is not None:
        zero_shot = _zero_shot_accuracy(base_dir, split.held_out, recipe, progress)
    seconds = time.perf_counter() - started
    record = {
        "package_version": __version__,
        "base_model": pair_config.pretrained.display_name,
        "base_path": str(base_dir),
        "base_source_sha256": base_source_sha256(pair_config, settings),
        "task": pair_config.task.name,
        "labels": list(labels),
        "train_rows": len(split.train),
        "held_out_rows": len(split.held_out),
        "held_out_accuracy": accuracy,
        "base_zero_shot_accuracy": zero_shot,
        "steps": steps,
        "seconds": round(seconds, 1),
        "torch_threads": settings.torch_threads,
        "recipe": recipe.model_dump(),
    }
    _save_atomically(model, tokenizer, record, out_dir)
    return PrepareResult(out_dir, False, accuracy, seconds, steps, zero_shot)


def _batches(
    frame: pd.DataFrame, batch_size: int, rng: np.random.Generator | None, *, by_length: bool = False
) -> Iterator[tuple[list[str], np.ndarray]]:
    """(texts, labels) batches, shuffled by ``rng`` or in order. ``by_length``: each batch holds sentences of similar
    length (sorted by characters, then the batches shuffled by ``rng``), so little of a batch is padding."""
    if by_length:
        order = np.argsort(frame["text"].str.len().to_numpy(), kind="stable")
        chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if rng is not None:
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    else:
        order = rng.permutation(len(frame)) if rng is not None else np.arange(len(frame))
        chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for chunk in chunks:
        rows = frame.iloc[chunk]
        yield rows["text"].tolist(), rows["label"].to_numpy()


def _classifier(base_dir: Path, labels: tuple[str, ...]) -> tuple[Any, Any]:
    """The base model with a new classification head, and its tokenizer. A decoder's head reads the last token
    that is not padding, so its config needs a pad token id (the tokenizer's, else its end-of-text token)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = _padded(AutoTokenizer.from_pretrained(base_dir, local_files_only=True), base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir,
        local_files_only=True,
        attn_implementation="eager",
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=tokenizer.pad_token_id,
    )
    return model, tokenizer


def _padded(tokenizer: Any, base_dir: Path) -> Any:
    """``tokenizer`` with a pad token (its own, else its end-of-text token): batches of several lengths need one."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise PrepareError(
                f"The tokenizer of {base_dir} has neither a pad nor an end-of-text token to pad batches with.",
                "Add a pad_token to its tokenizer_config.json.",
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _trainable(model: Any, top_layers: int | None) -> list:
    """The parameters to train: all of them, or the top ``top_layers`` layers, the norm after them and the head."""
    if top_layers is None:
        return list(model.parameters())
    network = model.base_model
    encoder = getattr(network, "encoder", None)
    layers = getattr(network, "layers", None) or getattr(network, "h", None) or getattr(encoder, "layer", None)
    if layers is None:
        raise PrepareError(
            f"train_layers needs a model whose layers it can find; {type(network).__name__}'s it cannot.",
            "Leave train_layers out (every layer is trained).",
        )
    if top_layers > len(layers):
        raise PrepareError(f"train_layers={top_layers}, but the model has {len(layers)} layers.", "Lower it.")
    model.requires_grad_(False)
    final_norm = [m for name, m in network.named_children() if name in ("norm", "ln_f", "pooler")]
    head = [m for name, m in model.named_children() if m is not network]
    for module in [*layers[-top_layers:], *final_norm, *head]:
        module.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _train(
    base_dir: Path, train: pd.DataFrame, recipe: PrepareRecipe, labels: tuple[str, ...], progress: bool
) -> tuple[Any, Any, int]:
    """Fine-tune with AdamW and linear warm-up/decay (every layer and the new head, or the recipe's top layers);
    returns (model, tokenizer, steps). Training passes use PyTorch's fused attention ("sdpa", the same function as
    eager, no weights kept) and, with ``mixed_precision``, bfloat16 autocast; the model is saved in float32."""
    import torch
    from tqdm.auto import tqdm
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # the new head's "MISSING classifier.*" load report is expected here
    torch.manual_seed(recipe.seed)
    model, tokenizer = _classifier(base_dir, labels)
    parameters = _trainable(model, recipe.train_layers)
    model.set_attn_implementation("sdpa")
    model.train()
    steps = recipe.epochs * math.ceil(len(train) / recipe.batch_size)
    warmup = int(recipe.warmup_ratio * steps)
    optimizer = torch.optim.AdamW(parameters, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / max(warmup, 1), max(0.0, (steps - step) / max(steps - warmup, 1)))
    )
    rng = np.random.default_rng(recipe.seed)
    bar = tqdm(total=steps, desc="fine-tuning", unit="step", disable=not progress)
    precision = torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.mixed_precision)
    for _ in range(recipe.epochs):
        for texts, targets in _batches(train, recipe.batch_size, rng, by_length=recipe.length_buckets):
            batch = tokenizer(texts, truncation=True, max_length=recipe.max_length, padding=True, return_tensors="pt")
            with precision:
                loss = model(**batch, labels=torch.tensor(targets, dtype=torch.long)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    model.set_attn_implementation("eager")
    return model, tokenizer, steps


def _accuracy(model: Any, tokenizer: Any, held_out: pd.DataFrame, recipe: PrepareRecipe, progress: bool) -> float:
    """The saved model's accuracy on the held-out rows (float32; batches of similar length, the result the same)."""
    import torch
    from tqdm.auto import tqdm

    correct = 0
    batches = _batches(held_out, 64, None, by_length=True)
    model.set_attn_implementation("sdpa")  # the same function as eager, no weights kept
    with torch.inference_mode():
        for texts, targets in tqdm(batches, total=math.ceil(len(held_out) / 64), desc="held-out", disable=not progress):
            batch = tokenizer(texts, truncation=True, max_length=recipe.max_length, padding=True, return_tensors="pt")
            predicted = model(**batch).logits.argmax(-1).numpy()
            correct += int((predicted == targets).sum())
    model.set_attn_implementation("eager")
    return correct / len(held_out)


def _zero_shot_accuracy(base_dir: Path, held_out: pd.DataFrame, recipe: PrepareRecipe, progress: bool) -> float:
    """The pre-trained decoder's own accuracy on the held-out rows: each sentence in ``zero_shot_prompt``, the label
    whose answer's first token has the largest next-token logit (float32)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = _padded(AutoTokenizer.from_pretrained(base_dir, local_files_only=True), base_dir)
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(base_dir, local_files_only=True, attn_implementation="sdpa").eval()
    answers = [tokenizer(answer, add_special_tokens=False)["input_ids"][0] for answer in recipe.zero_shot_answers]
    if len(set(answers)) != len(answers):
        raise PrepareError("Two zero-shot answers begin with the same token.", "Make their first tokens differ.")
    correct = 0
    batches = tqdm(
        _batches(held_out, 64, None, by_length=True), total=math.ceil(len(held_out) / 64), desc="zero-shot",
        disable=not progress,
    )  # fmt: skip
    with torch.inference_mode():
        for texts, targets in batches:
            prompts = [recipe.zero_shot_prompt.format(text=text) for text in texts]
            batch = tokenizer(prompts, padding=True, return_tensors="pt")
            last = batch["attention_mask"].sum(dim=1) - 1  # right padding: each prompt's last token
            # the output layer on each prompt's last state only: Gemma's 262k-word vocabulary at every position
            # costs more than the decoder (a final logit soft-cap is monotonic: the argmax is unchanged)
            hidden = model.base_model(**batch).last_hidden_state[torch.arange(len(texts)), last]
            logits = model.get_output_embeddings()(hidden)[:, answers]
            correct += int((logits.argmax(-1).numpy() == targets).sum())
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
            f"- Base model: {record['base_model']}"
            + (
                f" (converted from a GGUF file of SHA-256 `{sha}`)" if (sha := record.get("base_source_sha256")) else ""
            ),
            f"- Data: `{recipe['data_package']}` / `{recipe['data_file']}`, rows with source == `{recipe['source']}`",
            f"- Labels: {', '.join(record['labels'])}",
            f"- Seed: {recipe['seed']}; training rows: {record['train_rows']}; epochs: {recipe['epochs']}; "
            f"batch size: {recipe['batch_size']}; max length: {recipe['max_length']}; "
            f"learning rate: {recipe['learning_rate']}",
            f"- Optimiser steps: {record['steps']} ({record['seconds']} s, {record['torch_threads']} torch thread(s))",
            f"- **Held-out accuracy: {record['held_out_accuracy']:.4f}** on {record['held_out_rows']} sentences "
            "never used in training",
            *_zero_shot_lines(record),
            "",
        ]
    )


def _zero_shot_lines(record: dict) -> list[str]:
    if record.get("base_zero_shot_accuracy") is None:
        return []
    recipe = record["recipe"]
    answers = " / ".join(repr(a) for a in recipe["zero_shot_answers"])
    return [
        f"- The base model's own zero-shot accuracy on the same sentences: {record['base_zero_shot_accuracy']:.4f} "
        f"(prompt {recipe['zero_shot_prompt']!r}, answers {answers}: the larger next-token logit decides)",
        f"- Layers trained: the top {recipe['train_layers']}, the final norm and the head"
        if recipe.get("train_layers")
        else "- Layers trained: all",
    ]


def _save_atomically(model: Any, tokenizer: Any, record: dict, out_dir: Path) -> None:
    """Write the model folder under a temporary name, then rename it into place (never a half-written model)."""
    with staged_folder(out_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / CARD_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
        (staging / "README.md").write_text(_card_text(record), encoding="utf-8")
        follow_umask(staging)
