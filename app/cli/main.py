"""The ``attention-flows`` command: info, prepare, faithfulness, serve, users, export, bench.

Errors the user can fix are printed as one readable line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from app.core.options import (
    AGGREGATIONS,
    ALPHA_RANGE,
    DEFAULT_METHOD,
    FORMATS,
    HEAD_METRICS,
    HIDE_KINDS,
    LEVELS,
    MEASURES,
    METHODS,
    MODES,
    PREDICTED,
    PRESETS,
    SCALE_RANGE,
    TAU_RANGE,
    TRACE_ALL,
    VIEWS,
    WIDTH_RANGE,
    OptionError,
    check_choice,
    check_int,
    check_number,
    parse_head,
    parse_numbers,
    parse_range,
)
from attention.errors import AttentionFlowsError


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (``attention-flows: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"attention-flows: error: {message}\n")


def _checked(convert):
    """An argparse ``type`` from a function of :mod:`app.core.options` (its message becomes argparse's)."""

    def parse(text: str):
        try:
            return convert(text)
        except OptionError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _number(name: str, low: float, high: float):
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise OptionError(
                f"Option '{name}' is {text!r}, not a number.", f"Give a number from {low:g} to {high:g}."
            ) from None
        return check_number(name, value, low, high)

    return _checked(convert)


def _whole(name: str, low: int, high: int | None = None):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise OptionError(f"Option '{name}' is {text!r}, not a whole number.", "Give a whole number.") from None
        return check_int(name, value, low, high)

    return _checked(convert)


def _sources(text: str) -> list:
    return [TRACE_ALL] if text.strip() == TRACE_ALL else parse_numbers("sources", text)


def _hide(text: str) -> list[str]:
    return [check_choice("hide", word.strip(), HIDE_KINDS) for word in text.split(",") if word.strip()]


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="pair config: a name under configs/ or a .toml path")


def _add_team(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server-config", type=Path, help="several pairs, cache and jobs from a server config (configs/server.toml)"
    )
    parser.add_argument("--broker", help="run background jobs on Celery workers through this Redis (redis://…)")
    parser.add_argument("--redis", help="share analyses between workers in this Redis (redis://…)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="attention-flows", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="show the model pair, where things live, and what is ready")
    _add_config(info)

    prepare = commands.add_parser("prepare", help="fine-tune the pair's twin (skipped when it already exists)")
    _add_config(prepare)
    prepare.add_argument("--force", action="store_true", help="fine-tune again even if the model exists")
    prepare.add_argument(
        "--seed",
        type=_whole("seed", 0, 2**32 - 1),
        help="another seed for the same recipe (a second twin, for seed noise)",
    )
    prepare.add_argument("--name", help="folder name of that twin under the data home (default: <prepared>-seed<N>)")

    faithful = commands.add_parser(
        "faithfulness", help="correlate each relevance method with blank-out on held-out sentences"
    )
    _add_config(faithful)
    faithful.add_argument("--n", type=_whole("n", 1), default=200, help="held-out sentences to use (default 200)")
    faithful.add_argument("--target", default="predicted", help="class to explain: a label or 'predicted'")
    faithful.add_argument("--out", type=Path, help="write the table as CSV")
    faithful.add_argument("--plot", type=Path, help="also export the plot (.png, .svg or .pdf; needs chromium)")
    faithful.add_argument("--tau", type=_number("tau", *TAU_RANGE), help="the attention graph's τ")
    faithful.add_argument("--alpha", type=_number("alpha", *ALPHA_RANGE), help="the attention graph's residual α")
    faithful.add_argument(
        "--measures",
        default="all",
        help="what the graph methods run over: 'all' (default) or comma-separated, from "
        + ", ".join(MEASURES),
    )
    faithful.add_argument("--no-decompx", action="store_true", help="leave DecompX out (it costs ~7 forward passes)")

    serve = commands.add_parser("serve", help="start the dashboard")
    _add_config(serve)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: localhost only)")
    serve.add_argument("--port", type=_whole("port", 1, 65535), default=8050)
    serve.add_argument(
        "--workers", type=_whole("workers", 1, 64), default=1, help="> 1 serves with gunicorn (pip install '.[server]')"
    )
    serve.add_argument("--no-prepare", action="store_true", help="fail instead of fine-tuning a missing twin")
    serve.add_argument("--users", type=Path, help="sign-in with this users file (see 'attention-flows users')")
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="sign-in by a reverse proxy's X-Forwarded-User, accepted from this address only (repeatable)",
    )
    serve.add_argument(
        "--insecure-no-auth", action="store_true", help="serve beyond localhost without sign-in (not advised)"
    )
    _add_team(serve)

    worker = commands.add_parser("worker", help="run background jobs for a team server (Celery; needs --broker)")
    _add_config(worker)
    _add_team(worker)
    worker.add_argument("--name", default="", help="the worker's name in Celery (default: celery@<host>)")
    worker.add_argument("--nice", type=int, default=10, choices=range(20), metavar="0-19",
                        help="the worker's CPU priority below the web workers' on a shared machine (default 10; "
                        "0 on a machine of its own)")  # fmt: skip

    users = commands.add_parser("users", help="manage the sign-in users file of a team server")
    users.add_argument("action", choices=("add", "remove", "list"))
    users.add_argument("name", nargs="?", help="the user (add, remove)")
    users.add_argument("--users", type=Path, help="the users file (default: <data home>/users.json)")
    users.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")

    export = commands.add_parser("export", help="write a view as PNG / SVG / PDF, headless")
    export.add_argument(
        "--config",
        help="pair config: a name under configs/ or a .toml path (default: 'default'; with "
        "--from-sidecar, the installed pair the sidecar names)",
    )
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the sentence to analyse")
    source.add_argument(
        "--texts",
        type=Path,
        help="batch: a .txt file (one text per line) or a .csv with a 'text' column (and optional 'text_pair')",
    )
    source.add_argument("--from-sidecar", type=Path, help="make the figure a JSON sidecar describes")
    export.add_argument("--text-pair", help="optional second segment")
    export.add_argument("--view", choices=tuple(VIEWS), default="sankey")
    export.add_argument("--format", dest="fmt", type=str.lower, choices=FORMATS, help="default: from --out")
    export.add_argument("--out", type=Path, help="output file (single text)")
    export.add_argument("--out-dir", type=Path, help="output folder (batch)")
    export.add_argument("--preset", choices=tuple(PRESETS), default="double")
    export.add_argument("--width", type=_whole("width", *WIDTH_RANGE), help="pixels (overrides the preset)")
    export.add_argument("--height", type=_whole("height", *WIDTH_RANGE), help="pixels (overrides the preset)")
    export.add_argument("--scale", type=_number("scale", *SCALE_RANGE), help="PNG resolution multiplier (300 dpi)")
    export.add_argument("--sidecar", action="store_true", help="also write a JSON sidecar next to each figure")
    export.add_argument("--mode", choices=tuple(MODES), default="comparison")
    export.add_argument("--layers", type=_checked(lambda t: parse_range("layers", t)), help="FIRST:LAST, 1-based")
    export.add_argument("--heads", type=_checked(lambda t: parse_numbers("heads", t)), help="e.g. 0,3,7 (all)")
    export.add_argument("--head", type=_checked(parse_head), help="LAYER:HEAD for the matrix view (head mean)")
    export.add_argument("--tau", type=_number("tau", *TAU_RANGE), help="the attention graph's threshold τ")
    export.add_argument("--alpha", type=_number("alpha", *ALPHA_RANGE), help="the attention graph's residual α")
    export.add_argument("--aggregation", choices=tuple(AGGREGATIONS), default="mean")
    export.add_argument("--level", choices=tuple(LEVELS), default="token")
    export.add_argument("--sources", type=_checked(_sources), help="positions to trace from, or 'all' ([CLS])")
    export.add_argument("--hide", type=_checked(_hide), help="comma-separated: " + ",".join(HIDE_KINDS))
    export.add_argument("--metric", choices=tuple(HEAD_METRICS), default="js_divergence", help="head-grid metric")
    export.add_argument("--method", choices=tuple(METHODS), default=DEFAULT_METHOD, help="relevance method")
    export.add_argument(
        "--measure", choices=tuple(MEASURES), default=None, help="what the graph views are drawn over (default ALTI)"
    )
    export.add_argument("--target", default=PREDICTED, help="class the class methods explain (a label or index)")
    export.add_argument("--no-sinks", action="store_true", help="the graph traces through [CLS] / [SEP] too")
    export.add_argument("--renormalize", action="store_true", help="renormalise matrix rows after --hide")

    from app.cli.corpus import add_corpus_parser

    add_corpus_parser(commands, _whole)

    bench = commands.add_parser("bench", help="run a benchmark and print figures against their targets")
    bench.add_argument(
        "which",
        choices=(
            "flow",
            "rollout",
            "extract",
            "compare",
            "changes",
            "load",
            "graph",
            "relevance",
            "faithfulness",
            "seeds",
            "mixing",
            "dashboard",
            "export",
            "memory",
            "team",
            "corpus",
            "corpus-memory",
            "engine",
        ),
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # commands that may start the export browser exit cleanly on SIGTERM (serve --workers N: gunicorn does)
        with _exit_cleanly_on_terminate() if args.command in BROWSER_COMMANDS else contextlib.nullcontext():
            return COMMANDS[args.command](args) or 0
    except AttentionFlowsError as error:
        print(f"attention-flows: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file the user named: one line, not a traceback
        where = f" ({error.filename})" if error.filename else ""
        print(f"attention-flows: error: {error.strerror or error}{where}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_info(args) -> int:
    import platform

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
    from shutil import which

    print(f"chromium for export: {which('chromium') or 'not found (sudo apt-get install chromium)'}")
    return 0


def cmd_prepare(args) -> int:
    from attention import load_config, load_settings, prepare_finetuned

    target, overrides = None, None
    if args.seed is not None:
        config = load_config(args.config)
        name = args.name or f"{config.finetuned.prepared}-seed{args.seed}"
        if not name or "/" in name or name.startswith("."):
            raise AttentionFlowsError(f"--name {name!r} is not a folder name.", "Use letters, digits and dashes.")
        target, overrides = load_settings().models_dir / name, {"seed": args.seed}
    elif args.name:
        raise AttentionFlowsError("--name needs --seed.", "Pass the seed of the second twin, e.g. --seed 7.")
    result = prepare_finetuned(args.config, force=args.force, target=target, recipe_overrides=overrides)
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
    return 0


def cmd_faithfulness(args) -> int:
    from tqdm import tqdm

    from app.export import check_target
    from attention import load_config, load_pair
    from attention.data import held_out
    from attention.evaluation import faithfulness, top_layer
    from attention.graph import DEFAULT_ALPHA, DEFAULT_TAU

    # Everything the run needs is checked before the models load and the minutes of work start.
    if args.out is not None and args.out.suffix.lower() != ".csv":
        raise AttentionFlowsError(f"--out {args.out} does not end in .csv.", "The table is CSV: name it *.csv.")
    if args.plot is not None and args.plot.suffix.lower() not in tuple(f".{fmt}" for fmt in FORMATS):
        raise AttentionFlowsError(f"--plot {args.plot} has no .png, .svg or .pdf suffix.", "Name the plot file.")
    for path in (args.out, args.plot):
        if path is not None:
            check_target(path)
    measures = _measures(args.measures)
    config = load_config(args.config)
    if config.prepare is None:
        raise AttentionFlowsError(f"Config '{config.name}' has no held-out data.", "Use a config with [prepare].")
    held_out_rows = held_out(config.prepare)
    if args.n > len(held_out_rows):
        raise AttentionFlowsError(
            f"Option 'n' is {args.n:,}; pair '{config.name}' has {len(held_out_rows):,} held-out sentences.",
            f"Give --n {len(held_out_rows)} or fewer.",
        )
    texts = held_out_rows["text"].tolist()[: args.n]
    pair = load_pair(config)
    tau = DEFAULT_TAU if args.tau is None else args.tau
    alpha = DEFAULT_ALPHA if args.alpha is None else args.alpha
    with tqdm(total=len(texts), desc="faithfulness", unit="sentence") as bar:
        table = faithfulness(pair.finetuned, texts, target=args.target, progress=bar.update, tau=tau, alpha=alpha,
                             measures=measures, decompx=not args.no_decompx)  # fmt: skip
    if args.out is not None:
        from app.export import write_atomically

        write_atomically(args.out, table.to_csv(index=False).encode("utf-8"))
    if args.plot is not None:
        from app.export import export_figure
        from app.figures import make_faithfulness

        export_figure(make_faithfulness(table, model=pair.finetuned.name), args.plot)
    summary = top_layer(table).pivot(index=["measure", "method"], columns="reference", values="spearman_mean")
    print(f"{pair.finetuned.name}, {len(texts)} held-out sentences, deepest layer (Spearman, mean over sentences):")
    print(summary.round(3).to_string())
    return 0


def _measures(text: str) -> tuple[str, ...]:
    """``--measures``: 'all', or comma-separated names of :data:`app.core.options.MEASURES`."""
    if text.strip() == "all":
        return tuple(MEASURES)
    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    for measure in chosen or ("",):
        check_choice("measures", measure, MEASURES)
    return chosen


def _ensure_prepared(config_name: str, allowed: bool) -> None:
    from attention import load_config, load_settings
    from attention.prepare import prepare_finetuned, prepared_dir

    config = load_config(config_name)
    if not config.finetuned.prepared or (prepared_dir(config, load_settings()) / "config.json").is_file():
        return
    if not allowed:
        raise AttentionFlowsError(
            f"The fine-tuned model of '{config.name}' is missing.", "Run: attention-flows prepare"
        )
    print("The fine-tuned twin does not exist yet: fine-tuning it now (one time, a few minutes)…", flush=True)
    result = prepare_finetuned(config)
    print(f"held-out accuracy {result.held_out_accuracy:.3f}; saved to {result.path}", flush=True)


def cmd_users(args) -> int:
    """``users add NAME`` (asks for the password twice), ``users remove NAME``, ``users list``."""
    import getpass

    from app.team.auth import AuthError, UsersFile
    from attention.settings import load_settings

    users = UsersFile(args.users or load_settings().home / "users.json")
    if args.action == "list":
        print("\n".join(users.names()) or f"no users in {users.path}")
        return 0
    if not args.name:
        raise AuthError(f"'users {args.action}' needs a user name.", f"attention-flows users {args.action} NAME")
    if args.action == "remove":
        users.remove(args.name)
        print(f"removed {args.name} from {users.path}")
        return 0
    unread = AuthError(
        "No password could be read: the input ended (stdin closed or empty) before one was given.",
        f"Type it at a terminal, or pipe it in: printf '%s\\n' PASSWORD | attention-flows users add {args.name} "
        "--password-stdin",
    )
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise unread
        password = line.rstrip("\n")
    else:
        try:
            password = getpass.getpass(f"password for {args.name}: ")
            again = getpass.getpass("again: ")
        except EOFError:
            print(file=sys.stderr)  # end the prompt's line
            raise unread from None
        if again != password:
            raise AuthError("The two passwords differ.", "Run the command again.")
    users.add(args.name, password)
    print(f"added {args.name} to {users.path} (serve with --users {users.path})")
    return 0


def cmd_serve(args) -> int:
    import os

    from app.team.auth import AuthConfig, check_binding

    auth = AuthConfig(args.users, tuple(args.trusted_proxy))
    check_binding(args.host, auth, insecure=args.insecure_no_auth)
    if auth.users_file is not None:
        from app.team.auth import UsersFile

        if not UsersFile(auth.users_file).names():
            raise AttentionFlowsError(
                f"The users file {auth.users_file} has no users.", "Add one: attention-flows users add NAME."
            )
    os.environ.update(auth.to_environ())  # the app (and every gunicorn worker) reads it
    server_config = _team_environment(args)
    _ensure_prepared(server_config.pairs[server_config.default].source_path or args.config, not args.no_prepare)
    if args.workers > 1:
        import importlib.util

        if importlib.util.find_spec("gunicorn") is None:
            raise AttentionFlowsError("--workers needs gunicorn.", "Install it with: pip install '.[server]'")
        os.environ["ATTENTION_FLOWS_CONFIG"] = str(args.config)
        os.execv(sys.executable, _gunicorn_command(args.host, args.port, args.workers))
    from app.team.site import create_app

    _log_to_terminal()
    dash_app = create_app(server_config)
    print(
        f"Attention Flows: http://{args.host}:{args.port}/ (the models are loading; the page fills in when ready)",
        flush=True,
    )
    dash_app.run(host=args.host, port=args.port, debug=False)
    return 0


def _gunicorn_command(host: str, port: int, workers: int) -> list[str]:
    """The command ``serve --workers N`` runs. gunicorn 25.1+ opens a control socket at one fixed path per user
    (``~/.gunicorn/gunicorn.ctl``), shared by every server that user starts; nothing here uses it, so it is off."""
    from gunicorn.config import KNOWN_SETTINGS

    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{host}:{port}",
               "--timeout", "120"]  # fmt: skip
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        command.append("--no-control-socket")
    return [*command, "app.team.wsgi:server"]


@contextlib.contextmanager
def _exit_cleanly_on_terminate() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP are a normal exit (``SystemExit``), so exit handlers run: kaleido's
    closes the export browser and removes its temporary folders, which the default action (die at once) leaves in
    TMPDIR. A second signal kills at once, as before; signals the caller ignores (nohup) stay ignored."""
    import signal
    import threading

    def stop(signum, _frame):
        signal.signal(signum, signal.SIG_DFL)
        raise SystemExit(128 + signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) == signal.SIG_DFL:
                previous[signum] = signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _team_environment(args):
    """The server config of ``serve`` / ``worker`` (``--server-config`` or the one pair ``--config``, then
    ``--broker`` / ``--redis``), put in the environment for gunicorn and Celery workers to read."""
    import os

    from app.team.config import ENV_BROKER, ENV_REDIS, ENV_SERVER_CONFIG, server_config_from_env

    if args.server_config is not None:
        os.environ[ENV_SERVER_CONFIG] = str(args.server_config.expanduser().resolve())
    os.environ["ATTENTION_FLOWS_CONFIG"] = str(args.config)
    if args.broker is not None:
        os.environ[ENV_BROKER] = args.broker
    if args.redis is not None:
        os.environ[ENV_REDIS] = args.redis
    return server_config_from_env()


def cmd_worker(args) -> int:
    """``celery -A app.team.worker:celery_app worker`` with the server's config, one job at a time per process."""
    import os

    config = _team_environment(args)
    if not config.jobs.broker:
        raise AttentionFlowsError("A worker needs a broker.", "Pass --broker redis://HOST:PORT/DB (the server's).")
    command = [sys.executable, "-m", "celery", "-A", "app.team.worker:celery_app", "worker", "--pool", "solo",
               "--queues", "attention-flows", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]  # fmt: skip
    if args.name:
        command += ["--hostname", args.name]
    os.nice(args.nice)  # kept across exec: jobs wait for the web workers' requests, never the other way round
    os.execv(sys.executable, command)
    return 0


def _log_to_terminal() -> None:
    """Show the app's own messages ("models ready in 7.9 s", load errors) on stderr."""
    import logging

    logger = logging.getLogger("attention_flows")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def cmd_export(args) -> int:
    from app.export.requests import run_export

    return run_export(args)


def cmd_bench(args) -> int:
    if args.which == "team":
        from benchmarks.team import bench_team

        bench_team()
    elif args.which == "corpus":
        from benchmarks.corpus import bench_corpus

        bench_corpus()
    elif args.which == "corpus-memory":
        from benchmarks.corpus import bench_corpus_memory

        bench_corpus_memory()
    elif args.which in ("dashboard", "export", "memory"):
        import benchmarks.dashboard as bench

        bench.main([args.which])
    else:
        import benchmarks.engine as bench

        bench.main(["all" if args.which == "engine" else args.which])
    return 0


def cmd_corpus(args) -> int:
    from app.cli.corpus import cmd_corpus as run

    return run(args)


BROWSER_COMMANDS = ("serve", "export", "faithfulness")
COMMANDS = {
    "info": cmd_info,
    "prepare": cmd_prepare,
    "faithfulness": cmd_faithfulness,
    "serve": cmd_serve,
    "worker": cmd_worker,
    "users": cmd_users,
    "export": cmd_export,
    "bench": cmd_bench,
    "corpus": cmd_corpus,
}

if __name__ == "__main__":
    sys.exit(main())
