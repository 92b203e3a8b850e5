"""Config checks that need the file system or the whole document, kept out of the models.

A stream URL is a live URL or a file; a plain path must exist (a typo should fail `blipd check`).
The CURVE secret key must be a regular, readable file that only its owner can read (zmq's
`create_certificates` writes 0644). Checks across items (unique names, effective backoff after a
stream's overrides, what `preprocess: tpu` needs) run after pydantic so each error can point at the
exact item's line.
"""
import os
import re
import stat
from pathlib import Path
from typing import Any, Dict, List, Tuple
from urllib.parse import unquote, urlsplit

from daemon.config.yaml_loader import KeyPath, format_key_path

Problem = Tuple[KeyPath, str]

LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:\[\]]*)(?::([0-9]{1,5})?)?", re.ASCII)
"""host, [IPv6] or host:port after the userinfo; group 1 = the port's digits (ASCII only)."""


def normalize_url(raw: str, base_dir: Path) -> str:
    """A live URL unchanged, a `file://` URL or a relative path as an absolute path.

    A plain path must exist (a typo should fail `blipd check`); a `file://` URL may appear later.
    Messages never quote the URL: it may hold a password.
    """
    text = raw.strip()
    if not text:
        raise ValueError("must not be empty")
    match = _SCHEME.match(text)
    if match is None:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", text):
            raise ValueError("is neither a URL (scheme://...) nor a file path")
        path = Path(os.path.normpath(str(base_dir / text)))
        if not path.exists():
            raise ValueError("file not found: %s" % path)
        if path.is_dir():
            raise ValueError("is a folder, not a video file: %s" % path)
        return str(path)
    scheme = match.group(1).lower()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ValueError("is not a valid %s:// URL" % scheme) from None
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError("file:// URLs name a local absolute path: file:///PATH")
        return unquote(parts.path)
    if scheme not in LIVE_SCHEMES:
        raise ValueError("unsupported URL scheme '%s' (use rtsp, rtsps, http, https, file or a path)" % scheme)
    if not parts.netloc.rpartition("@")[2]:
        raise ValueError("the URL has no host")
    port = _HOST_PORT.fullmatch(parts.netloc.rpartition("@")[2])
    if port is None or (port.group(1) and not 0 < int(port.group(1)) <= 65535):
        # FFmpeg reads a port like "85x4" as 85 and connects there: refuse it here
        raise ValueError("the URL's port must be a number from 1 to 65535")
    return text


NAME_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}$")
NAME_RULE = "must be 1-64 characters of a-z, 0-9, '_' and '-'"


def check_name(value: str) -> str:
    """Stream, prompt, question and box names: they become ZeroMQ/MQTT topic parts and ids."""
    if not NAME_PATTERN.match(value):
        raise ValueError(NAME_RULE)
    return value


def check_endpoint(value: str, transports: Tuple[str, ...] = ("tcp", "ipc", "inproc")) -> str:
    """A ZeroMQ endpoint of one of `transports`; a tcp one needs a port (`*` to bind any)."""
    transport, sep, address = value.partition("://")
    if not sep or transport not in transports or not address:
        shapes = {"tcp": "tcp://HOST:PORT", "ipc": "ipc://PATH", "inproc": "inproc://NAME"}
        raise ValueError("must be " + " or ".join(shapes[t] for t in transports))
    if transport == "tcp" and not re.match(r"^.+:(\d{1,5}|\*)$", address):
        raise ValueError("a tcp endpoint needs a port: tcp://HOST:PORT")
    return value


def is_live_url(url: str) -> bool:
    """rtsp(s):// or http(s)://: reconnect forever and watch for stalls, rather than a file."""
    match = _SCHEME.match(url)
    return match is not None and match.group(1).lower() in LIVE_SCHEMES


def check_secret_file(path: Path) -> None:
    """Raise ValueError naming `path` (never its content) unless it is a private, readable file."""
    try:
        info = os.stat(str(path))
    except FileNotFoundError:
        raise ValueError("file not found: %s" % path) from None
    except OSError as exc:
        raise ValueError("cannot read %s: %s" % (path, exc.strerror)) from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file: %s" % path)
    if info.st_mode & 0o077:
        raise ValueError("%s is readable by group or others (mode %04o): chmod 600 it"
                         % (path, stat.S_IMODE(info.st_mode)))
    try:
        with open(str(path), "rb"):
            pass
    except OSError as exc:
        raise ValueError("cannot read %s: %s" % (path, exc.strerror)) from None


def check_credential_dir(path: Path) -> None:
    """Raise ValueError unless `path` is a readable folder (the allowed clients' public keys)."""
    if not path.is_dir():
        raise ValueError("folder not found: %s" % path)
    if not os.access(str(path), os.R_OK | os.X_OK):
        raise ValueError("cannot read folder %s" % path)


def _duplicates(items: List[Tuple[KeyPath, str]], what: str) -> List[Problem]:
    """A problem for every repeat of a value, pointing at the repeat and naming the first."""
    first: Dict[str, KeyPath] = {}
    problems = []
    for path, value in items:
        if value in first:
            problems.append((path, "duplicate %s '%s' (first at %s)" % (what, value, _short(first[value]))))
        else:
            first[value] = path
    return problems


def _short(path: KeyPath) -> str:
    return format_key_path(path[:-1])


def tpu_preprocess_checks(settings: Any) -> List[Problem]:
    """`model.preprocess: tpu` preprocesses frames on the device that decoded them, with Bmcv
    next to the engines: it needs `backend: sail` (named: auto may resolve to onnxruntime) and
    `decoder: sail` on every stream (auto means opencv, which leaves frames in host memory)."""
    model = settings.model
    if model.preprocess != "tpu":
        return []
    problems: List[Problem] = []
    if model.backend != "sail":
        problems.append((("model", "preprocess"), "tpu needs backend: sail (the backend is %s)" % model.backend))
    for index, stream in enumerate(settings.streams):
        if stream.decoder != "sail":
            problems.append((("streams", index, "decoder"), "model.preprocess: tpu needs decoder: sail, not %s%s"
                             % (stream.decoder, " (auto means opencv)" if stream.decoder == "auto" else "")))
    return problems


def cross_checks(settings: Any) -> List[Problem]:
    """Problems pydantic cannot locate: duplicate names and ids, backoff after overrides, the
    backend and decoders `preprocess: tpu` needs."""
    problems = _duplicates([(("streams", i, "name"), s.name) for i, s in enumerate(settings.streams)],
                           "stream name")
    for index, stream in enumerate(settings.streams):
        base: KeyPath = ("streams", index)
        problems += _duplicates([(base + ("prompts", j, "id"), p.id) for j, p in enumerate(stream.prompts)],
                                "prompt id")
        problems += _duplicates([(base + ("questions", j, "id"), q.id) for j, q in enumerate(stream.questions)],
                                "question id")
        resolved = stream.resolved(settings.defaults)
        if resolved.backoff_max_s < resolved.backoff_initial_s:
            key = "backoff_max_s" if stream.backoff_max_s is not None else "backoff_initial_s"
            problems.append((base + (key,), "backoff_max_s (%g) must be at least backoff_initial_s (%g)"
                             % (resolved.backoff_max_s, resolved.backoff_initial_s)))
        if stream.realtime is False and stream.is_live:
            problems.append((base + ("realtime",), "realtime: false applies to files only, not to live URLs"))
    from daemon.config.sail_checks import sail_checks

    return problems + tpu_preprocess_checks(settings) + sail_checks(settings)
