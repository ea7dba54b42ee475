"""``attention-flows users add | remove | list``: the sign-in users file of a team server."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from app.team.auth import AuthError, UsersFile


def add_parser(commands) -> None:
    """The ``users`` command."""
    users = commands.add_parser("users", help="manage the sign-in users file of a team server")
    users.add_argument("action", choices=("add", "remove", "list"))
    users.add_argument("name", nargs="?", help="the user (add, remove)")
    users.add_argument("--users", type=Path, help="the users file (default: <data home>/users.json)")
    users.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")


def run(args: argparse.Namespace) -> int:
    """``users add NAME`` (asks for the password twice), ``users remove NAME``, ``users list``."""
    # lazy (pydantic): the settings load when the command runs, so building the parser stays instant
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
    users.add(args.name, _password(args.name, from_stdin=args.password_stdin))
    print(f"added {args.name} to {users.path} (serve with --users {users.path})")
    return 0


def _password(name: str, *, from_stdin: bool) -> str:
    """The new user's password: one line of stdin (``--password-stdin``), or typed twice at the terminal."""
    unread = AuthError(
        "No password could be read: the input ended (stdin closed or empty) before one was given.",
        f"Type it at a terminal, or pipe it in: printf '%s\\n' PASSWORD | attention-flows users add {name} "
        "--password-stdin",
    )
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise unread
        return line.rstrip("\n")
    try:
        password = getpass.getpass(f"password for {name}: ")
        again = getpass.getpass("again: ")
    except EOFError:
        print(file=sys.stderr)  # end the prompt's line
        raise unread from None
    if again != password:
        raise AuthError("The two passwords differ.", "Run the command again.")
    return password
