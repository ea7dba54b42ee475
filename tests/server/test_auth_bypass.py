"""Attempts to get past sign-in, as an attacker would: every input-property trick on every callback, every route and
method, every header form, forged and stale session cookies. Each must get 401 (or 404 for scripts that do not
exist), never 200 and never 500; the right credentials get 200. Sign-in is decided from the method and path alone."""

from __future__ import annotations

import base64
import copy
import statistics
import time

import pytest

from app.dashboard import ids
from app.team.auth import SESSION_COOKIE, AuthConfig, UsersFile
from app.testing.dash_http import callback_spec, request_body

PASSWORD = "correct horse battery"
TEXT = "a fine , moving film"


def _basic(name: str, password: str, scheme: str = "Basic") -> dict:
    return {"Authorization": f"{scheme} " + base64.b64encode(f"{name}:{password}".encode()).decode()}


RIGHT = _basic("ada", PASSWORD)


def _loaded(dash_app):
    from app.service.registry import pair_service

    pair_service(server=dash_app.server)
    return dash_app


@pytest.fixture(scope="module")
def users_path(tmp_path_factory):
    users = UsersFile(tmp_path_factory.mktemp("auth") / "users.json")
    users.add("ada", PASSWORD)
    return users.path


@pytest.fixture(scope="module")
def guarded_app(tiny_config, users_path):
    from app.team.site import create_app

    return _loaded(create_app(tiny_config, auth=AuthConfig(users_file=users_path)))


@pytest.fixture(scope="module")
def specs(guarded_app):
    """Every server-side callback of the dashboard and of the corpus page, as the signed-in page receives them."""
    client = guarded_app.server.test_client()
    main = [s for s in _get_json(client, "/_dash-dependencies") if not s.get("clientside_function")]
    corpus = [s for s in _get_json(client, "/corpus/_dash-dependencies") if not s.get("clientside_function")]
    assert len(main) > 10 and corpus
    return {"": main, "/corpus": corpus}


def _get_json(client, path: str):
    response = client.get(path, headers=RIGHT)
    assert response.status_code == 200
    return response.get_json()


def _analyse_body(client) -> dict:
    spec = callback_spec(client, f"{ids.ANALYSIS}.data", f"{ids.ANALYSE}.n_clicks")
    values = {f"{ids.ANALYSE}.n_clicks": 1, f"{ids.TEXT}.value": TEXT}
    return request_body(spec, values, f"{ids.ANALYSE}.n_clicks")


def _empty_body(spec: dict) -> dict:
    def fill(deps):
        return [{"id": d["id"], "property": d["property"], "value": None} for d in deps]

    return {"output": spec["output"], "outputs": [], "inputs": fill(spec["inputs"]), "state": fill(spec["state"]),
            "changedPropIds": []}  # fmt: skip


# --- the pathname trick (dash-auth opened a callback whose body claimed a public pathname) ------------------------


def _first_input_claims(path: str):
    def trick(body: dict) -> dict:
        if body["inputs"]:
            body["inputs"][0] = {"id": "url", "property": "pathname", "value": path}
        return body

    return trick


def _every_input_claims(body: dict) -> dict:
    body["inputs"] = [{**i, "property": "pathname", "value": "/healthz"} if isinstance(i, dict) else i
                      for i in body["inputs"]]  # fmt: skip
    return body


def _state_claims(body: dict) -> dict:
    body["state"] = [{"id": "url", "property": "pathname", "value": "/healthz"}, *body["state"]]
    return body


def _extra_input_claims(body: dict) -> dict:
    body["inputs"].append({"id": "url", "property": "pathname", "value": "/assets/style.css"})
    return body


def _output_claims(body: dict) -> dict:
    body["outputs"] = {"id": "url", "property": "pathname", "value": "/healthz"}
    body["changedPropIds"] = ["url.pathname"]
    return body


BODY_TRICKS = {
    "first input claims /healthz": _first_input_claims("/healthz"),
    "first input claims a style": _first_input_claims("/assets/style.css"),
    "first input claims a script": _first_input_claims("/_dash-component-suites/dash/dash.js"),
    "first input claims the favicon": _first_input_claims("/_favicon.ico"),
    "every input claims /healthz": _every_input_claims,
    "a state claims /healthz": _state_claims,
    "an extra input claims a style": _extra_input_claims,
    "the outputs claim /healthz": _output_claims,
}


@pytest.mark.parametrize("trick", BODY_TRICKS, ids=list(BODY_TRICKS))
def test_no_body_opens_any_callback_of_either_page(guarded_app, specs, trick):
    client = guarded_app.server.test_client()
    for prefix, callbacks in specs.items():
        for spec in callbacks:
            body = BODY_TRICKS[trick](_empty_body(spec))
            response = client.post(f"{prefix}/_dash-update-component", json=body)
            assert response.status_code == 401, (trick, spec["output"], response.status_code)


def test_the_reported_bypass_is_closed_for_the_analysis(guarded_app):
    """The issue's reproduction: the analyse callback with its first input written as a pathname."""
    client = guarded_app.server.test_client()
    body = _analyse_body(_signed_in(guarded_app))
    assert client.post("/_dash-update-component", json=body, headers=RIGHT).status_code == 200
    anonymous = guarded_app.server.test_client()
    tricked = copy.deepcopy(body)
    tricked["inputs"][0] = {"id": ids.ANALYSE, "property": "pathname", "value": "/healthz"}
    response = anonymous.post("/_dash-update-component", json=tricked)
    assert response.status_code == 401 and TEXT not in response.get_data(as_text=True)
    assert anonymous.post("/_dash-update-component?pathname=/healthz", json=body).status_code == 401


def _signed_in(dash_app):
    client = dash_app.server.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = RIGHT["Authorization"]
    return client


# --- routes and methods -----------------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/"), ("GET", "/?text=a+fine+film"), ("GET", "/_dash-layout"), ("GET", "/_dash-dependencies"),
    ("GET", "/docs/method"), ("GET", "/metrics"), ("GET", "/corpus/"), ("GET", "/corpus/_dash-layout"),
    ("GET", "/corpus/_dash-dependencies"), ("GET", "/_reload-hash"), ("GET", "/_dash-update-component"),
    ("GET", "//_dash-layout"), ("GET", "/_dash-layout/"), ("GET", "/HEALTHZ"), ("GET", "/healthz/"),
    ("GET", "/healthz;/_dash-layout"), ("GET", "/healthz%2f..%2f_dash-layout"), ("GET", "/healthz/../_dash-layout"),
    ("GET", "/assets/style.css/../../_dash-layout"), ("GET", "/assets/x.json"), ("GET", "/assets/notes.txt"),
    ("GET", "/_dash-component-suites/dash"),
    ("POST", "/healthz"), ("POST", "/assets/style.css"), ("PUT", "/"), ("DELETE", "/_dash-layout"),
    ("OPTIONS", "/_dash-layout"), ("OPTIONS", "/_dash-update-component"), ("POST", "/_dash-update-component"),
    ("POST", "/corpus/_dash-update-component"), ("PATCH", "/docs/method"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_every_route_and_method_off_the_allow_list_needs_sign_in(guarded_app, method, path):
    response = guarded_app.server.test_client().open(path, method=method, json={"output": "x", "inputs": []})
    assert response.status_code == 401, response.status_code
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_the_allow_list_stays_open_and_holds_no_data(guarded_app):
    client = guarded_app.server.test_client()
    assert client.get("/healthz").status_code in (200, 503)
    assert client.head("/healthz").status_code in (200, 503)
    assert client.get("/assets/style.css").status_code == 200
    scripts = [s for s in client.get("/", headers=RIGHT).get_data(as_text=True).split('"') if "component-suites" in s]
    assert scripts and all(client.get(s).status_code == 200 for s in scripts[:3])


# --- header forms ----------------------------------------------------------------------------------------------

BAD_HEADERS = {
    "no header": {},
    "wrong password": _basic("ada", "wrong password!"),
    "unknown user": _basic("nobody", PASSWORD),
    "lower-case scheme, wrong password": _basic("ada", "wrong password!", scheme="basic"),
    "bearer": {"Authorization": "Bearer abc"},
    "basic alone": {"Authorization": "Basic"},
    "basic and a space": {"Authorization": "Basic "},
    "not base64": {"Authorization": "Basic !!!not-base64!!!"},
    "no colon": {"Authorization": "Basic " + base64.b64encode(b"ada").decode()},
    "not UTF-8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff\xfe").decode()},
    "empty name and password": {"Authorization": "Basic " + base64.b64encode(b":").decode()},
    "password only": {"Authorization": "Basic " + base64.b64encode(f":{PASSWORD}".encode()).decode()},
    "digest": {"Authorization": 'Digest username="ada", realm="x", nonce="1", uri="/", response="0"'},
    "two credentials": {"Authorization": RIGHT["Authorization"].replace("Basic ", "Basic x,")},
    "proxy header without a proxy": {"X-Forwarded-User": "ada"},
    "X-Original-URL": {"X-Original-URL": "/healthz"},
    "X-Rewrite-URL": {"X-Rewrite-URL": "/healthz"},
    "X-Forwarded-Prefix": {"X-Forwarded-Prefix": "/healthz"},
    "an unsigned session cookie": {"Cookie": f"{SESSION_COOKIE}=" + base64.b64encode(b'{"user":"ada"}').decode()},
    "dash-auth's cookie name": {"Cookie": "session=eyJ1c2VyIjp7ImVtYWlsIjoiYWRhIn19.Zz.abc"},
}


@pytest.mark.parametrize("case", BAD_HEADERS, ids=list(BAD_HEADERS))
def test_no_header_form_but_the_right_password_signs_in(guarded_app, case):
    client = guarded_app.server.test_client()
    for path in ("/", "/_dash-layout"):
        response = client.get(path, headers=BAD_HEADERS[case])
        assert response.status_code == 401, (path, response.status_code)
    update = client.post("/_dash-update-component", json=_analyse_body(_signed_in(guarded_app)),
                         headers=BAD_HEADERS[case])  # fmt: skip
    assert update.status_code == 401


def test_a_session_cookie_signed_with_another_key_is_refused(guarded_app, tiny_config, users_path):
    from app.team.site import create_app

    other = _loaded(create_app(tiny_config, auth=AuthConfig(users_file=users_path)))  # another random key
    stranger = other.server.test_client()
    assert stranger.get("/", headers=RIGHT).status_code == 200
    cookie = stranger.get_cookie(SESSION_COOKIE)
    assert cookie is not None
    client = guarded_app.server.test_client()
    client.set_cookie(SESSION_COOKIE, cookie.value)
    assert client.get("/_dash-layout").status_code == 401


@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC"])
def test_the_right_credentials_get_every_route_and_the_analysis(guarded_app, scheme):
    client = guarded_app.server.test_client(use_cookies=False)
    headers = _basic("ada", PASSWORD, scheme=scheme)
    for path in ("/", "/_dash-layout", "/_dash-dependencies", "/docs/method", "/metrics", "/corpus/"):
        assert client.get(path, headers=headers).status_code == 200, path
    response = client.post("/_dash-update-component", json=_analyse_body(_signed_in(guarded_app)), headers=headers)
    assert response.status_code == 200 and TEXT in response.get_data(as_text=True)


# --- the trusted proxy -------------------------------------------------------------------------------------------


def test_with_a_trusted_proxy_no_trick_signs_in_from_elsewhere(tiny_config, specs):
    from app.team.site import create_app

    proxied = _loaded(create_app(tiny_config, auth=AuthConfig(trusted_proxies=("10.0.0.5",))))
    client = proxied.server.test_client()
    untrusted = {"REMOTE_ADDR": "10.0.0.66"}
    for spec in specs[""]:
        body = _first_input_claims("/healthz")(_empty_body(spec))
        response = client.post("/_dash-update-component", json=body, environ_base=untrusted,
                               headers={"X-Forwarded-User": "ada"})  # fmt: skip
        assert response.status_code == 401, spec["output"]
    assert client.get("/", headers=RIGHT, environ_base=untrusted).status_code == 401
    assert (
        client.get("/", headers={"X-Forwarded-User": " "}, environ_base={"REMOTE_ADDR": "10.0.0.5"}).status_code == 401
    )
    assert (
        client.get("/", headers={"X-Forwarded-User": "ada"}, environ_base={"REMOTE_ADDR": "10.0.0.5"}).status_code
        == 200
    )


# --- malformed requests from a signed-in user: 4xx, never 500 ---------------------------------------------------

MALFORMED_BODIES = {
    "an empty object": {},
    "a list": [],
    "a string": "x",
    "a number": 5,
    "an unknown output": {"output": "x", "inputs": []},
    "no inputs": {"output": f"{ids.ANALYSIS}.data"},
    "inputs not a list": {"output": f"{ids.ANALYSIS}.data", "inputs": {"id": "x"}, "state": []},
    "changed ids not strings": {"output": f"{ids.ANALYSIS}.data", "inputs": [], "changedPropIds": [1]},
}


@pytest.mark.parametrize("case", MALFORMED_BODIES, ids=list(MALFORMED_BODIES))
def test_a_malformed_callback_body_gets_400(guarded_app, case):
    response = _signed_in(guarded_app).post("/_dash-update-component", json=MALFORMED_BODIES[case])
    assert response.status_code == 400, response.status_code
    assert response.get_data(as_text=True).startswith("Bad callback request:")


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(b'{"output": ', "application/json"), (b"output=x", "application/x-www-form-urlencoded"), (b"", "text/plain")],
    ids=["broken JSON", "a form", "nothing"],
)
def test_a_callback_body_that_is_not_json_gets_400(guarded_app, data, content_type):
    """The check parses the body as Dash does (one parse, cached for Dash): broken JSON or another content type is
    a 400 with one sentence, never Dash's 500."""
    response = _signed_in(guarded_app).post("/_dash-update-component", data=data, content_type=content_type)
    assert response.status_code == 400, response.status_code
    assert response.get_data(as_text=True).strip() == "Bad callback request: the body is not a JSON object."


def test_a_callback_body_with_the_wrong_number_of_inputs_gets_400(guarded_app):
    client = _signed_in(guarded_app)
    body = _analyse_body(client)
    body["inputs"] = body["inputs"][:-1]
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 400 and "'inputs' must be a list of" in response.get_data(as_text=True)


SCRIPT_PATHS = [
    "/_dash-component-suites/dash/../../../etc/passwd",
    "/_dash-component-suites/dash/%2e%2e/%2e%2e/x.js",
    "/_dash-component-suites/nonexistent/x.js",
    "/_dash-component-suites/dash/deps/..%2f..%2fsetup.py",
    "/_dash-component-suites/os/x.js",
    "/_dash-component-suites/dash/%00.js",
    "/_dash-component-suites/../_dash-layout",
]


@pytest.mark.parametrize("path", SCRIPT_PATHS)
def test_a_script_path_that_names_nothing_gets_404(guarded_app, path):
    response = guarded_app.server.test_client().get(path)
    assert response.status_code in (401, 404), response.status_code  # 401 when it is not a script path at all
    assert b"root:" not in response.data and b"import " not in response.data


# --- the session: scrypt once per sign-in, not per request; ends with the user ----------------------------------


def test_a_signed_in_page_does_not_pay_scrypt_per_request(guarded_app):
    fresh = guarded_app.server.test_client(use_cookies=False)
    remembered = guarded_app.server.test_client()
    first = remembered.get("/_dash-layout", headers=RIGHT)
    assert first.status_code == 200
    cookie = first.headers["Set-Cookie"]
    assert f"{SESSION_COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie

    def median_seconds(client) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert client.get("/assets/none.json", headers=RIGHT).status_code == 404  # signed in, then no such file
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    verified, cached = median_seconds(fresh), median_seconds(remembered)
    assert cached < 0.5 * verified, (cached, verified)  # scrypt is ~0.1 s; a remembered sign-in skips it


def test_removing_the_user_or_changing_the_password_ends_the_session(tiny_config, tmp_path):
    from app.team.site import create_app

    users = UsersFile(tmp_path / "users.json")
    users.add("ada", PASSWORD)
    users.add("grace", PASSWORD)
    dash_app = _loaded(create_app(tiny_config, auth=AuthConfig(users_file=users.path)))
    ada, grace = dash_app.server.test_client(), dash_app.server.test_client()
    assert ada.get("/", headers=RIGHT).status_code == 200
    assert grace.get("/", headers=_basic("grace", PASSWORD)).status_code == 200
    assert ada.get("/_dash-layout").status_code == 200  # the cookie alone: remembered
    users.remove("ada")
    assert ada.get("/_dash-layout").status_code == 401
    users.add("grace", "another long password")
    assert grace.get("/_dash-layout").status_code == 401


def test_a_session_expires(tiny_config, users_path):
    from app.team.site import create_app

    dash_app = _loaded(create_app(tiny_config, auth=AuthConfig(users_file=users_path, session_seconds=1)))
    client = dash_app.server.test_client()
    assert client.get("/", headers=RIGHT).status_code == 200
    assert client.get("/_dash-layout").status_code == 200
    time.sleep(2.2)
    assert client.get("/_dash-layout").status_code == 401


def test_a_refusal_takes_as_long_for_an_unknown_name_as_for_a_known_one(guarded_app):
    client = guarded_app.server.test_client(use_cookies=False)

    def median_seconds(headers: dict) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            assert client.get("/_dash-layout", headers=headers).status_code == 401
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    known, unknown = median_seconds(_basic("ada", "wrong password!")), median_seconds(_basic("nobody", "x" * 12))
    assert 0.5 < unknown / known < 2.0, (known, unknown)
    assert unknown > 0.01  # the dummy hash is really checked (scrypt), not skipped


def test_every_worker_shares_one_session_key(monkeypatch):
    monkeypatch.delenv("ATTENTION_FLOWS_SECRET_KEY", raising=False)
    made = AuthConfig().to_environ()["ATTENTION_FLOWS_SECRET_KEY"]
    assert len(made) == 64 and made != AuthConfig().to_environ()["ATTENTION_FLOWS_SECRET_KEY"]
    monkeypatch.setenv("ATTENTION_FLOWS_SECRET_KEY", made)
    assert AuthConfig().to_environ()["ATTENTION_FLOWS_SECRET_KEY"] == made


def test_a_pattern_matching_id_of_the_wrong_shape_gets_400(guarded_app, specs):
    client = _signed_in(guarded_app)
    grid = next(s for s in specs["/corpus"] if "getRowsResponse" in s["output"])
    good = {"type": "corpus-examples", "corpus": "x", "view": "examples"}
    for wrong in ({"type": "corpus-examples", "corpus": "x"}, ["corpus-examples"], "corpus-examples"):
        body = {"output": grid["output"], "outputs": {"id": wrong, "property": "getRowsResponse"},
                "inputs": [{"id": good, "property": "getRowsRequest", "value": {}}],
                "state": [{"id": "corpus-context", "property": "data", "value": None},
                          {"id": wrong, "property": "id", "value": wrong}], "changedPropIds": []}  # fmt: skip
        response = client.post("/corpus/_dash-update-component", json=body)
        assert response.status_code == 400, (wrong, response.status_code)
        assert "does not match" in response.get_data(as_text=True)
