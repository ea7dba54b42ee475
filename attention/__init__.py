"""Attention Flows engine: extract, trace and compare the self-attention of a pre-trained encoder and its
fine-tuned twin. Pure numpy / pandas / torch; never imports dash or plotly.

>>> import attention
>>> pair = attention.load_pair("default")                       # doctest: +SKIP
>>> runs = attention.extract_pair(pair, "a gorgeous, witty film")  # doctest: +SKIP
>>> attention.compare_heads(runs.pretrained, runs.finetuned)     # doctest: +SKIP

Names load lazily (PEP 562): ``import attention`` does not import torch, transformers or numba; the functions
that need them import them, so the dashboard can serve its page while the models load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from attention.version import __version__ as __version__  # re-exported

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "EDGE_STATUSES": "attention.compare",
    "GraphComparison": "attention.compare",
    "attention_matrices": "attention.compare",
    "attention_received": "attention.compare",
    "compare_graphs": "attention.compare",
    "compare_heads": "attention.compare",
    "compare_layers": "attention.compare",
    "compare_relevance": "attention.compare",
    "graph_for": "attention.compare",
    "head_embedding": "attention.compare",
    "head_stats": "attention.compare",
    "relevance_frame": "attention.compare",
    "relevance": "attention.methods",
    "merge_scores": "attention.methods",
    "ClassRelevance": "attention.gradients",
    "class_relevance": "attention.gradients",
    "blank_out": "attention.gradients",
    "extract_and_explain": "attention.gradients",
    "faithfulness": "attention.evaluation",
    "TargetClassError": "attention.errors",
    "PairConfig": "attention.config",
    "available_configs": "attention.config",
    "load_config": "attention.config",
    "AttentionFlowsError": "attention.errors",
    "ConfigError": "attention.errors",
    "IncompatibleModelsError": "attention.errors",
    "InputTextError": "attention.errors",
    "ModelLoadError": "attention.errors",
    "NoAttentionsError": "attention.errors",
    "NotAClassifierError": "attention.errors",
    "PrepareError": "attention.errors",
    "AttentionRun": "attention.extraction",
    "PairRuns": "attention.extraction",
    "Prediction": "attention.extraction",
    "extract": "attention.extraction",
    "extract_pair": "attention.extraction",
    "predict": "attention.extraction",
    "attention_flow": "attention.flow",
    "max_flow_values": "attention.flow",
    "DEFAULT_ALPHA": "attention.graph",
    "DEFAULT_TAU": "attention.graph",
    "AttentionGraph": "attention.graph",
    "attention_graph": "attention.graph",
    "LoadedModel": "attention.models",
    "ModelPair": "attention.models",
    "check_comparable": "attention.models",
    "load_model": "attention.models",
    "load_pair": "attention.models",
    "PrepareResult": "attention.prepare",
    "prepare_finetuned": "attention.prepare",
    "residual_maps": "attention.rollouts",
    "rollout": "attention.rollouts",
    "Settings": "attention.settings",
    "load_settings": "attention.settings",
    "drop_tokens": "attention.transforms",
    "merge_groups": "attention.transforms",
    "MEASURES": "attention.mixing.contributions",
    "MIXING_MEASURES": "attention.mixing.contributions",
    "Contributions": "attention.mixing.contributions",
    "contributions": "attention.mixing.contributions",
    "contributions_for": "attention.mixing.contributions",
    "UnsupportedArchitectureError": "attention.mixing.layers",
    "DecompX": "attention.mixing.decompx",
    "decompx": "attention.mixing.decompx",
}

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_TAU",
    "EDGE_STATUSES",
    "MEASURES",
    "MIXING_MEASURES",
    "AttentionFlowsError",
    "AttentionGraph",
    "AttentionRun",
    "ClassRelevance",
    "ConfigError",
    "Contributions",
    "DecompX",
    "GraphComparison",
    "IncompatibleModelsError",
    "InputTextError",
    "LoadedModel",
    "ModelLoadError",
    "ModelPair",
    "NoAttentionsError",
    "NotAClassifierError",
    "PairConfig",
    "PairRuns",
    "Prediction",
    "PrepareError",
    "PrepareResult",
    "Settings",
    "TargetClassError",
    "UnsupportedArchitectureError",
    "attention_flow",
    "attention_graph",
    "attention_matrices",
    "attention_received",
    "available_configs",
    "blank_out",
    "check_comparable",
    "class_relevance",
    "compare_graphs",
    "compare_heads",
    "compare_layers",
    "compare_relevance",
    "contributions",
    "contributions_for",
    "decompx",
    "drop_tokens",
    "extract",
    "extract_and_explain",
    "extract_pair",
    "faithfulness",
    "graph_for",
    "head_embedding",
    "head_stats",
    "load_config",
    "load_model",
    "load_pair",
    "load_settings",
    "max_flow_values",
    "merge_groups",
    "merge_scores",
    "predict",
    "prepare_finetuned",
    "relevance",
    "relevance_frame",
    "residual_maps",
    "rollout",
]

if TYPE_CHECKING:  # let type checkers and IDEs see the names
    from attention.compare import (
        EDGE_STATUSES,
        GraphComparison,
        attention_matrices,
        attention_received,
        compare_graphs,
        compare_heads,
        compare_layers,
        compare_relevance,
        graph_for,
        head_embedding,
        head_stats,
        relevance_frame,
    )
    from attention.config import PairConfig, available_configs, load_config
    from attention.errors import (
        AttentionFlowsError,
        ConfigError,
        IncompatibleModelsError,
        InputTextError,
        ModelLoadError,
        NoAttentionsError,
        NotAClassifierError,
        PrepareError,
        TargetClassError,
    )
    from attention.evaluation import faithfulness
    from attention.extraction import AttentionRun, PairRuns, Prediction, extract, extract_pair, predict
    from attention.flow import attention_flow, max_flow_values
    from attention.gradients import ClassRelevance, blank_out, class_relevance, extract_and_explain
    from attention.graph import DEFAULT_ALPHA, DEFAULT_TAU, AttentionGraph, attention_graph
    from attention.methods import merge_scores, relevance
    from attention.mixing.contributions import (
        MEASURES,
        MIXING_MEASURES,
        Contributions,
        contributions,
        contributions_for,
    )
    from attention.mixing.decompx import DecompX, decompx
    from attention.mixing.layers import UnsupportedArchitectureError
    from attention.models import LoadedModel, ModelPair, check_comparable, load_model, load_pair
    from attention.prepare import PrepareResult, prepare_finetuned
    from attention.rollouts import residual_maps, rollout
    from attention.settings import Settings, load_settings
    from attention.transforms import drop_tokens, merge_groups


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'attention' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
