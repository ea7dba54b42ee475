"""``attention-flows prepare``: fine-tune the pair's twin (or a second twin with another seed); and the
prepare-on-start of ``serve``."""

from __future__ import annotations

import argparse

from app.cli.arguments import add_config, whole
from attention.errors import AttentionFlowsError


def add_parser(commands) -> None:
    """The ``prepare`` command."""
    prepare = commands.add_parser(
        "prepare", help="convert the pair's GGUF models and fine-tune its twin (each skipped when it already exists)"
    )
    add_config(prepare)
    prepare.add_argument("--force", action="store_true", help="fine-tune again even if the model exists")
    prepare.add_argument(
        "--seed",
        type=whole("seed", 0, 2**32 - 1),
        help="another seed for the same recipe (a second twin, for seed noise)",
    )
    prepare.add_argument("--name", help="folder name of that twin under the data home (default: <prepared>-seed<N>)")


def run(args: argparse.Namespace) -> int:
    # lazy (the engine: pandas; torch to fine-tune): loaded when the command runs, so --help stays instant
    from attention import load_config, load_settings, prepare_finetuned
    from attention.gguf import convert_pair

    config = load_config(args.config)
    conversions = convert_pair(config, force=args.force and args.seed is None)
    for done in conversions:
        print(f"{'already converted' if done.skipped else 'converted'}: {done.source_name} -> {done.path}", flush=True)
    if conversions and not config.finetuned.prepared and args.seed is None:
        return 0  # a pair of GGUF models: converting them is all there is to prepare
    target, overrides = None, None
    if args.seed is not None:
        name = args.name or f"{config.finetuned.prepared}-seed{args.seed}"
        if not name or "/" in name or name.startswith("."):
            raise AttentionFlowsError(f"--name {name!r} is not a folder name.", "Use letters, digits and dashes.")
        recipe = config.prepare
        split = None if recipe is None else (recipe.seed if recipe.split_seed is None else recipe.split_seed)
        target, overrides = load_settings().models_dir / name, {"seed": args.seed, "split_seed": split}
    elif args.name:
        raise AttentionFlowsError("--name needs --seed.", "Pass the seed of the second twin, e.g. --seed 7.")
    result = prepare_finetuned(config, force=args.force, target=target, recipe_overrides=overrides)
    if result.skipped:
        print(
            f"already prepared: {result.path} (held-out accuracy {result.held_out_accuracy:.3f}); "
            "use --force to fine-tune again"
        )
    else:
        print(
            f"saved {result.path}: {result.steps} steps in {result.seconds:.0f} s, "
            f"held-out accuracy {result.held_out_accuracy:.3f}"
        )
    if result.base_zero_shot_accuracy is not None:
        print(f"the pre-trained model's own zero-shot accuracy: {result.base_zero_shot_accuracy:.3f}")
    return 0


def ensure_prepared(config_name: str, allowed: bool) -> None:
    """Fine-tune the pair's missing twin before serving (``allowed``), or refuse (``serve --no-prepare``)."""
    # lazy (the engine: pandas; torch to fine-tune): loaded when the command runs, so --help stays instant
    from attention import load_config, load_settings
    from attention.config import gguf_converted_dir
    from attention.gguf import convert_pair, gguf_specs
    from attention.prepare import prepare_finetuned, prepared_dir

    config = load_config(config_name)
    unconverted = [
        s for s in gguf_specs(config) if not (gguf_converted_dir(s, load_settings()) / "config.json").is_file()
    ]
    if unconverted and allowed:
        print("Converting the pair's GGUF models (one time, about 20 s each)…", flush=True)
        convert_pair(config)
    if not config.finetuned.prepared or (prepared_dir(config, load_settings()) / "config.json").is_file():
        return
    if not allowed:
        raise AttentionFlowsError(
            f"The fine-tuned model of '{config.name}' is missing.", "Run: attention-flows prepare"
        )
    print("The fine-tuned twin does not exist yet: fine-tuning it now (one time, a few minutes)…", flush=True)
    result = prepare_finetuned(config)
    print(f"held-out accuracy {result.held_out_accuracy:.3f}; saved to {result.path}", flush=True)
