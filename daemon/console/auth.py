"""HTTP auth for a console reachable from other machines: a bearer token or users with passwords.

Credentials come from files (systemd LoadCredential= or a 0600 file), are compared in constant
time and never logged. The browser case: `?token=` once sets an HttpOnly cookie; Basic auth is
asked for with a 401 so browsers show their own login box (EventSource sends it along).
"""
import base64
import hmac
from pathlib import Path
from typing import Dict, Optional

from daemon.errors import ConfigError

COOKIE = "blipd_console_token"


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("auth token_file %s: %s" % (path, exc.strerror or exc)) from None
    if len(token) < 16:
        raise ConfigError("auth token_file %s: the token must be at least 16 characters" % path)
    return token


def read_users(path: Path) -> Dict[str, str]:
    """`user:password` lines (# comments and blank lines ignored)."""
    users: Dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError("auth users_file %s: %s" % (path, exc.strerror or exc)) from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise ConfigError("%s:%d: expected user:password" % (path, number))
        users[user] = password
    if not users:
        raise ConfigError("auth users_file %s: no user:password line" % path)
    return users


class Authenticator:
    """Decides whether a request's credentials are good; no state besides the secrets."""

    def __init__(self, token: Optional[str] = None, users: Optional[Dict[str, str]] = None) -> None:
        self.token = token
        self.users = users or {}

    def check(self, authorization: str, cookie: Optional[str], query_token: Optional[str]) -> bool:
        if self.token is not None:
            for offered in (query_token, cookie, _bearer(authorization)):
                if offered and hmac.compare_digest(offered.encode(), self.token.encode()):
                    return True
        if self.users:
            credentials = _basic(authorization)
            if credentials is not None:
                expected = self.users.get(credentials[0], "")
                # compare against something even for an unknown user, so timing tells nothing
                good = hmac.compare_digest(credentials[1].encode(), (expected or "\0" * 16).encode())
                return good and bool(expected)
        return False

    @property
    def challenge(self) -> Optional[str]:
        return 'Basic realm="blipd console", charset="UTF-8"' if self.users else None


def _bearer(header: str) -> Optional[str]:
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _basic(header: str) -> Optional[tuple]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None
