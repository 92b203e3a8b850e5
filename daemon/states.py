"""The states a stream can be in: one definition for the supervisor, stream events and metrics.

Every layer may import this module (it imports nothing from daemon/): the reader thread moves a
stream between these states, `stream` events publish them (all but `starting`, which lasts only
until the first open ends) and the `blipd_stream_state` gauge shows them.
"""
import enum
from typing import FrozenSet, Literal, Tuple


class SourceState(enum.Enum):
    """Where a stream's reader is; `value` is the name events and metrics use."""

    STARTING = "starting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    STALLED = "stalled"
    OFFLINE = "offline"
    ENDED = "ended"
    FAILED = "failed"


STREAM_STATES: Tuple[str, ...] = tuple(state.value for state in SourceState)
"""Every state name, in the order above (metrics export one gauge per name)."""

PUBLISHED_STATES: Tuple[str, ...] = tuple(name for name in STREAM_STATES if name != SourceState.STARTING.value)
"""The names a `stream` event can carry."""

StreamStateName = Literal[PUBLISHED_STATES]  # type: ignore[valid-type]
"""The `state` field of stream events (a Literal built from PUBLISHED_STATES at import)."""

TERMINAL: FrozenSet[SourceState] = frozenset({SourceState.OFFLINE, SourceState.ENDED, SourceState.FAILED})
"""After one of these a reader publishes nothing more."""

REVIVABLE: FrozenSet[SourceState] = frozenset({SourceState.ENDED, SourceState.FAILED})
"""A reload restarts a stream in one of these even when its config did not change (a file fixed in place)."""
