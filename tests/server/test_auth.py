"""Sign-in for a team server: the users file, Basic sign-in on every route but /healthz, the trusted proxy header,
and ``serve`` refusing to bind beyond localhost without sign-in."""

import base64
import json
import stat

import pytest

from app.cli.main import main
from app.team.auth import AuthConfig, AuthError, UsersFile, check_binding

ROUTES = ["/", "/_dash-layout", "/_dash-dependencies", "/docs/method", "/?text=a+fine+film", "/corpus/",
          "/corpus/_dash-layout", "/corpus/_dash-dependencies"]  # fmt: skip


def _basic(name: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def test_the_users_file_keeps_salted_hashes_only(tmp_path):
    users = UsersFile(tmp_path / "users.json")
    users.add("ada", "correct horse battery")
    users.add("grace", "correct horse battery")
    stored = json.loads(users.path.read_text())
    assert set(stored) == {"ada", "grace"} and stored["ada"] != stored["grace"]  # salted
    assert "correct horse" not in users.path.read_text() and stored["ada"].startswith("scrypt:")
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600
    assert users.check("ada", "correct horse battery")
    assert not users.check("ada", "wrong password") and not users.check("nobody", "correct horse battery")
    users.remove("grace")
    assert users.names() == ["ada"]
    with pytest.raises(AuthError, match="no user 'grace'"):
        users.remove("grace")
    with pytest.raises(AuthError, match="shorter than 8"):
        users.add("bob", "short")
    with pytest.raises(AuthError, match="not allowed"):
        users.add("bad name", "long enough password")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(AuthError, match="cannot be read"):
        UsersFile(tmp_path / "broken.json").names()


def test_every_route_but_healthz_needs_the_right_password(tiny_config, tmp_path):
    from app.team.site import create_app

    users = UsersFile(tmp_path / "users.json")
    users.add("ada", "correct horse battery")
    dash_app = _loaded(create_app(tiny_config, auth=AuthConfig(users_file=users.path)))
    client = dash_app.server.test_client(use_cookies=False)  # each request on its own (no remembered sign-in)
    for route in ROUTES:
        assert client.get(route).status_code == 401, route
        assert client.get(route, headers=_basic("ada", "wrong password!")).status_code == 401, route
        assert client.get(route, headers=_basic("ada", "correct horse battery")).status_code == 200, route
    for prefix in ("", "/corpus"):
        update = client.post(f"{prefix}/_dash-update-component", json={"output": "x.children", "inputs": []})
        assert update.status_code == 401  # callbacks too
    assert client.get("/healthz").status_code in (200, 503)  # the load balancer's probe stays open
    assert client.get("/assets/style.css").status_code == 200  # styles hold no data


def test_the_proxy_header_is_believed_only_from_a_trusted_address(tiny_config):
    from app.team.site import create_app

    client = _loaded(create_app(tiny_config, auth=AuthConfig(trusted_proxies=("10.0.0.5",)))).server.test_client()
    trusted, untrusted = {"REMOTE_ADDR": "10.0.0.5"}, {"REMOTE_ADDR": "10.0.0.66"}
    header = {"X-Forwarded-User": "ada"}
    assert client.get("/", headers=header, environ_base=trusted).status_code == 200
    assert client.get("/", headers=header, environ_base=untrusted).status_code == 401
    assert client.get("/", environ_base=trusted).status_code == 401  # a trusted proxy that names nobody


def test_serve_refuses_the_network_without_sign_in(capsys, tmp_path):
    assert main(["serve", "--host", "0.0.0.0", "--no-prepare"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "sign-in is required beyond localhost" in error and "users add" in error
    check_binding("127.0.0.1", AuthConfig(), insecure=False)  # loopback: fine
    check_binding("0.0.0.0", AuthConfig(trusted_proxies=("10.0.0.5",)), insecure=False)
    check_binding("0.0.0.0", AuthConfig(), insecure=True)
    empty = tmp_path / "users.json"
    assert main(["serve", "--host", "0.0.0.0", "--users", str(empty), "--no-prepare"]) == 2
    assert "has no users" in capsys.readouterr().err


def test_users_command_adds_lists_and_removes(tmp_path, monkeypatch, capsys):
    import io

    path = tmp_path / "users.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert main(["users", "add", "ada", "--users", str(path), "--password-stdin"]) == 0
    assert main(["users", "list", "--users", str(path)]) == 0
    assert "ada" in capsys.readouterr().out
    assert UsersFile(path).check("ada", "correct horse battery")
    assert main(["users", "remove", "ada", "--users", str(path)]) == 0
    assert main(["users", "remove", "ada", "--users", str(path)]) == 2
    assert main(["users", "add", "--users", str(path)]) == 2


def _loaded(dash_app):
    """The app once its models are loaded (a process must not exit while the loader thread is inside torch)."""
    from app.service.registry import pair_service

    pair_service(server=dash_app.server)
    return dash_app
