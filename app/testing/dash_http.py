"""Drive Dash callbacks over HTTP (``/_dash-update-component``) the way the browser does.

Used by the tests (with Flask's test client) and by ``attention-flows bench dashboard`` to time callbacks
server-side. ``values`` map ``"component-id.property"`` to the value the page currently holds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection


def dependencies(client) -> list[dict]:
    """The app's callback specs, as the page receives them."""
    return client.get("/_dash-dependencies").get_json()


def _dep_ids(deps: list[dict]) -> list[str]:
    return [f"{d['id']}.{d['property']}" for d in deps]


WANT, SEEN = "want-", "seen-"  # a view's stores (app/dashboard/callbacks/lazy.py)


def _gates(specs: list[dict], seen: Collection[str] | None = None) -> dict[str, set[str]]:
    """For each view drawn when seen: its ``want`` store → the properties whose change its gate (run in the
    browser) passes on; nothing for a view not in ``seen`` (None: every view is on screen)."""
    return {
        spec["output"]: {dep for dep in _dep_ids(spec["inputs"]) if not dep.startswith(SEEN)}
        if seen is None or spec["output"].removeprefix(WANT).rsplit(".", 1)[0] in seen else set()
        for spec in specs if spec.get("clientside_function") and spec["output"].startswith(WANT)
    }  # fmt: skip


def triggers(
    spec: dict, specs: list[dict], seen: Collection[str] | None = None, gates: dict[str, set[str]] | None = None
) -> list[str]:
    """What makes ``spec`` run: its inputs, and for a view drawn when seen (``seen``: the views on screen, None:
    all), what its gate passes on (``gates``: :func:`_gates` of ``specs``, when the caller has it)."""
    own = _dep_ids(spec["inputs"])
    gates = _gates(specs, seen) if gates is None else gates
    return [t for dep in own for t in ([dep] if dep not in gates else sorted(gates[dep]))]


def callback_spec(client, output: str, trigger: str | None = None) -> dict:
    """The callback whose output string contains ``output`` and, when given, that ``trigger`` makes run."""
    specs = dependencies(client)
    matches = [s for s in specs if output in s["output"] and not s.get("clientside_function")]
    if trigger is not None:
        matches = [s for s in matches if trigger in triggers(s, specs)]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} callbacks write {output} (trigger {trigger})")
    return matches[0]


def _parse_output(output: str) -> list[dict] | dict:
    multi = output.startswith("..")
    parts = output.strip(".").split("...") if multi else [output]
    pieces = []
    for part in parts:
        component, _, prop = part.rpartition(".")
        pieces.append({"id": component, "property": prop.split("@")[0]})
    return pieces if multi else pieces[0]


def request_body(spec: dict, values: dict[str, object], changed: str) -> dict:
    """The JSON the page posts to run ``spec`` after ``changed`` changed (for a view drawn when seen, what its gate
    writes to the ``want`` store it runs on: ``changed`` is said there)."""
    wanted = next((d for d in _dep_ids(spec["inputs"]) if d.startswith(WANT)), None)
    if wanted is not None and changed != wanted:
        values = {**values, wanted: {"key": f"{changed}={values.get(changed)!r}", "changed": [changed]}}
        changed = wanted

    def fill(deps):
        return [_item(d, values.get(f"{d['id']}.{d['property']}")) for d in deps]

    return {
        "output": spec["output"],
        "outputs": _parse_output(spec["output"]),
        "inputs": fill(spec["inputs"]),
        "state": fill(spec["state"]),
        "changedPropIds": [changed],
    }


def _item(dep: dict, value: object) -> dict | list:
    """One input or state as the page sends it: a plain id as is; a pattern-matching id as an object (``MATCH``),
    or, for ``ALL``, the list of the components it matches — none here (the page may have none drawn yet)."""
    if not dep["id"].startswith("{"):
        return {"id": dep["id"], "property": dep["property"], "value": value}
    pattern = json.loads(dep["id"])
    if any(v in (["ALL"], ["ALLSMALLER"]) for v in pattern.values()):
        return []
    return {"id": pattern, "property": dep["property"], "value": value}


def call(client, output: str, values: dict[str, object], changed: str | None = None):
    """POST the callback writing ``output`` (triggered by ``changed``, default the first thing that triggers it)."""
    spec = callback_spec(client, output, changed)
    changed = changed or triggers(spec, dependencies(client))[0]
    return client.post("/_dash-update-component", json=request_body(spec, values, changed))


def triggered_by(
    specs: list[dict], changed: str, predecessors: frozenset = frozenset(), seen: Collection[str] | None = None
) -> list[dict]:
    """Callbacks that ``changed`` makes run (:func:`triggers`; pattern-matching callbacks, clientside ones, which the
    browser runs itself, and ``predecessors``, the outputs of the callbacks whose chain changed it, are skipped)."""
    gates = _gates(specs, seen)  # once for every spec
    return [
        s for s in specs
        if "{" not in s["output"] and not s.get("clientside_function") and s["output"] not in predecessors
        and changed in triggers(s, specs, seen, gates)
    ]  # fmt: skip


class HttpResponse:
    """The parts of a Flask test response :func:`call` users read, over a ``requests`` response."""

    def __init__(self, response) -> None:
        self.status_code = response.status_code
        self.data = response.content

    def get_json(self):
        import orjson  # Dash's own fast JSON (the app extra): 20 simulated users parse megabytes of figures

        return orjson.loads(self.data) if self.data else None  # 204 (nothing to update) has no body


class HttpClient:
    """Flask's test-client interface (``get``, ``post(json=…)``) over real HTTP to a server in another process
    (``attention-flows bench team``, the team-server tests). One keep-alive session per simulated user."""

    def __init__(self, base_url: str, *, timeout: float = 120, auth: tuple[str, str] | None = None) -> None:
        import requests  # lazy: only real HTTP needs it (the tests' Flask test client does not)

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = auth

    def get(self, path: str, **kwargs) -> HttpResponse:
        return HttpResponse(self.session.get(self.base_url + path, timeout=self.timeout, **kwargs))

    def post(self, path: str, json=None, **kwargs) -> HttpResponse:
        return HttpResponse(self.session.post(self.base_url + path, json=json, timeout=self.timeout, **kwargs))


class ServerCpu:
    """Wraps a Flask app's ``wsgi_app``: ``last`` is the CPU seconds its serving thread spent inside the app on the
    last request — routing, the callback, serialising the answer, the request's teardown — without the test
    client's own work of building the request and reading the answer (the browser's, in a real page)."""

    def __init__(self, app) -> None:
        self.app = app
        self.last = 0.0

    def __call__(self, environ, start_response):
        start = time.thread_time()
        try:
            return self.app(environ, start_response)  # Flask has built the whole body and torn the request down
        finally:
            self.last = time.thread_time() - start

    @classmethod
    def install(cls, server) -> ServerCpu:
        """Wrap ``server`` (a Flask app) once; the wrapper."""
        if not isinstance(server.wsgi_app, cls):
            server.wsgi_app = cls(server.wsgi_app)
        return server.wsgi_app


def cascade(client, specs: list[dict], values: dict[str, object], changed: str, seen: Collection[str] | None = None):
    """Run every callback ``changed`` triggers, then those their outputs trigger, one after another (the page runs
    independent ones in parallel), as Dash's renderer does: a callback triggered by several outputs of one round
    runs once, and never again in a chain it started (its own outputs, e.g. the URL state callback writing the URL
    it reads). ``values`` is updated in place with what they return. Yields ``(spec, seconds, response, cpu)``
    per request: its wall time and the CPU seconds of this thread (the test client serves in it): inside the app when
    its server is wrapped in :class:`ServerCpu`, else for the whole test-client call. ``seen``: the views on screen
    (the others' gates ask for nothing); None: every view."""
    level = next_round([(changed, frozenset())], specs, seen)
    while level:
        answered = []
        for spec, prop, chain in level:
            body = request_body(spec, values, prop)
            start, cpu = time.perf_counter(), time.thread_time()
            response = client.post("/_dash-update-component", json=body)
            elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
            meter = getattr(getattr(client, "application", None), "wsgi_app", None)
            yield spec, elapsed, response, meter.last if isinstance(meter, ServerCpu) else cpu
            if response.status_code == 200:
                answered.append((spec, response, chain))
        level = next_round(updated(answered, values), specs, seen)


def updated(answered: list, values: dict[str, object]) -> list[tuple[str, frozenset]]:
    """Store what each ``(spec, response, chain)`` returned in ``values``; the changed properties, each with the
    chain of callbacks that led to it."""
    changed = []
    for spec, response, chain in answered:
        for component, props in (response.get_json() or {}).get("response", {}).items():
            for name, new_value in props.items():
                values[f"{component}.{name}"] = new_value
                changed.append((f"{component}.{name}", chain | {spec["output"]}))
    return changed


def next_round(
    changed: list[tuple[str, frozenset]], specs: list[dict], seen: Collection[str] | None = None
) -> list[tuple[dict, str, frozenset]]:
    """The callbacks the ``(property, chain)`` changes trigger (``seen``: the views on screen, None: all), each
    once: ``(spec, property, chain)``."""
    level, queued = [], set()
    for prop, chain in changed:
        for spec in triggered_by(specs, prop, chain, seen):
            if spec["output"] not in queued:
                queued.add(spec["output"])
                level.append((spec, prop, chain))
    return level
