"""Remove credentials from URLs and free text before anything is logged, raised or published.

Camera URLs carry passwords (`rtsp://user:secret@cam/stream`) and sometimes tokens in the query
string; decoders echo the URL they failed to open. Everything that formats a URL or a decoder's
message for humans goes through here first. Redaction errs on the side of hiding too much.
"""
import re
from typing import Iterable, List, Tuple
from urllib.parse import quote, unquote

MASK = "***"

SENSITIVE_PARAMS = (
    "password", "passwd", "pass", "pwd", "token", "access_token", "key", "api_key", "apikey",
    "secret", "auth", "sig", "signature",
)
"""Query parameter names whose values are hidden (compared case-insensitively)."""

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)
_PARAM = re.compile(
    r"([?&;](?:%s)=)([^&;#]*)" % "|".join(re.escape(name) for name in SENSITIVE_PARAMS),
    re.IGNORECASE,
)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _split_userinfo(rest: str) -> Tuple[str, str]:
    """Split `user:pass@host/path?q` after the scheme into (userinfo, remainder from '@').

    The userinfo ends at the *last* '@' before the query: passwords typed with a raw '@' or '/'
    are still hidden entirely (a path containing '@' is rare and merely over-redacted).
    """
    end = len(rest)
    for stop in ("?", "#"):
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    at = rest.rfind("@", 0, end)
    if at == -1:
        return "", rest
    return rest[:at], rest[at:]


def redact_url(url: str) -> str:
    """`rtsp://user:secret@host/x?token=t` -> `rtsp://user:***@host/x?token=***`; paths unchanged."""
    match = _SCHEME.match(url)
    if match is None:
        return url
    scheme, rest = match.groups()
    userinfo, remainder = _split_userinfo(rest)
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    return _PARAM.sub(lambda m: m.group(1) + (MASK if m.group(2) else ""), scheme + userinfo + remainder)


def url_secrets(url: str) -> List[str]:
    """The secret parts of a URL (password, sensitive query values), raw and percent-decoded.

    Sources pass these to `redact_text` so a decoder message that echoes a password in some
    other spelling is still cleaned.
    """
    found: List[str] = []
    match = _SCHEME.match(url)
    if match is None:
        return found
    userinfo, _ = _split_userinfo(match.group(2))
    if ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    found.extend(m.group(2) for m in _PARAM.finditer(url))
    spelled = []
    for secret in found:
        if secret:
            spelled.extend({secret, unquote(secret), quote(unquote(secret), safe="")})
    return sorted(set(spelled), key=len, reverse=True)


MIN_SECRET_LEN = 3
"""Shorter secrets are not searched for in free text: masking every "1" would ruin the logs and
hide nothing worth hiding. URLs are still redacted whatever their password's length."""


_TRAILING = ".,;:!?)]}"
"""Punctuation that ends a sentence around a URL (`...?token=t: refused`) rather than the URL."""


def _redact_url_in_text(match: "re.Match[str]") -> str:
    url = match.group(0)
    body = url.rstrip(_TRAILING)
    return redact_url(body) + url[len(body):]


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Hide every URL's credentials in `text`, then every occurrence of each given secret; the
    punctuation after a URL stays readable (`...?token=***: refused`)."""
    text = _URL_IN_TEXT.sub(_redact_url_in_text, text)
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
