"""Load encoders and decoders offline, always with eager attention, and check that two models can be compared."""

from __future__ import annotations

# Lazy imports (torch, transformers, safetensors): loaded with a model, so `import attention` stays light.
import gc
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from attention.config import PairConfig, load_config, resolve_model_dir
from attention.errors import IncompatibleModelsError, ModelLoadError
from attention.settings import Settings, configure_torch, load_settings
from attention.shortcut import install_first_position_hook

# Never reach a model hub: every model is read from a local folder.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class ModelShape:
    """Layers and attention heads per layer: what a pair must share, and what the page layout needs; ``causal``: a
    decoder, as far as its config.json tells (the loaded model's :func:`is_causal` is what the engine reads)."""

    num_layers: int
    num_heads: int
    causal: bool = False


# config.json spellings of the layer and head counts (BERT-style first; DistilBERT uses n_layers / n_heads).
_LAYER_KEYS = ("num_hidden_layers", "n_layers", "num_layers")
_HEAD_KEYS = ("num_attention_heads", "n_heads", "num_heads")
# model_type of the decoder-only families transformers ships (config.json names no attention kind)
_DECODER_TYPES = frozenset(
    {
        "llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "gpt2",
        "gpt_neo", "gpt_neox", "gptj", "phi", "phi3", "olmo", "olmo2", "falcon", "opt", "bloom", "starcoder2",
        "stablelm", "cohere", "granite", "smollm3",
    }
)  # fmt: skip


def _config_says_causal(hf_config: dict) -> bool:
    architectures = hf_config.get("architectures") or []
    return bool(
        hf_config.get("is_decoder")
        or hf_config.get("model_type") in _DECODER_TYPES
        or any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    )


def read_shape(folder: str | Path) -> ModelShape:
    """The model's shape from ``folder/config.json``, without loading weights or importing transformers (falls
    back to ``AutoConfig`` for configs that spell the counts differently)."""
    path = Path(folder) / "config.json"
    try:
        hf_config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"Could not read the model config {path}: {err}",
            "Point the config at a folder with config.json, weights and tokenizer files.",
        ) from err
    layers = next((hf_config[key] for key in _LAYER_KEYS if isinstance(hf_config.get(key), int)), None)
    heads = next((hf_config[key] for key in _HEAD_KEYS if isinstance(hf_config.get(key), int)), None)
    if layers is None or heads is None:
        from transformers import AutoConfig

        auto = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        layers, heads = auto.num_hidden_layers, auto.num_attention_heads
    return ModelShape(num_layers=int(layers), num_heads=int(heads), causal=_config_says_causal(hf_config))


def _shape_differences(a: ModelShape, b: ModelShape) -> list[str]:
    problems = []
    if a.num_layers != b.num_layers:
        problems.append(f"layers: {a.num_layers} vs {b.num_layers}")
    if a.num_heads != b.num_heads:
        problems.append(f"heads per layer: {a.num_heads} vs {b.num_heads}")
    return problems


def _incompatible(name_a: str, name_b: str, problems: list[str]) -> IncompatibleModelsError:
    return IncompatibleModelsError(
        f"Models '{name_a}' and '{name_b}' cannot be compared; they differ in " + "; ".join(problems) + ".",
        "Pair a fine-tuned model with the pre-trained model it was fine-tuned from.",
    )


def folder_sha256(folder: Path) -> str:
    """sha256 over a model folder's config and weights files: the revision a corpus was computed with."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.suffix in (".json", ".safetensors", ".bin", ".txt", ".model"):
            digest.update(path.name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model in eval mode with its tokenizer and the facts the engine needs about it."""

    name: str
    path: Path
    model: object  # transformers.PreTrainedModel
    tokenizer: object  # transformers tokenizer
    is_classifier: bool
    labels: tuple[str, ...]
    num_layers: int
    num_heads: int
    max_length: int
    first_position_hook: bool = False  # attention.shortcut: the last layer can run at position 0 only
    causal: bool = False  # a decoder: each token attends to itself and earlier tokens only

    @property
    def architecture(self) -> str:
        return type(self.model).__name__

    @cached_property
    def files_sha256(self) -> str:
        """:func:`folder_sha256` of this model's folder, worked out at first use and kept with the loaded model:
        the revision a corpus run's manifest records."""
        return folder_sha256(Path(self.path))

    @property
    def shape(self) -> ModelShape:
        return ModelShape(self.num_layers, self.num_heads, self.causal)


@dataclass(frozen=True, eq=False)
class ModelPair:
    """The pre-trained model and its fine-tuned twin, checked to be comparable."""

    config: PairConfig
    pretrained: LoadedModel
    finetuned: LoadedModel

    @cached_property
    def shared_tokenizer(self) -> bool:
        """Whether one encoding serves both models (:func:`same_tokenizer`; worked out once per pair)."""
        return same_tokenizer(self.pretrained.tokenizer, self.finetuned.tokenizer)


def same_tokenizer(first, second) -> bool:
    """Whether two tokenizers split every input alike, so one encoding serves both models: fast tokenizers of one
    class whose backends (normalizer, pre-tokenizer, vocabulary, added tokens, post-processor) serialize to the same
    JSON and that agree on ``split_special_tokens`` (kept outside the backend). Slow tokenizers are never assumed
    alike. Padding is not compared: each model pads with its own tokenizer."""
    if first is second:
        return True
    backends = [getattr(t, "backend_tokenizer", None) for t in (first, second)]
    if any(b is None for b in backends) or type(first) is not type(second):
        return False
    if getattr(first, "split_special_tokens", False) != getattr(second, "split_special_tokens", False):
        return False
    # padding and truncation in the JSON are call-time state (a previous call's settings), not how text is split
    splits = [{k: v for k, v in json.loads(b.to_str()).items() if k not in ("padding", "truncation")} for b in backends]
    return splits[0] == splits[1]


def _is_classifier_config(hf_config: object) -> bool:
    architectures = getattr(hf_config, "architectures", None) or []
    return any(name.endswith("ForSequenceClassification") for name in architectures)


@contextmanager
def collector_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, then restore its previous state.

    Importing torch and transformers and building a model create hundreds of thousands of objects that all stay
    alive; the collections they trigger free nothing and cost about a fifth of the time
    (``attention-flows bench load``). With ``freeze``, a block that completes moves every object alive into the
    permanent generation (:func:`gc.freeze`) before the collector resumes, so later collections never scan them
    either: for a server, whose modules and models live as long as the process. Without it, the first collections
    after the block scan everything it created, once.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if freeze:
            gc.freeze()
    finally:
        if was_enabled:
            gc.enable()


def load_model(
    path_or_id: str | Path,
    *,
    name: str | None = None,
    labels: tuple[str, ...] | None = None,
    settings: Settings | None = None,
) -> LoadedModel:
    """Load a model and tokenizer from a local folder (or a hub id already in the local cache).

    Classifiers (``*ForSequenceClassification`` in the config) load with their head, anything else as the bare
    network (an encoder, or a decoder without its language-model head); ``causal`` says which attention it has.
    ``labels`` renames the classes (in the model's label order). Always ``attn_implementation="eager"`` (other
    kernels return no attention weights) and never ``trust_remote_code``.
    """
    with collector_paused():
        return _load_model(path_or_id, name=name, labels=labels, settings=settings)


def _load_model(
    path_or_id: str | Path, *, name: str | None, labels: tuple[str, ...] | None, settings: Settings | None
) -> LoadedModel:
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars are noise for models this small
    settings = settings or load_settings()
    configure_torch(settings)
    location = str(path_or_id)
    display = name or Path(location).name or location
    if not Path(location).expanduser().exists() and Path(location).is_absolute():
        raise ModelLoadError(f"Model path {location} does not exist.", "Check the path in your config.")
    try:
        hf_config = AutoConfig.from_pretrained(location, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
        is_classifier = _is_classifier_config(hf_config)
        auto_class = AutoModelForSequenceClassification if is_classifier else AutoModel
        model = auto_class.from_pretrained(location, local_files_only=True, attn_implementation="eager")
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise ModelLoadError(
            f"Could not load model '{display}' from {location}: {err}".rstrip(),
            "Point the config at a folder with config.json, weights and tokenizer files (models are never downloaded).",
        ) from err
    model.eval()
    # Gradients are only ever taken with respect to inputs and attention weights, never the model's weights: frozen,
    # a pass keeps less for its backward pass (a corpus batch's forward + backward ~4 % faster).
    model.requires_grad_(False)
    if is_causal(model) and tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # a decoder pads batches (corpus runs) with its end-of-text token
    hooked = install_first_position_hook(model, tokenizer)
    num_labels = getattr(hf_config, "num_labels", 0) if is_classifier else 0
    model_labels = tuple(hf_config.id2label[i] for i in range(num_labels)) if is_classifier else ()
    if labels and is_classifier:
        if len(labels) != num_labels:
            raise ModelLoadError(
                f"The config lists {len(labels)} labels but model '{display}' has {num_labels} classes.",
                "Make [task].labels match the model's classes, in order.",
            )
        model_labels = tuple(labels)
    return LoadedModel(
        name=display,
        path=Path(location),
        model=model,
        tokenizer=tokenizer,
        is_classifier=is_classifier,
        labels=model_labels,
        num_layers=int(hf_config.num_hidden_layers),
        num_heads=int(hf_config.num_attention_heads),
        max_length=_max_length(tokenizer, hf_config),
        first_position_hook=hooked,
        causal=is_causal(model),
    )


def is_causal(network: object) -> bool:
    """Whether ``network`` masks attention causally (a decoder): transformers marks each attention module of a
    decoder with ``is_causal = True`` (an encoder's say False)."""
    return any(getattr(module, "is_causal", False) is True for module in network.modules())


def _max_length(tokenizer: object, hf_config: object) -> int:
    """Longest input in tokens: the tokenizer's limit, capped by the position embeddings when it is unset."""
    limits = [int(x) for x in (getattr(tokenizer, "model_max_length", 0),) if 0 < x < 1_000_000]
    positions = getattr(hf_config, "max_position_embeddings", None)
    if positions:
        # RoBERTa-style models reserve padding_idx + 1 positions.
        offset = getattr(hf_config, "pad_token_id", 0) + 1 if "roberta" in hf_config.model_type else 0
        limits.append(int(positions) - offset)
    return min(limits) if limits else 512


def check_comparable(a: LoadedModel, b: LoadedModel) -> None:
    """Refuse a pair whose attention maps cannot be compared, saying exactly what differs."""
    problems = _shape_differences(a.shape, b.shape)
    if a.causal != b.causal:
        problems.append(
            "attention: " + " vs ".join("causal (a decoder)" if m.causal else "bidirectional" for m in (a, b))
        )
    vocab_a, vocab_b = a.tokenizer.get_vocab(), b.tokenizer.get_vocab()
    if vocab_a != vocab_b:
        only_a, only_b = len(vocab_a.keys() - vocab_b.keys()), len(vocab_b.keys() - vocab_a.keys())
        problems.append(
            f"tokenizer vocabulary: {len(vocab_a)} vs {len(vocab_b)} entries "
            f"({only_a} only in the first, {only_b} only in the second)"
        )
    if problems:
        raise _incompatible(a.name, b.name, problems)


def pair_shape(config: str | Path | PairConfig = "default", *, settings: Settings | None = None) -> ModelShape:
    """The shape both models of a pair share, read from their config.json files in milliseconds: the checks
    :func:`load_pair` makes before the weights load (paths exist, layers and heads match)."""
    settings = settings or load_settings()
    pair_config = config if isinstance(config, PairConfig) else load_config(config)
    specs = (pair_config.pretrained, pair_config.finetuned)
    shapes = [
        read_shape(resolve_model_dir(spec, config_file=pair_config.source_path, settings=settings)) for spec in specs
    ]
    problems = _shape_differences(*shapes)
    if problems:
        raise _incompatible(specs[0].display_name, specs[1].display_name, problems)
    return shapes[0]


def load_pair(config: str | Path | PairConfig = "default", *, settings: Settings | None = None) -> ModelPair:
    """Load both models of a pair config (a name under ``configs/``, a path, or a loaded config)."""
    settings = settings or load_settings()
    pair_config = config if isinstance(config, PairConfig) else load_config(config)
    labels = pair_config.task.labels if pair_config.task else None
    models = []
    for spec in (pair_config.pretrained, pair_config.finetuned):
        folder = resolve_model_dir(spec, config_file=pair_config.source_path, settings=settings)
        models.append(load_model(folder, name=spec.display_name, labels=labels, settings=settings))
    check_comparable(*models)
    return ModelPair(config=pair_config, pretrained=models[0], finetuned=models[1])
