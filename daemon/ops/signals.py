"""SIGTERM/SIGINT ask the daemon to stop, SIGHUP to reload: both only set an event.

`blipd run` installs these before it reads the config or imports anything heavy, so a signal
that arrives during start-up (systemd's `ExecReload` right after `start`, a quick Ctrl-C) is
kept rather than fatal: SIGHUP's default action would kill the process. The service's main loop
acts on the events once it runs; a reload asked for while starting is applied right after.
Standard library only: the CLI imports this first.
"""
import signal
import threading


class Signals:
    """`stop` and `reload` events set by the signal handlers (install() from the main thread)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()

    def install(self) -> "Signals":
        """Route SIGTERM, SIGINT and SIGHUP to the events; returns self."""
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload.set())
        return self
