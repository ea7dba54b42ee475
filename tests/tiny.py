"""Build tiny random-weight models of several architectures, offline, for fast unit tests."""

from __future__ import annotations

from pathlib import Path


def _configs():
    from transformers import AlbertConfig, BertConfig, DistilBertConfig, ElectraConfig, RobertaConfig

    common = {"vocab_size": 30522, "max_position_embeddings": 64}
    return {
        "bert": BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, **common),
        "roberta": RobertaConfig(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, pad_token_id=0, **common
        ),
        "distilbert": DistilBertConfig(dim=16, n_layers=2, n_heads=2, hidden_dim=32, **common),
        "albert": AlbertConfig(
            embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, **common
        ),
        "electra": ElectraConfig(
            embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, **common
        ),
    }


def build_tiny_models(root: Path, tokenizer) -> dict[str, Path]:
    """Save one bare encoder per architecture, a BERT classifier, and a 3-layer BERT, each with ``tokenizer``.

    Returns ``{name: folder}``; names: the architectures, ``bert-classifier``, ``bert-3-layers``.
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)

    folders = {}
    builds = {name: (AutoModel, config) for name, config in _configs().items()}
    classifier = BertConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=30522,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "LABEL_0", 1: "LABEL_1"},
        label2id={"LABEL_0": 0, "LABEL_1": 1},
    )
    builds["bert-classifier"] = (AutoModelForSequenceClassification, classifier)
    builds["bert-3-layers"] = (
        AutoModel,
        BertConfig(
            hidden_size=16,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=32,
            vocab_size=30522,
            max_position_embeddings=64,
        ),
    )
    for name, (auto_class, config) in builds.items():
        folder = root / name
        auto_class.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[name] = folder
    return folders


_DECODER_TEXTS = [
    "a gorgeous, witty, seductive movie.",
    "the plot is thin and the acting is wooden; a dull, tedious film.",
    "it is not a bad film, but it is not a good one either.",
    "an utterly charming and hilarious ride from start to finish!",
]


def tiny_decoder_tokenizer():
    """A byte-level BPE tokenizer (as GPT-2, Llama 3 and SmolLM use) learnt from a few sentences: ~300 pieces, with
    ``<|endoftext|>`` as its begin, end and padding token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(_DECODER_TEXTS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def tiny_sentencepiece_tokenizer():
    """A SentencePiece-style BPE tokenizer as Gemma's: spaces become ``▁`` at the start of a piece and there is no
    pre-tokenizer when it encodes, so its word ids put the whole text in one word (the engine finds the words from
    the markers). Learnt word by word, so no piece spans two words."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"])
    backend.train_from_iterator(_DECODER_TEXTS, trainer)
    backend.pre_tokenizer = None
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    backend.decoder = decoders.Replace("\u2581", " ")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    tokenizer.add_bos_token = True
    return tokenizer


def _decoder_configs(vocab_size: int, pad: int) -> dict:
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig

    ids = {"vocab_size": vocab_size, "pad_token_id": pad, "bos_token_id": pad, "eos_token_id": pad}
    return {
        # grouped-query attention: 4 query heads share 2 key/value heads, as SmolLM2's 9 share 3
        "llama": LlamaConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=64, **ids,
        ),
        "gemma3": Gemma3TextConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
            head_dim=4, max_position_embeddings=64, sliding_window=4,
            layer_types=["sliding_attention", "full_attention"], **ids,
        ),
        "gpt2": GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=64, **ids),
    }  # fmt: skip


def build_tiny_decoders(root: Path) -> dict[str, Path]:
    """Save tiny random decoders (Llama with grouped-query attention, Gemma 3 with a sliding-window layer, GPT-2)
    as bare networks, and a Llama classifier (a head on the last token), each with :func:`tiny_decoder_tokenizer`
    (Gemma 3 with :func:`tiny_sentencepiece_tokenizer`, as the real one).

    Returns ``{name: folder}``; names: ``llama``, ``gemma3``, ``gpt2``, ``llama-classifier``.
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    tokenizer, pieces = tiny_decoder_tokenizer(), tiny_sentencepiece_tokenizer()
    configs = _decoder_configs(len(tokenizer), tokenizer.pad_token_id)
    configs["gemma3"] = _decoder_configs(len(pieces), pieces.pad_token_id)["gemma3"]  # Gemma's kind of tokenizer
    builds = {name: (AutoModel, config) for name, config in configs.items()}
    labels = {"num_labels": 2, "id2label": {0: "LABEL_0", 1: "LABEL_1"}, "label2id": {"LABEL_0": 0, "LABEL_1": 1}}
    classifier = type(configs["llama"])(**{**configs["llama"].to_dict(), **labels})
    builds["llama-classifier"] = (AutoModelForSequenceClassification, classifier)
    folders = {}
    for name, (auto_class, config) in builds.items():
        folder = root / name
        model = auto_class.from_config(config, attn_implementation="eager")
        with torch.no_grad():  # norms start at 1 (Gemma's at 0, i.e. x 1): random ones show a missed multiplier
            for parameter_name, parameter in model.named_parameters():
                if "norm" in parameter_name or "ln_" in parameter_name:
                    parameter.normal_(0.0, 0.5)
        model.save_pretrained(folder)
        (pieces if name == "gemma3" else tokenizer).save_pretrained(folder)
        folders[name] = folder
    return folders
