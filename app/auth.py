"""Sign-in for a team server: a users file with salted password hashes, or a trusted reverse proxy's header.

- **Users file** (``attention-flows users add|remove|list``): JSON ``{"name": "<hash>"}``, hashes by
  ``werkzeug.security`` (scrypt, salted), written atomically with mode 0600. The page asks for HTTP Basic credentials
  (``dash_auth.BasicAuth``); serve it over HTTPS (a reverse proxy) outside a trusted network.
- **Proxy header**: a reverse proxy that signs users in (SSO, OAuth2 proxy) passes ``X-Forwarded-User``; it is
  accepted only from the configured proxy addresses, anything else gets 401 (``dash_auth.Auth`` subclass).

Every route is protected (pages, the layout, callbacks, docs, ``/metrics``) except ``/healthz``, which load
balancers poll, and scripts and styles, which hold no data (:data:`PUBLIC_ROUTES`). Every request is logged with
its user. ``serve`` refuses to bind anything but loopback without one of the two, unless ``--insecure-no-auth`` is
given (:func:`check_binding`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from attention.errors import AttentionFlowsError

log = logging.getLogger("attention_flows.access")
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD = 8
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# Open without sign-in: the load balancer's probe and code that holds no data (Dash's and our scripts and styles).
# dash-auth would also open /_dash-layout and /_dash-dependencies, which hold example sentences, model names and
# the page's state: here they need sign-in like everything else.
PUBLIC_ROUTES = [
    "/healthz",
    "/_dash-component-suites/<path:path>",
    "/assets/<path:path>.js",
    "/assets/<path:path>.css",
    "/_favicon.ico",
]
USER_HEADER = "X-Forwarded-User"


class AuthError(AttentionFlowsError):
    """A sign-in setting or a users-file operation that cannot be done."""


@dataclass(frozen=True)
class AuthConfig:
    """How a server signs users in: ``users_file`` (Basic sign-in) or ``trusted_proxies`` (header), or neither."""

    users_file: Path | None = None
    trusted_proxies: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.users_file is not None or bool(self.trusted_proxies)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> AuthConfig:
        """``ATTENTION_FLOWS_USERS`` (a users file) and ``ATTENTION_FLOWS_TRUSTED_PROXIES`` (comma-separated
        addresses): how ``serve --workers N`` hands the setting to its gunicorn workers."""
        environ = os.environ if environ is None else environ
        users = environ.get("ATTENTION_FLOWS_USERS")
        proxies = tuple(p.strip() for p in environ.get("ATTENTION_FLOWS_TRUSTED_PROXIES", "").split(",") if p.strip())
        return cls(Path(users) if users else None, proxies)

    def to_environ(self) -> dict[str, str]:
        return {
            "ATTENTION_FLOWS_USERS": str(self.users_file or ""),
            "ATTENTION_FLOWS_TRUSTED_PROXIES": ",".join(self.trusted_proxies),
        }


def check_binding(host: str, config: AuthConfig, *, insecure: bool) -> None:
    """Refuse to serve beyond this machine without sign-in (unless ``insecure`` says so explicitly)."""
    if host in LOOPBACK or config.enabled or insecure:
        return
    raise AuthError(
        f"Serving on {host} would let anyone on the network in: sign-in is required beyond localhost.",
        "Add users (attention-flows users add NAME) and pass --users FILE, or --trusted-proxy ADDRESS behind a "
        "proxy that signs users in; --insecure-no-auth serves without sign-in.",
    )


class UsersFile:
    """The users file: names and salted password hashes (never passwords)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            users = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise AuthError(f"The users file {self.path} cannot be read ({error}).", "Fix or remove it.") from None
        if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
            raise AuthError(f"The users file {self.path} is not a name → hash mapping.", "Fix or remove it.")
        return users

    def names(self) -> list[str]:
        return sorted(self.load())

    def add(self, name: str, password: str) -> None:
        from werkzeug.security import generate_password_hash

        if not NAME.fullmatch(name):
            raise AuthError(f"User name {name!r} is not allowed.", "Use 1-64 letters, digits, '.', '_', '@' or '-'.")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"The password is shorter than {MIN_PASSWORD} characters.", "Choose a longer one.")
        users = self.load()
        users[name] = generate_password_hash(password, method="scrypt")
        self._write(users)

    def remove(self, name: str) -> None:
        users = self.load()
        if name not in users:
            raise AuthError(
                f"There is no user {name!r} in {self.path}.", f"Users: {', '.join(sorted(users)) or 'none'}."
            )
        del users[name]
        self._write(users)

    def check(self, name: str, password: str) -> bool:
        """True if ``name`` exists and ``password`` matches its hash (constant-time compare by werkzeug)."""
        from werkzeug.security import check_password_hash

        stored = self.load().get(name)
        return stored is not None and check_password_hash(stored, password)

    def _write(self, users: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(handle, 0o600)  # hashes are secrets too
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(users, stream, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def protect(dash_app, config: AuthConfig) -> None:
    """Put ``dash_app`` behind sign-in (nothing when ``config`` enables none) and log every request's user."""
    from flask import request

    if not config.enabled:
        return
    if config.users_file is not None:
        from dash_auth import BasicAuth

        users = UsersFile(config.users_file)
        if not users.names():
            raise AuthError(f"The users file {users.path} has no users.", "Add one: attention-flows users add NAME.")
        secret = os.environ.get("ATTENTION_FLOWS_SECRET_KEY") or os.urandom(32).hex()
        BasicAuth(dash_app, auth_func=users.check, public_routes=PUBLIC_ROUTES, secret_key=secret)
    else:
        _proxy_auth(dash_app, config.trusted_proxies)
    _only_public(dash_app, PUBLIC_ROUTES)

    @dash_app.server.after_request
    def log_user(response):
        user = request.authorization.username if request.authorization else request.headers.get(USER_HEADER)
        log.info("%s %s %s %s user=%s", request.remote_addr, request.method, request.path, response.status_code,
                 user or "-")  # fmt: skip
        return response


def _only_public(dash_app, routes: list[str]) -> None:
    """Replace dash-auth's public routes (which include the layout and the callback graph) by exactly ``routes``."""
    from dash_auth.public_routes import PUBLIC_ROUTES as KEY
    from werkzeug.routing import Map, Rule

    dash_app.server.config[KEY] = Map([Rule(route) for route in routes]).bind("")


def _proxy_auth(dash_app, trusted: tuple[str, ...]) -> None:
    from dash_auth.auth import Auth
    from flask import Response, request

    class ProxyHeaderAuth(Auth):
        """Signed in when a trusted proxy says who: ``X-Forwarded-User`` from a configured address only."""

        def is_authorized(self) -> bool:
            return request.remote_addr in trusted and bool(request.headers.get(USER_HEADER, "").strip())

        def login_request(self):
            return Response("Sign in through the team's proxy.", 401)

    ProxyHeaderAuth(dash_app, public_routes=PUBLIC_ROUTES)
