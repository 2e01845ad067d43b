"""Who may use a review server, and from where.

- **Loopback by default.** Bound to a loopback address the page needs no token, but answers only
  requests whose ``Host`` is one of its own names (a web page elsewhere cannot reach it through a
  DNS name that points at 127.0.0.1: DNS rebinding). Beyond loopback a token is required (E863).
- **Token.** ``--token-file`` holds a secret; the login page sends it once and gets a session
  cookie (``HttpOnly``, ``SameSite=Strict``, signed with a key derived from the token, so a
  restarted server keeps its reviewers logged in).
- **State-changing requests** (every POST) must come from the page itself: their ``Origin`` must
  be the server's, and they must carry the session's CSRF token in ``X-CSRF-Token``.
- The page renders every text, label and name as text (``textContent``), and the
  Content-Security-Policy allows scripts and styles from the server's own files only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from stillhouse.errors import Errors, fail
from stillhouse.paths import what_is

COOKIE = "stillhouse_review"
CSRF_HEADER = "x-csrf-token"
TOKEN_MIN = 16
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The secret on the first line of ``path`` (E864: missing, not a file, unreadable, shorter
    than :data:`TOKEN_MIN` characters)."""
    problem = ""
    if not path.exists():
        problem = "does not exist"
    elif not path.is_file():
        problem = f"is {what_is(path)}, not a file"
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            problem = f"cannot be read ({error})"
        else:
            token = lines[0].strip() if lines else ""
            if not token:
                problem = "is empty"
            elif len(token) < TOKEN_MIN:
                problem = f"holds a secret of only {len(token)} characters"
            else:
                return token
    raise fail(Errors.E864, path=path, problem=problem, minimum=TOKEN_MIN)


@dataclass(frozen=True)
class Visitor:
    """A browser session as its cookie says: ``session`` id and whether it logged in."""

    session: str
    logged_in: bool


class Guard:
    """Sessions, logins and the checks on every request of one review server."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.loopback = is_loopback(host)
        # With a token the signing key comes from it, so cookies outlive a restart.
        self._key = (
            hashlib.sha256(b"stillhouse-review\0" + token.encode()).digest()
            if token is not None
            else os.urandom(32)
        )

    @property
    def needs_login(self) -> bool:
        return self.token is not None

    def own_hosts(self) -> set[str]:
        names = {"127.0.0.1", "localhost", "[::1]", _bracketed(self.host)}
        return {f"{name}:{self.port}".lower() for name in names}

    def host_allowed(self, host_header: str | None) -> bool:
        """A loopback server answers only to its own names; a wider one to any (the token
        guards it)."""
        if not self.loopback:
            return True
        return host_header is not None and host_header.lower() in self.own_hosts()

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """A state-changing request's ``Origin`` must be this server as the browser reached it."""
        if not origin or not host_header or origin == "null":
            return False
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()

    def check_token(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(
            given.encode("utf-8", "replace"), self.token.encode()
        )

    # cookies ------------------------------------------------------------------------------
    def new_cookie(self, logged_in: bool) -> tuple[Visitor, str]:
        visitor = Visitor(secrets.token_hex(12), logged_in)
        return visitor, self.cookie_value(visitor)

    def cookie_value(self, visitor: Visitor) -> str:
        body = f"{visitor.session}.{int(visitor.logged_in)}"
        return f"{body}.{self._sign(body)}"

    def visitor(self, cookie: str | None) -> Visitor | None:
        """The session a cookie names, or None when it is missing or not signed by this key."""
        if not cookie or cookie.count(".") != 2:
            return None
        session, logged_in, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{session}.{logged_in}")):
            return None
        return Visitor(session, logged_in == "1")

    def csrf_token(self, visitor: Visitor) -> str:
        return self._sign(f"csrf:{visitor.session}")

    def csrf_ok(self, visitor: Visitor, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given, self.csrf_token(visitor))

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
