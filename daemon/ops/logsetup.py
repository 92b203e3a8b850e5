"""Logging for the daemon: one line per record, the stream name on every record, secrets redacted.

Records about a stream carry `extra={"stream": name}` (see `stream_logger`); others show "-".
A filter on the handler rewrites every formatted message through `redact_text`, so a password
that slipped into an exception text from a decoder never reaches the journal. It is a safety net:
URLs are redacted where they are formatted. The service adds the secrets of every config it
applies (`RedactFilter.add_secrets` on reload) and never forgets one, since a late message about a
removed stream may still quote its old password.
"""
import logging
import sys
import threading
from typing import Any, Iterable, MutableMapping, Optional, Tuple

from blip.redact import redact_text

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(stream)s] %(message)s"


class _StreamAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds the stream name to every record of one stream."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> Tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("stream", self.extra["stream"])  # type: ignore[index]
        kwargs["extra"] = extra
        return msg, kwargs


def stream_logger(name: str, stream: str) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """A logger whose records name `stream`."""
    return _StreamAdapter(logging.getLogger(name), {"stream": stream})


class RedactFilter(logging.Filter):
    """Fills the default stream field and redacts URLs and the known secrets from the final message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.secrets: Tuple[str, ...] = tuple(sorted(set(secrets)))

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also redact `secrets` from now on (a reload's new passwords); the old ones stay."""
        with self._lock:
            self.secrets = tuple(sorted(set(self.secrets) | set(secrets)))

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "stream"):
            record.stream = "-"
        message = record.getMessage()
        cleaned = redact_text(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            if self._holds_secret(record.exc_info[1]):
                # An exception text of the traceback holds a secret: keep the type, drop the text.
                record.msg = "%s (%s; details withheld: they held a secret)" % (record.msg, type(record.exc_info[1]).__name__)
                record.exc_info = None
                record.exc_text = None
        return True


    def _holds_secret(self, exc: BaseException) -> bool:
        """Whether the text of `exc` or of any exception the traceback prints with it (its cause
        or context, `raise ... from ...`) holds a URL password or a known secret."""
        seen = set()
        current: Optional[BaseException] = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            text = str(current)
            if redact_text(text, self.secrets) != text:
                return True
            current = current.__cause__ or current.__context__
        return False


def set_level(level: str) -> None:
    """The root logger's level (`debug` ... `critical`), e.g. a reload's new `log_level`."""
    logging.getLogger().setLevel(level.upper())


def setup_logging(level: str = "info", secrets: Iterable[str] = (), stream: Optional[Any] = None) -> RedactFilter:
    """Configure the root logger once for the daemon process; returns the filter so a reload can
    add the new config's secrets (`add_secrets`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    redactor = RedactFilter(secrets)
    handler.addFilter(redactor)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    return redactor
