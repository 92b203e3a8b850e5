"""Errors of the daemon: one flat hierarchy, each message one line naming the stream, file or key."""
from typing import Iterable, Tuple


class DaemonError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(DaemonError):
    """A config file is unreadable or invalid; `lines` holds one `FILE:LINE: key: message` per problem."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines: Tuple[str, ...] = tuple(lines) if not isinstance(lines, str) else (lines,)
        super().__init__("\n".join(self.lines))

    def __str__(self) -> str:
        return "\n".join(self.lines)


class SourceError(DaemonError):
    """A stream source cannot be opened or read (the supervisor retries with backoff)."""


class PublishError(DaemonError):
    """The event publisher cannot bind (`publish.bind` busy, held by a live daemon, refused) or
    load its CURVE keys."""


class MetricsError(DaemonError):
    """The metrics endpoint cannot be served (`metrics.port` busy or refused)."""


class ServiceError(DaemonError):
    """The service cannot start (a worker's engine failed to load)."""
