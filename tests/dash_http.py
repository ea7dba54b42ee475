"""Drive Dash callbacks over HTTP (``/_dash-update-component``) with Flask's test client, as the browser would."""

from __future__ import annotations


def callback_spec(client, output: str, trigger: str | None = None) -> dict:
    """The callback whose output string (as /_dash-dependencies lists it) contains ``output`` and, when given,
    whose inputs include ``trigger`` ("id.prop")."""
    specs = client.get("/_dash-dependencies").get_json()
    matches = [s for s in specs if output in s["output"]]
    if trigger is not None:
        matches = [s for s in matches if any(f"{d['id']}.{d['property']}" == trigger for d in s["inputs"])]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} callbacks write {output}")
    return matches[0]


def _parse_output(output: str) -> list[dict] | dict:
    parts = output.strip(".").split("...") if output.startswith("..") else [output]
    pieces = []
    for part in parts:
        component, _, prop = part.rpartition(".")
        pieces.append({"id": component, "property": prop.split("@")[0]})
    return pieces if output.startswith("..") else pieces[0]


def call(client, output: str, values: dict[str, object], changed: str | None = None):
    """POST the callback writing ``output``; ``values`` maps "id.prop" of inputs and states to values.

    Returns the Flask response."""
    spec = callback_spec(client, output, changed)

    def fill(deps):
        return [
            {"id": d["id"], "property": d["property"], "value": values.get(f"{d['id']}.{d['property']}")} for d in deps
        ]

    inputs = fill(spec["inputs"])
    body = {
        "output": spec["output"],
        "outputs": _parse_output(spec["output"]),
        "inputs": inputs,
        "state": fill(spec["state"]),
        "changedPropIds": [changed or f"{inputs[0]['id']}.{inputs[0]['property']}"],
    }
    return client.post("/_dash-update-component", json=body)
