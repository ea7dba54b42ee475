"""Requests Dash would answer with HTTP 500 and a traceback in the log get a 4xx and one sentence instead.

- A callback request (``POST <prefix>_dash-update-component``) whose body is not Dash's shape — not a JSON object,
  no ``output`` naming a callback of that page, ``inputs`` / ``state`` not lists of the callback's length, an id
  that is not the shape of the callback's (a pattern-matching id with other keys, a list or a string instead of
  an object) — gets 400.
- A script path (``/_dash-component-suites/…``) that names no registered file (traversal attempts, typos, old
  fingerprints) gets 404.

Sign-in (:mod:`app.team.auth`) runs first: an anonymous request gets 401 whatever its body.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from dash import Dash
from dash.exceptions import DependencyException
from flask import Flask, Response, request

CALLBACK_ROUTE = "_dash-update-component"


def install_request_checks(server: Flask, dash_apps: Iterable[Dash]) -> None:
    """Check callback bodies for each of ``dash_apps`` (all mounted on ``server``) and answer unknown scripts with 404.

    Install after the Dash apps are made: their own ``before_request`` hook fills ``callback_map`` first."""
    routes = {f"{app.config.requests_pathname_prefix}{CALLBACK_ROUTE}": app for app in dash_apps}

    def check_callback_body() -> Response | None:
        dash_app = routes.get(request.path)
        if dash_app is None or request.method != "POST":
            return None
        problem = callback_body_problem(request.get_json(silent=True), dash_app.callback_map)
        return None if problem is None else _plain(f"Bad callback request: {problem}.", 400)

    def no_such_script(_error: DependencyException) -> Response:
        return _plain("No such script or style.", 404)

    server.before_request(check_callback_body)
    server.register_error_handler(DependencyException, no_such_script)


def callback_body_problem(body: object, callback_map: dict) -> str | None:
    """What is wrong with a callback request ``body`` for the callbacks in ``callback_map``, or None."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    output = body.get("output")
    if not isinstance(output, str) or output not in callback_map:
        return "'output' names no callback of this page"
    spec = callback_map[output]
    for key, expected in (("inputs", spec.get("inputs", [])), ("state", spec.get("state", []))):
        given = body.get(key, [])
        if not isinstance(given, list) or len(given) != len(expected):
            return f"'{key}' must be a list of {len(expected)} items"
        for item, wanted in zip(given, expected, strict=True):
            if not _same_shape(item, wanted["id"]):
                return f"an item of '{key}' does not match the callback's id {wanted['id']}"
    outputs = body.get("outputs", [])
    if not isinstance(outputs, dict | list):
        return "'outputs' must be an object or a list"
    declared = _output_ids(output)
    given = outputs if isinstance(outputs, list) else [outputs]
    if outputs and (len(given) != len(declared) or not all(map(_same_shape, given, declared))):
        return "'outputs' do not match the callback's outputs"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(isinstance(item, str) for item in changed):
        return "'changedPropIds' must be a list of strings"
    return None


def _output_ids(output: str) -> list[str]:
    """The component ids of a callback's output key (``id.prop``, or ``..a.p...b.q..`` for several)."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    return [part.rsplit(".", 1)[0] for part in parts]


def _same_shape(item: object, declared: str) -> bool:
    """Whether a body item (``{"id": …}``, or a list of them for a wildcard that matches several) has an id of the
    declared kind: a string for a plain id, an object with exactly the declared keys for a pattern-matching one."""
    if isinstance(item, list):
        return all(_same_shape(each, declared) for each in item)
    if not isinstance(item, dict):
        return False
    component = item.get("id")
    if not declared.startswith("{"):
        return isinstance(component, str)
    return isinstance(component, dict) and set(component) == set(json.loads(declared))


def _plain(text: str, status: int) -> Response:
    return Response(text + "\n", status, mimetype="text/plain")
