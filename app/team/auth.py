"""Sign-in for a team server: a users file with salted password hashes, or a trusted reverse proxy's header.

- **Users file** (``attention-flows users add|remove|list``): JSON ``{"name": "<hash>"}``, hashes by
  ``werkzeug.security`` (scrypt, salted), written atomically with mode 0600. The page asks for HTTP Basic credentials;
  serve it over HTTPS (a reverse proxy) outside a trusted network. A name that does not exist is checked against a
  dummy hash, so a refusal costs the same whatever the name. A verified sign-in is remembered in Flask's signed
  session cookie (HttpOnly, SameSite=Lax, 12 hours, tied to the user's current hash), so a signed-in page does not
  pay scrypt (~0.15 s) on every request; removing the user or changing the password ends it.
- **Proxy header**: a reverse proxy that signs users in (SSO, OAuth2 proxy) passes ``X-Forwarded-User``; it is
  believed only from the configured proxy addresses.

:class:`Gate` decides every request **from its method and path alone**, before Dash sees it: ``GET``/``HEAD`` of
``/healthz`` and of scripts, styles and the favicon (no data; :data:`PUBLIC_ROUTES`) are open, everything else —
pages, the layout, callbacks, docs, ``/metrics``, the corpus page — needs a signed-in user. Nothing in a request's
body can open a route (dash-auth opened any callback whose body claimed a public ``pathname``; it is not used).
Malformed credentials are simply not credentials (401), and a callback body that is not Dash's shape gets 400.
Every request is logged with its user. ``serve`` refuses to bind anything but loopback without one of the two,
unless ``--insecure-no-auth`` is given (:func:`check_binding`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flask import Response, current_app, g, request, session
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.security import check_password_hash, generate_password_hash

from attention.errors import AttentionFlowsError

log = logging.getLogger("attention_flows.access")
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD = 8
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# Open without sign-in, for GET and HEAD only: the load balancer's probe and code that holds no data (Dash's and our
# scripts and styles). The layout (/_dash-layout) and the callback graph (/_dash-dependencies) hold example sentences,
# model names and the page's state: they need sign-in like everything else.
PUBLIC_ROUTES = (
    "/healthz",
    "/_dash-component-suites/<string:package>/<path:path>",
    "/assets/<path:path>.js",
    "/assets/<path:path>.css",
    "/_favicon.ico",
)
PUBLIC_METHODS = ("GET", "HEAD")
SESSION_COOKIE = "attention_flows_session"
SESSION_HOURS = 12
USER_HEADER = "X-Forwarded-User"
SECRET_VARIABLE = "ATTENTION_FLOWS_SECRET_KEY"


class AuthError(AttentionFlowsError):
    """A sign-in setting or a users-file operation that cannot be done."""


@dataclass(frozen=True)
class AuthConfig:
    """How a server signs users in: ``users_file`` (Basic sign-in) or ``trusted_proxies`` (header), or neither."""

    users_file: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    session_seconds: int = SESSION_HOURS * 3600

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
        """The setting for gunicorn workers, with one session key for all of them (``ATTENTION_FLOWS_SECRET_KEY``,
        kept if set, else made now): a sign-in remembered by one worker is then honoured by the others."""
        return {
            "ATTENTION_FLOWS_USERS": str(self.users_file or ""),
            "ATTENTION_FLOWS_TRUSTED_PROXIES": ",".join(self.trusted_proxies),
            SECRET_VARIABLE: os.environ.get(SECRET_VARIABLE) or secrets.token_hex(32),
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
        self._read: tuple[tuple[int, int, int], dict[str, str]] | None = None  # (file stamp, users)
        self._dummy_hash: str | None = None

    def load(self) -> dict[str, str]:
        """Name → hash; the file is parsed again only when it changed (``users add`` while serving takes effect)."""
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise AuthError(f"The users file {self.path} cannot be read ({error}).", "Fix or remove it.") from None
        stamp = (status.st_ino, status.st_mtime_ns, status.st_size)
        if self._read is not None and self._read[0] == stamp:
            return dict(self._read[1])
        try:
            users = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise AuthError(f"The users file {self.path} cannot be read ({error}).", "Fix or remove it.") from None
        if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
            raise AuthError(f"The users file {self.path} is not a name → hash mapping.", "Fix or remove it.")
        self._read = (stamp, users)
        return dict(users)

    def stored_hash(self, name: str) -> str | None:
        return self.load().get(name)

    def names(self) -> list[str]:
        return sorted(self.load())

    def add(self, name: str, password: str) -> None:
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
        """True if ``name`` exists and ``password`` matches its hash. An unknown name is checked against a dummy
        hash of the same kind, so the answer takes as long whatever the name (names cannot be guessed by timing)."""
        stored = self.stored_hash(name)
        if stored is None:
            check_password_hash(self.dummy_hash(), password)
            return False
        return check_password_hash(stored, password)

    def dummy_hash(self) -> str:
        """A hash of a random password, made once per instance, for checking names that do not exist."""
        if self._dummy_hash is None:
            self._dummy_hash = generate_password_hash(secrets.token_hex(16), method="scrypt")
        return self._dummy_hash

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


class Gate:
    """Who may make a request, decided before Dash sees it from the request's method and path (and credentials):
    the allow-list :data:`PUBLIC_ROUTES` for ``GET``/``HEAD``, else a signed-in user or 401. Never the body."""

    def __init__(self, config: AuthConfig) -> None:
        self.config = config
        self.public = Map([Rule(route, methods=PUBLIC_METHODS) for route in PUBLIC_ROUTES]).bind("")
        self.users = UsersFile(config.users_file) if config.users_file is not None else None
        if self.users is not None:
            if not self.users.names():
                raise AuthError(
                    f"The users file {self.users.path} has no users.", "Add one: attention-flows users add NAME."
                )
            self.users.dummy_hash()  # now, not on the first unknown name (whose refusal would then take twice as long)

    def is_public(self, method: str, path: str) -> bool:
        """True for the allow-list's paths and methods only (``//x``, ``/x/../y`` and the like are not on it)."""
        try:
            self.public.match(path, method=method)
        except HTTPException:  # no such route, another method, or a redirect (a path that is not in normal form)
            return False
        return True

    def user(self, request, session) -> str | None:
        """The signed-in user of ``request``, or None."""
        if self.users is None:
            return _proxy_user(request, self.config.trusted_proxies)
        remembered = self._remembered(session)
        credentials = _basic_credentials(request)
        if remembered is not None and (credentials is None or credentials[0] == remembered):
            return remembered
        if credentials is None or not self.users.check(*credentials):
            return None
        name = credentials[0]
        session.clear()
        session.permanent = True  # expires after config.session_seconds (Flask checks the signed time stamp)
        session.update(user=name, tag=self._tag(self.users.stored_hash(name) or ""))
        return name

    def refusal(self):
        if self.users is None:
            return Response("Sign in through the team's proxy.\n", 401, mimetype="text/plain")
        return Response(
            "Sign-in required.\n", 401, {"WWW-Authenticate": 'Basic realm="Attention Flows", charset="UTF-8"'},
            mimetype="text/plain",
        )  # fmt: skip

    def _remembered(self, session) -> str | None:
        name, tag = session.get("user"), session.get("tag")
        if not isinstance(name, str) or not isinstance(tag, str):
            return None
        stored = self.users.stored_hash(name)
        return name if stored is not None and hmac.compare_digest(tag, self._tag(stored)) else None

    def _tag(self, stored_hash: str) -> str:
        """Ties a remembered sign-in to the user's current hash: a new password or removal ends the session."""
        key = str(current_app.secret_key).encode()
        return hmac.new(key, stored_hash.encode(), hashlib.sha256).hexdigest()[:32]


def _basic_credentials(request) -> tuple[str, str] | None:
    """(name, password) of a well-formed ``Authorization: Basic`` header (scheme in any case), else None: a
    header werkzeug cannot parse (no base64, no colon, not UTF-8, another scheme) is no credential at all."""
    try:
        authorization = request.authorization
    except Exception:  # a header werkzeug cannot parse is simply not a credential
        return None
    if authorization is None or authorization.type != "basic":
        return None
    name, password = authorization.username, authorization.password
    if not name or password is None:
        return None
    return name, password


def _proxy_user(request, trusted: tuple[str, ...]) -> str | None:
    """``X-Forwarded-User`` when the request comes from a trusted proxy, else None."""
    if request.remote_addr not in trusted:
        return None
    return request.headers.get(USER_HEADER, "").strip() or None


def protect(dash_app, config: AuthConfig) -> None:
    """Put every route of ``dash_app``'s server behind sign-in but the allow-list (nothing when ``config`` enables
    none), and log every request's user. Covers every Dash app mounted on the same Flask server (the corpus page)."""
    if not config.enabled:
        return
    gate = Gate(config)
    server = dash_app.server
    server.secret_key = os.environ.get(SECRET_VARIABLE) or secrets.token_hex(32)
    server.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=config.session_seconds),
    )

    def sign_in():
        g.user = None
        if gate.is_public(request.method, request.path):
            return None
        g.user = gate.user(request, session)
        return None if g.user else gate.refusal()

    def log_user(response):
        log.info("%s %s %s %s user=%s", request.remote_addr, request.method, request.path, response.status_code,
                 g.get("user") or "-")  # fmt: skip
        return response

    server.before_request_funcs.setdefault(None, []).insert(0, sign_in)  # before any other hook of the server
    server.after_request(log_user)
