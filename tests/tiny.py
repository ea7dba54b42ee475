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
