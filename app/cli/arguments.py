"""What every command family shares: the parser class, argparse ``type`` checkers built on :mod:`app.core.options`
(so a bad value reads as the dashboard's message does) and the options several commands take."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from app.core.options import HIDE_KINDS, TRACE_ALL, OptionError, check_choice, check_int, check_number, parse_numbers


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (``attention-flows: error: ...``) and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"attention-flows: error: {message}\n")


def checked(convert: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type`` from a function of :mod:`app.core.options` (its message becomes argparse's)."""

    def parse(text: str):
        try:
            return convert(text)
        except OptionError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def number(name: str, low: float, high: float) -> Callable[[str], object]:
    """An argparse ``type``: a number in ``[low, high]``, refused as option ``name``."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise OptionError(
                f"Option '{name}' is {text!r}, not a number.", f"Give a number from {low:g} to {high:g}."
            ) from None
        return check_number(name, value, low, high)

    return checked(convert)


def whole(name: str, low: int, high: int | None = None) -> Callable[[str], object]:
    """An argparse ``type``: a whole number in ``[low, high]`` (``high`` None: no upper bound)."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise OptionError(f"Option '{name}' is {text!r}, not a whole number.", "Give a whole number.") from None
        return check_int(name, value, low, high)

    return checked(convert)


def sources(text: str) -> list:
    """``--sources``: token positions to trace from, or ``all``."""
    return [TRACE_ALL] if text.strip() == TRACE_ALL else parse_numbers("sources", text)


def hide(text: str) -> list[str]:
    """``--hide``: comma-separated kinds of token to hide."""
    return [check_choice("hide", word.strip(), HIDE_KINDS) for word in text.split(",") if word.strip()]


def add_config(parser: argparse.ArgumentParser) -> None:
    """``--config``: the model pair the command works on."""
    parser.add_argument(
        "--config", "--pair", default="default", help="pair config: a name under configs/ or a .toml path"
    )


def add_team(parser: argparse.ArgumentParser) -> None:
    """The team server's options, shared by ``serve`` and ``worker``."""
    parser.add_argument(
        "--server-config", type=Path, help="several pairs, cache and jobs from a server config (configs/server.toml)"
    )
    parser.add_argument("--broker", help="run background jobs on Celery workers through this Redis (redis://…)")
    parser.add_argument("--redis", help="share analyses between workers in this Redis (redis://…)")
