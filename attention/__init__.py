"""Attention Flows engine: extract, trace and compare the self-attention of a pre-trained encoder and its
fine-tuned twin. Pure numpy / pandas / torch; never imports dash or plotly.

>>> import attention
>>> pair = attention.load_pair("default")                       # doctest: +SKIP
>>> runs = attention.extract_pair(pair, "a gorgeous, witty film")  # doctest: +SKIP
>>> attention.compare_heads(runs.pretrained, runs.finetuned)     # doctest: +SKIP
"""

__version__ = "0.1.0"

from attention.compare import (
    EDGE_STATUSES,
    GraphComparison,
    attention_matrices,
    compare_graphs,
    compare_heads,
    compare_layers,
    compare_relevance,
    graph_for,
    head_embedding,
    head_stats,
    relevance,
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
)
from attention.extract import AttentionRun, PairRuns, Prediction, extract, extract_pair, predict
from attention.flow import attention_flow, max_flow_values
from attention.graph import DEFAULT_ALPHA, DEFAULT_TAU, AttentionGraph, attention_graph
from attention.models import LoadedModel, ModelPair, check_comparable, load_model, load_pair
from attention.prepare import PrepareResult, prepare_finetuned
from attention.rollout import residual_maps, rollout
from attention.settings import Settings, load_settings
from attention.transforms import drop_tokens, merge_groups

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_TAU",
    "EDGE_STATUSES",
    "AttentionFlowsError",
    "AttentionGraph",
    "AttentionRun",
    "ConfigError",
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
    "attention_flow",
    "attention_graph",
    "attention_matrices",
    "available_configs",
    "check_comparable",
    "compare_graphs",
    "compare_heads",
    "compare_layers",
    "compare_relevance",
    "drop_tokens",
    "extract",
    "extract_pair",
    "graph_for",
    "head_embedding",
    "head_stats",
    "load_config",
    "load_model",
    "load_pair",
    "load_settings",
    "max_flow_values",
    "merge_groups",
    "predict",
    "prepare_finetuned",
    "relevance",
    "residual_maps",
    "rollout",
]
