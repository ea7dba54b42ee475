"""The ``attention-flows`` command: info, prepare, faithfulness, serve, worker, users, export, bench, corpus.

Errors the user can fix are printed as one readable line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from app.cli import bench, corpus, export, faithfulness, info, prepare, serve, users
from app.cli.arguments import Parser
from app.cli.shutdown import exit_cleanly_on_terminate
from attention.errors import AttentionFlowsError

# One row per command family (a module of app.cli): its commands, in the order --help lists them; what adds their
# parsers; what runs one of them.
FAMILIES = (
    (("info",), info.add_parser, info.run),
    (("prepare",), prepare.add_parser, prepare.run),
    (("faithfulness",), faithfulness.add_parser, faithfulness.run),
    (("serve", "worker"), serve.add_parser, serve.run),
    (("users",), users.add_parser, users.run),
    (("export",), export.add_parser, export.run),
    (("corpus",), corpus.add_parser, corpus.run),
    (("bench",), bench.add_parser, bench.run),
)
COMMANDS = {command: run for names, _, run in FAMILIES for command in names}
BROWSER_COMMANDS = ("serve", "export", "faithfulness")  # commands that may start the export browser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="attention-flows", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for _, add_parser, _ in FAMILIES:
        add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # commands that may start the export browser exit cleanly on SIGTERM (serve --workers N: gunicorn does)
        with exit_cleanly_on_terminate() if args.command in BROWSER_COMMANDS else contextlib.nullcontext():
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


if __name__ == "__main__":
    sys.exit(main())
