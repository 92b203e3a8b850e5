"""sd_notify: tell systemd we are ready, reloading, stopping, alive (the protocol is a datagram).

No-op when $NOTIFY_SOCKET is unset (run by hand, in tests, under another supervisor). A failed send
is logged, never raised: losing a notification must not take the daemon down.
"""
import logging
import os
import socket
import time
from typing import Mapping, Optional

log = logging.getLogger(__name__)


class Notifier:
    """Sends `KEY=value` lines to $NOTIFY_SOCKET (a path, or `@name` for an abstract socket)."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send one datagram of `KEY=value` lines; True if it was sent."""
        if self._address is None:
            return False
        message = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)
                sock.connect(self._address)
                sock.sendall(message)
        except OSError as exc:
            if not self._warned:  # systemd gone or socket wrong: say so once, not every ping
                log.warning("sd_notify to NOTIFY_SOCKET failed: %s", exc)
                self._warned = True
            return False
        return True

    def ready(self, status: Optional[str] = None) -> bool:
        lines = ["READY=1"] + (["STATUS=" + _one_line(status)] if status else [])
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        return self.notify("STATUS=" + _one_line(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload requires; send ready() after."""
        return self.notify("RELOADING=1", "MONOTONIC_USEC=%d" % int(time.monotonic() * 1e6))

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog_interval(self) -> Optional[float]:
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), None when no watchdog is set."""
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None  # the watchdog is meant for another process (e.g. our parent)
        try:
            usec = int(self._watchdog_usec or 0)
        except ValueError:
            log.warning("WATCHDOG_USEC=%r is not a number: watchdog off", self._watchdog_usec)
            return None
        return usec / 2e6 if usec > 0 else None


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
