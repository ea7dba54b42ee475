"""Engine benchmarks anyone can rerun, from a source checkout.

``attention-flows bench engine`` runs the four core ones (flow, rollout, extract, compare);
``attention-flows bench NAME`` one of: flow, rollout, extract, compare, changes, load, graph, relevance, faithfulness,
seeds, mixing (:mod:`benchmarks.mixing`). ``python -m benchmarks.engine [NAME | all]`` is the same.

Each prints measured figures next to the target, with the reference implementation timed in the same run.
BLAS and torch are limited to one thread so figures are single-core.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from attention.compare import compare_heads, compare_layers, graph_for, head_embedding  # noqa: E402
from attention.config import load_config, resolve_model_dir  # noqa: E402
from attention.data import held_out  # noqa: E402
from attention.evaluation import faithfulness, top_layer  # noqa: E402
from attention.extraction import AttentionRun, extract, extract_pair  # noqa: E402
from attention.flow import attention_flow, warm_up  # noqa: E402
from attention.gradients import blank_out, class_relevance  # noqa: E402
from attention.models import load_model, load_pair  # noqa: E402
from attention.reference import joint_attention, networkx_flow_graph, networkx_flow_value  # noqa: E402
from attention.rollouts import residual_maps, rollout  # noqa: E402
from benchmarks import mixing  # noqa: E402
from benchmarks.common import pair_and_held_out, row, seed_twin, timed  # noqa: E402


def synthetic_attention(layers: int, heads: int, tokens: int, *, seed: int = 0) -> np.ndarray:
    """Peaked, row-stochastic ``[layer, head, query, key]`` float32 attention with [CLS]/[SEP]-like sinks
    (softmax of N(0, 3²) logits, +2 on the first and last key)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(layers, heads, tokens, tokens))
    logits[..., 0] += 2.0
    logits[..., -1] += 2.0
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def bench_flow(sampled_pairs: int = 24) -> None:
    """Attention flow against the networkx Edmonds-Karp reference."""
    start = time.perf_counter()
    warm_up()
    print(f"attention flow (kernel ready in {time.perf_counter() - start:.2f} s: compile, or load from numba cache)")

    weights = synthetic_attention(12, 12, 128, seed=1)
    seconds, _ = timed(lambda: attention_flow(weights, sources=[0], layers=(12, 12)))
    row("[CLS] at layer 12 -> all inputs, 12 L x 12 H x 128 tokens", f"{seconds:.3f} s", "<= 0.1 s", seconds <= 0.1)
    weights = synthetic_attention(12, 12, 512, seed=5)
    seconds, _ = timed(lambda: attention_flow(weights, sources=[0], layers=(12, 12)), repeats=3)
    row("[CLS] at layer 12 -> all inputs, 12 L x 12 H x 512 tokens", f"{seconds:.2f} s", "<= 1 s", seconds <= 1)
    seconds, _ = timed(lambda: attention_flow(weights, sources=[0]), repeats=1)
    row("  [CLS] at every layer 1..12 (the flow view), 512 tokens", f"{seconds:.2f} s", "report")
    all_pairs_speedup(tokens=32, sampled_pairs=sampled_pairs)

    weights = synthetic_attention(12, 12, 64, seed=2)
    seconds, raw = timed(lambda: attention_flow(weights, normalize=False), repeats=1)
    maps = residual_maps(weights)
    graph = networkx_flow_graph(maps)
    rng = np.random.default_rng(3)
    pairs = [
        (int(d), int(u), int(v))
        for d, u, v in zip(
            rng.integers(3, 13, sampled_pairs),
            rng.integers(0, 64, sampled_pairs),
            rng.integers(0, 64, sampled_pairs),
            strict=True,
        )
    ]
    ref_start = time.perf_counter()
    errors = [abs(networkx_flow_value(graph, d, u, v) - raw[d - 1, u, v]) for d, u, v in pairs]
    per_pair = (time.perf_counter() - ref_start) / len(pairs)
    all_pairs = 12 * 64 * 64
    row("all 12 x 64 x 64 pairs, 12 L x 64 tokens", f"{seconds:.2f} s", "<= 10 s", seconds <= 10)
    row(f"  networkx reference, estimated from {len(pairs)} sampled pairs", f"{per_pair * all_pairs / 3600:.1f} h", "")
    row("  max |error| on the sampled pairs", f"{max(errors):.1e}", "<= 1e-9", max(errors) <= 1e-9)

    weights = synthetic_attention(6, 12, 16, seed=4)
    ours, raw = timed(lambda: attention_flow(weights, normalize=False), repeats=5)
    maps = residual_maps(weights)
    graph = networkx_flow_graph(maps)
    ref_start = time.perf_counter()
    reference = np.array(
        [[[networkx_flow_value(graph, d, u, v) for v in range(16)] for u in range(16)] for d in range(1, 7)]
    )
    ref_seconds = time.perf_counter() - ref_start
    ratio = ref_seconds / ours
    row("all pairs, 6 L x 16 tokens: networkx reference", f"{ref_seconds:.2f} s", "")
    row("  ours", f"{ours * 1000:.2f} ms", "")
    row("  speed-up", f"{ratio:,.0f}x", ">= 1,000x", ratio >= 1000)
    row("  max |error| over all pairs", f"{np.abs(reference - raw).max():.1e}", "<= 1e-9")


def all_pairs_speedup(tokens: int, sampled_pairs: int) -> None:
    """Every layer's flow from every token to every input, 12 L x ``tokens``, against networkx's Edmonds-Karp on the
    same network (estimated from ``sampled_pairs`` random pairs: all 12 x n x n would take hours)."""
    weights = synthetic_attention(12, 12, tokens, seed=6)
    ours, raw = timed(lambda: attention_flow(weights, normalize=False), repeats=3)
    graph = networkx_flow_graph(residual_maps(weights))
    rng = np.random.default_rng(7)
    pairs = list(zip(rng.integers(2, 13, sampled_pairs).tolist(), rng.integers(0, tokens, sampled_pairs).tolist(),
                     rng.integers(0, tokens, sampled_pairs).tolist(), strict=True))  # fmt: skip
    started = time.perf_counter()
    errors = [abs(networkx_flow_value(graph, d, u, v) - raw[d - 1, u, v]) for d, u, v in pairs]
    reference = (time.perf_counter() - started) / len(pairs) * 12 * tokens * tokens
    ratio = reference / ours
    row(f"all pairs, 12 L x {tokens} tokens: ours", f"{ours:.3f} s", "report")
    row(f"  networkx, estimated from {len(pairs)} sampled pairs", f"{reference:.0f} s", "report")
    row("  speed-up", f"{ratio:,.0f}x", ">= 10,000x", ratio >= 10_000)
    row("  max |error| on the sampled pairs", f"{max(errors):.1e}", "<= 1e-9", max(errors) <= 1e-9)


def bench_rollout() -> None:
    """Rollout against the reference ``compute_joint_attention`` formula."""
    print("attention rollout")
    rng = np.random.default_rng(0)
    weights = rng.random((24, 16, 512, 512), dtype=np.float32)
    weights /= weights.sum(axis=-1, keepdims=True)
    seconds, result = timed(lambda: rollout(weights), repeats=5)
    error = np.abs(joint_attention(residual_maps(weights)) - result).max()
    row("24 L x 16 H x 512 tokens (median of 5)", f"{seconds:.3f} s", "<= 0.3 s", seconds <= 0.3)
    row("  max |error| vs reference formula", f"{error:.1e}", "float precision")


def bench_extract(repeats: int = 7) -> None:
    """Forward pass + attention extraction on the default pair's pre-trained model."""
    config = load_config("default")
    start = time.perf_counter()
    model = load_model(resolve_model_dir(config.pretrained), name=config.pretrained.display_name)
    print(f"extraction, {model.name} (loaded in {time.perf_counter() - start:.2f} s)")
    for tokens in (32, 128):
        text = " ".join(["movie"] * (tokens - 2))
        extract(model, text)
        seconds, run = timed(lambda text=text: extract(model, text), repeats=repeats)
        row(f"{run.num_tokens}-token sentence (median of {repeats})", f"{seconds * 1000:.1f} ms", "report")


def bench_compare() -> None:
    """Head comparison and the head similarity map for 2 x 144 heads."""
    print("comparison (12 L x 12 H = 2 x 144 heads)")
    for tokens in (32, 64):
        runs = []
        for seed in (5, 6):
            w = synthetic_attention(12, 12, tokens, seed=seed)
            w.flags.writeable = False
            runs.append(
                AttentionRun(
                    "m",
                    "t",
                    None,
                    w,
                    tuple(f"t{i}" for i in range(tokens)),
                    (False,) * tokens,
                    (0,) * tokens,
                    tuple(range(tokens)),
                    0,
                    (),
                )
            )
        seconds, _ = timed(lambda runs=runs: head_embedding(*runs))
        row(f"head_embedding, {tokens} tokens", f"{seconds * 1000:.0f} ms", "<= 0.5 s", seconds <= 0.5)
        seconds, _ = timed(lambda runs=runs: compare_heads(*runs))
        row(f"compare_heads, {tokens} tokens", f"{seconds * 1000:.0f} ms", "report")


def bench_changes(sentences: int = 100) -> None:
    """What fine-tuning changed on the default pair: per-layer means over held-out sentences (markdown)."""
    config = load_config("default")
    pair = load_pair(config)
    held_out_rows = held_out(config.prepare)["text"].head(sentences)
    start = time.perf_counter()
    frames = [compare_layers(*(lambda r: (r.pretrained, r.finetuned))(extract_pair(pair, t))) for t in held_out_rows]
    table = (
        pd.concat(frames)
        .groupby("layer")[["js_divergence", "js_divergence_max", "cosine", "tv_distance", "edge_jaccard"]]
        .agg(["mean", "std"])
    )
    print(f"what fine-tuning changed: {len(frames)} held-out sentences ({time.perf_counter() - start:.1f} s)\n")
    print("| layer | JS divergence (bits) | max over heads | cosine | total variation | graph edge Jaccard |")
    print("|---:|---:|---:|---:|---:|---:|")
    for layer, means in table.iterrows():
        cells = [
            f"{means[(c, 'mean')]:.3f} ± {means[(c, 'std')]:.3f}"
            for c in ("js_divergence", "js_divergence_max", "cosine", "tv_distance", "edge_jaccard")
        ]
        print(f"| {layer} | " + " | ".join(cells) + " |")


def bench_graph(sentences: int = 40) -> None:
    """How the attention graph's τ shapes it on the default pair (docs/method.md, "Choosing τ and α")."""
    pair, texts = pair_and_held_out(sentences)
    runs = [extract_pair(pair, t) for t in texts]
    lengths = [r.finetuned.num_tokens for r in runs]
    print(
        f"attention graph from [CLS], sinks on, alpha 0.5: {len(runs)} held-out sentences, median "
        f"{statistics.median(lengths):.0f} tokens (medians over sentences)\n"
    )
    print(
        "| τ | model | kept attention edges (max) | widest column | live mass at the inputs | absorbed by sinks "
        "| pruned | words' share of the live input mass |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for tau in (0.02, 0.03, 0.05, 0.07, 0.1, 0.2):
        for model in ("pretrained", "finetuned"):
            rows = []
            for r in runs:
                run = getattr(r, model)
                graph = graph_for(run, tau=tau)
                shares = graph.layer_shares().iloc[0]
                inputs = graph.mass[0]
                words = inputs[~np.asarray(run.special)].sum() / max(inputs.sum(), 1e-12)
                edges = int((graph.edges["kind"] == "attention").sum())
                widest = max(len(graph.reached(d)) for d in range(run.num_layers))
                rows.append((edges, widest, shares["live"], shares["absorbed"], shares["pruned"], words))
            cols = np.array(rows)
            median = np.median(cols, axis=0)
            print(
                f"| {tau:g} | {model} | {median[0]:.0f} ({cols[:, 0].max():.0f}) | {median[1]:.0f} | "
                f"{median[2]:.3f} | {median[3]:.2f} | {median[4]:.2f} | {median[5]:.2f} |"
            )


def bench_relevance(sentences: int = 20) -> None:
    """Class relevance (one forward + one backward pass) against the forward pass alone, fine-tuned model."""
    pair, texts = pair_and_held_out(sentences, min_tokens=33, max_tokens=61)
    model = pair.finetuned
    forward, explained, blanked = [], [], []
    for text in texts:
        forward.append(timed(lambda t=text: extract(model, t), repeats=3)[0])
        explained.append(timed(lambda t=text: class_relevance(model, t), repeats=3)[0])
        blanked.append(timed(lambda t=text: blank_out(model, t, level="word"), repeats=1)[0])
    ratio = statistics.median(e / f for e, f in zip(explained, forward, strict=True))
    print(f"class relevance, {len(texts)} held-out sentences of 33-61 tokens (medians)")
    row("forward pass + attention extraction", f"{statistics.median(forward) * 1000:.0f} ms", "report")
    row("class relevance (forward + backward)", f"{statistics.median(explained) * 1000:.0f} ms", "report")
    row("class relevance / forward pass", f"{ratio:.2f}x", "<= 3x", ratio <= 3)
    row("blank-out, every word in one batch", f"{statistics.median(blanked) * 1000:.0f} ms", "report")


def bench_faithfulness(sentences: int = 200) -> None:
    """The faithfulness table on held-out sentences (docs/faithfulness.md), timed against its 5-minute target."""
    pair, texts = pair_and_held_out(sentences)
    start = time.perf_counter()
    table = faithfulness(pair.finetuned, texts)
    seconds = time.perf_counter() - start
    print(f"faithfulness, fine-tuned model, {len(texts)} held-out sentences")
    row(f"{len(texts)} sentences, every method and reference", f"{seconds:.0f} s", "<= 300 s", seconds <= 300)
    top = top_layer(table)
    print("\n| method | layer | Spearman with blank-out | Spearman with input × gradient |")
    print("|---|---:|---:|---:|")
    for method, rows in top.groupby("method", sort=False):
        cells = {r.reference: f"{r.spearman_mean:+.3f} ± {r.spearman_std:.3f} (n={r.n})" for r in rows.itertuples()}
        print(f"| {method} | {rows['layer'].iloc[0]} | {cells['blank_out']} | {cells['input_x_gradient']} |")
    print("\nper layer, Spearman with blank-out (mean):")
    per_layer = table[table["reference"] == "blank_out"].pivot(index="method", columns="layer", values="spearman_mean")
    print(per_layer.round(3).to_string())


def bench_seeds(sentences: int = 100, seed: int = 7) -> None:
    """Per-layer change pre-trained -> fine-tuned next to fine-tuned (seed 13) -> fine-tuned (another seed), on the
    same held-out sentences: which changes exceed seed noise. Needs ``attention-flows prepare --seed 7``."""
    pair, texts = pair_and_held_out(sentences)
    other = seed_twin(pair, seed)
    if other is None:
        return
    frames = {"pre-trained -> fine-tuned": [], f"fine-tuned (13) -> fine-tuned ({seed})": []}
    for text in texts:
        pre, ft, ft2 = extract(pair.pretrained, text), extract(pair.finetuned, text), extract(other, text)
        frames["pre-trained -> fine-tuned"].append(compare_layers(pre, ft))
        frames[f"fine-tuned (13) -> fine-tuned ({seed})"].append(compare_layers(ft, ft2))
    print(f"per-layer change, {len(texts)} held-out sentences, mean ± std over sentences\n")
    print(
        "| layer | JS divergence (bits): pre-trained → fine-tuned | seed 13 → seed "
        + str(seed)
        + " | ratio | sentences where the change exceeds the seed gap |"
    )
    print("|---:|---:|---:|---:|---:|")
    change_all, noise_all = (pd.concat(f, keys=range(len(f))) for f in frames.values())
    change = change_all.groupby("layer")["js_divergence"].agg(["mean", "std"])
    noise = noise_all.groupby("layer")["js_divergence"].agg(["mean", "std"])
    exceeds = change_all["js_divergence"].to_numpy() > noise_all["js_divergence"].to_numpy()
    share = pd.Series(exceeds, index=change_all["layer"].to_numpy()).groupby(level=0).mean()
    for layer in change.index:
        ratio = change.loc[layer, "mean"] / noise.loc[layer, "mean"]
        print(
            f"| {layer} | {change.loc[layer, 'mean']:.4f} ± {change.loc[layer, 'std']:.4f} "
            f"| {noise.loc[layer, 'mean']:.4f} ± {noise.loc[layer, 'std']:.4f} | {ratio:.1f}× "
            f"| {100 * share.loc[layer]:.0f} % |"
        )


_LOAD_SNIPPET = """
import contextlib, sys, time
import attention.models as models
variant = sys.argv[1]
if variant == "collecting":
    models.collector_paused = lambda **_: contextlib.nullcontext()  # the reference: Python's default behaviour
whole = models.collector_paused(freeze=True) if variant == "server" else contextlib.nullcontext()
start = time.perf_counter()
with whole:
    pair = models.load_pair("default")
    from attention.extraction import extract_pair
    extract_pair(pair, "a first sentence, analysed as the dashboard does when it opens")
print(time.perf_counter() - start)
"""

_LOAD_VARIANTS = {
    "server": "collector paused for the whole start, then frozen (the dashboard)",
    "paused": "collector paused per model (load_pair in a script)",
    "collecting": "collector on (reference)",
}


def bench_load(runs: int = 5) -> None:
    """Importing torch and transformers, loading the default pair and a first forward pass, in a new process: with
    the collector paused over all of it and frozen after (what the dashboard's loader does), paused per model (what
    :func:`attention.models.load_pair` does for scripts) and, for reference, collecting as usual. The variants
    alternate run by run."""
    print(f"import + load the default pair + first forward pass, in a new process, median of {runs}")
    times: dict[str, list[float]] = {variant: [] for variant in _LOAD_VARIANTS}
    for _ in range(runs):
        for variant, samples in times.items():
            out = subprocess.run(
                [sys.executable, "-c", _LOAD_SNIPPET, variant], check=True, capture_output=True, text=True
            )
            samples.append(float(out.stdout.strip().splitlines()[-1]))
    for variant, samples in times.items():
        row(_LOAD_VARIANTS[variant], f"{statistics.median(samples):.2f} s", "report")


BENCHES = {"flow": bench_flow, "rollout": bench_rollout, "extract": bench_extract, "compare": bench_compare}
EXTRA = {
    "graph": bench_graph,
    "changes": bench_changes,
    "load": bench_load,
    "relevance": bench_relevance,
    "faithfulness": bench_faithfulness,
    "seeds": bench_seeds,
    "mixing": mixing.bench_mixing,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__)
    parser.add_argument("which", choices=[*BENCHES, *EXTRA, "all"], nargs="?", default="all")

    args = parser.parse_args(argv)
    import torch  # lazy (torch): after the arguments are checked

    torch.set_num_threads(1)
    if args.which in EXTRA:
        EXTRA[args.which]()
    for name, bench in BENCHES.items():
        if args.which in (name, "all"):
            bench()


if __name__ == "__main__":
    main()
