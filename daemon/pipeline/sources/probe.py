"""Ask a network camera for any answer, quickly, before a decoder opens it.

OpenCV serialises FFmpeg opens behind one process-wide lock (and the sail decoder its own), so a
camera that accepts TCP but never answers would hold every other stream's (re)open for its whole
open timeout. A probe with a short timeout, outside any decoder lock, turns that camera into a
`reconnecting` stream within PROBE_TIMEOUT_S and keeps the lock for cameras that talk: RTSP gets an
OPTIONS request, HTTP a HEAD request (over TLS for rtsps/https); any reply at all (an error
status, an authentication challenge, a closed connection, a failed TLS handshake) counts as an
answer: only silence, a refused connection or an unknown host fail the probe. A camera that answers the
probe and then stalls inside the decoder's open can still hold the lock (the residual case).
"""
import socket
import ssl
import time
from typing import Optional, Tuple
from urllib.parse import urlsplit

from daemon.errors import SourceError

PROBE_TIMEOUT_S = 2.0
"""How long a camera gets to answer the probe (the decoder's own open timeout applies after)."""

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


def _request(scheme: str, url: str, host: str, path: str) -> bytes:
    if scheme.startswith("rtsp"):
        return ("OPTIONS %s RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: blipd\r\n\r\n" % _no_userinfo(url)).encode("latin-1")
    return ("HEAD %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: blipd\r\n\r\n" % (path or "/", host)).encode("latin-1")


def _no_userinfo(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()


def target(url: str) -> Optional[Tuple[str, str, int]]:
    """(scheme, host, port) of a URL this module can probe; None for others (files, UDP...)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:  # a bad port: the decoder reports it
        return None
    return scheme, parts.hostname, port


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Return once the server at `url` answered anything; SourceError (no secret in it) when it
    refuses, cannot be reached or stays silent for `timeout_s`. URLs it cannot probe pass."""
    where = target(url)
    if where is None:
        return
    scheme, host, port = where
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw:
            sock = raw
            if scheme in ("rtsps", "https"):
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # only asks "does it answer": the decoder verifies
                raw.settimeout(max(0.05, deadline - time.monotonic()))
                sock = context.wrap_socket(raw, server_hostname=host)
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            sock.sendall(_request(scheme, url, host, urlsplit(url).path))
            sock.recv(1)  # a reply, or the server closing: it is alive; the decoder judges the rest
    except socket.timeout:
        raise SourceError("no answer within %.1f s" % timeout_s) from None
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return  # it answered, if not the way we asked: the decoder reports what it makes of it
    except OSError as exc:
        raise SourceError((exc.strerror or type(exc).__name__).lower()) from None
