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


class SchedulerError(DaemonError):
    """Work cannot be queued or taken (scheduler stopped, unknown stream)."""


class WorkerError(DaemonError):
    """A worker failed to run the tasks of a frame."""


class PublishError(DaemonError):
    """The event publisher cannot bind, authenticate clients, or send."""


class ServiceError(DaemonError):
    """The service cannot start, reload or stop as asked."""
