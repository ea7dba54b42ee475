"""``attention-flows info``: the model pair, where things live, and what is ready."""

from __future__ import annotations

import argparse
import platform
from shutil import which

from app.cli.arguments import add_config
from attention.errors import AttentionFlowsError


def add_parser(commands) -> None:
    """The ``info`` command."""
    info = commands.add_parser("info", help="show the model pair, where things live, and what is ready")
    add_config(info)


def run(args: argparse.Namespace) -> int:
    # lazy (torch, the engine): loaded when the command runs, so building the parser stays instant
    import torch

    from attention import __version__, load_config, load_settings
    from attention.config import resolve_model_dir
    from attention.prepare import read_card

    settings = load_settings()
    config = load_config(args.config)
    print(f"attention-flows {__version__}  (python {platform.python_version()}, torch {torch.__version__})")
    print(f"settings: torch_threads={settings.torch_threads}  home={settings.home}")
    print(f"pair '{config.name}' from {config.source_path}")
    for role in ("pretrained", "finetuned"):
        spec = getattr(config, role)
        try:
            where = str(resolve_model_dir(spec, config_file=config.source_path, settings=settings))
        except AttentionFlowsError as error:
            where = f"NOT READY: {error}"
        print(f"  {role:<10} {spec.display_name}: {where}")
    if config.finetuned.prepared:
        card = read_card(settings.models_dir / config.finetuned.prepared)
        if card:
            print(
                f"  fine-tuned on {card['train_rows']} rows in {card['seconds']} s; "
                f"held-out accuracy {card['held_out_accuracy']:.3f} on {card['held_out_rows']} sentences"
            )
    if config.task:
        print(f"  task: {config.task.name}; labels: {', '.join(config.task.labels)}")
    print(f"chromium for export: {which('chromium') or 'not found (sudo apt-get install chromium)'}")
    return 0
