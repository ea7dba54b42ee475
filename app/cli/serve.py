"""``attention-flows serve`` (the dashboard: Dash's server, or gunicorn with ``--workers N``) and ``attention-flows
worker`` (a Celery worker for a team server's background jobs); both read the team options into the environment."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.arguments import add_config, add_team, whole
from app.cli.prepare import ensure_prepared
from app.team.auth import AuthConfig, UsersFile, check_binding
from app.team.gunicorn_hooks import PRELOAD_ENV
from attention.errors import AttentionFlowsError

if TYPE_CHECKING:
    from app.team.config import ServerConfig


def add_parser(commands) -> None:
    """The ``serve`` and ``worker`` commands."""
    serve = commands.add_parser("serve", help="start the dashboard")
    add_config(serve)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: localhost only)")
    serve.add_argument("--port", type=whole("port", 1, 65535), default=8050)
    serve.add_argument(
        "--workers", type=whole("workers", 1, 64), default=1, help="> 1 serves with gunicorn (pip install '.[server]')"
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
    add_team(serve)

    worker = commands.add_parser("worker", help="run background jobs for a team server (Celery; needs --broker)")
    add_config(worker)
    add_team(worker)
    worker.add_argument("--name", default="", help="the worker's name in Celery (default: celery@<host>)")
    worker.add_argument("--nice", type=int, default=10, choices=range(20), metavar="0-19",
                        help="the worker's CPU priority below the web workers' on a shared machine (default 10; "
                        "0 on a machine of its own)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    return serve(args) if args.command == "serve" else worker(args)


def serve(args: argparse.Namespace) -> int:
    """Check sign-in and the twin, then serve: Dash's own server, or exec gunicorn with ``--workers N``."""
    auth = AuthConfig(args.users, tuple(args.trusted_proxy))
    check_binding(args.host, auth, insecure=args.insecure_no_auth)
    if auth.users_file is not None and not UsersFile(auth.users_file).names():
        raise AttentionFlowsError(
            f"The users file {auth.users_file} has no users.", "Add one: attention-flows users add NAME."
        )
    os.environ.update(auth.to_environ())  # the app (and every gunicorn worker) reads it
    server_config = team_environment(args)
    ensure_prepared(server_config.pairs[server_config.default].source_path or args.config, not args.no_prepare)
    if args.workers > 1:
        if importlib.util.find_spec("gunicorn") is None:
            raise AttentionFlowsError("--workers needs gunicorn.", "Install it with: pip install '.[server]'")
        os.environ["ATTENTION_FLOWS_CONFIG"] = str(args.config)
        os.environ[PRELOAD_ENV] = "1"  # the master loads the models before it forks the workers
        os.execv(sys.executable, gunicorn_command(args.host, args.port, args.workers))
    # lazy (Dash, plotly, pandas): the app loads only when it is served, so building the parser stays instant
    from app.export import warm_export_browser
    from app.team.site import create_app

    _log_to_terminal()
    dash_app = create_app(server_config)
    warm_export_browser()  # the first export in a running server does not wait for Chromium to start
    print(
        f"Attention Flows: http://{args.host}:{args.port}/ (the models are loading; the page fills in when ready)",
        flush=True,
    )
    dash_app.run(host=args.host, port=args.port, debug=False)
    return 0


def gunicorn_command(host: str, port: int, workers: int) -> list[str]:
    """The command ``serve --workers N`` runs. The master loads the default pair before it forks the workers
    (``--preload``, :mod:`app.team.wsgi`), so they share its memory copy-on-write and a worker that dies is replaced
    by one that answers at once (:mod:`app.team.gunicorn_hooks`). gunicorn 25.1+ opens a control socket at one
    fixed path per user (``~/.gunicorn/gunicorn.ctl``), shared by every server that user starts; nothing here uses
    it, so it is off."""
    # lazy: gunicorn is an optional dependency (pip install '.[server]'), checked for before this runs
    from gunicorn.config import KNOWN_SETTINGS

    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{host}:{port}",
               "--timeout", "120", "--graceful-timeout", "10",  # a stop never waits longer than 10 s for a worker
               "--preload", "--config", "python:app.team.gunicorn_hooks"]  # fmt: skip
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        command.append("--no-control-socket")
    return [*command, "app.team.wsgi:server"]


def team_environment(args: argparse.Namespace) -> ServerConfig:
    """The server config of ``serve`` / ``worker`` (``--server-config`` or the one pair ``--config``, then
    ``--broker`` / ``--redis``), put in the environment for gunicorn and Celery workers to read."""
    # lazy (pydantic, the engine's config): loaded when the command runs, so building the parser stays instant
    from app.team.config import ENV_BROKER, ENV_REDIS, ENV_SERVER_CONFIG, server_config_from_env

    if args.server_config is not None:
        os.environ[ENV_SERVER_CONFIG] = str(args.server_config.expanduser().resolve())
    os.environ["ATTENTION_FLOWS_CONFIG"] = str(args.config)
    if args.broker is not None:
        os.environ[ENV_BROKER] = args.broker
    if args.redis is not None:
        os.environ[ENV_REDIS] = args.redis
    return server_config_from_env()


def worker(args: argparse.Namespace) -> int:
    """``celery -A app.team.worker:celery_app worker`` with the server's config, one job at a time per process."""
    config = team_environment(args)
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
    logger = logging.getLogger("attention_flows")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
