"""Run `blipd run` as a real subprocess and watch what it publishes, for integration tests.

    with DaemonProcess(config_path) as daemon, EventCollector(endpoint) as events:
        events.wait_for(lambda evs: any(e["type"] == "caption" for e in evs), timeout=60)

The collector's SUB socket connects before or after the daemon binds (ZeroMQ reconnects); the
first messages may be lost to the slow-joiner effect, so tests judge `seq` from the first event
they receive on each stream, never from 1.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

import zmq

REPO = Path(__file__).resolve().parents[1]


def free_tcp_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "tcp://127.0.0.1:%d" % s.getsockname()[1]


_Process = TypeVar("_Process", bound="CommandProcess")


class CommandProcess:
    """`python -m daemon.commands.cli ARGS` as a real subprocess, stdout and stderr in a temporary
    log file. The file is deleted on exit (its text stays readable through `log()`), so a suite
    run leaves nothing in /tmp. `prefix` goes before the command (tests/privileges.py's, so file
    modes apply to a process started by root). A restart (`start()` again) appends to the log."""

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None, prefix: Sequence[str] = (),
                 log_prefix: str = "blipd-") -> None:
        self.args = list(args)
        self.prefix = list(prefix)
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self._log = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix=".log", delete=False)
        self.proc = None  # type: Optional[subprocess.Popen]
        self._final_log = None  # type: Optional[str]

    def start(self) -> "CommandProcess":
        self.proc = subprocess.Popen(
            self.prefix + [sys.executable, "-m", "daemon.commands.cli"] + self.args,
            cwd=str(REPO), env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        return self

    def __enter__(self: _Process) -> _Process:
        self.start()  # a subclass's start() may wait for readiness (the console's)
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self._final_log = self.log()
        self._log.close()
        os.unlink(self._log.name)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (raises TimeoutExpired if it hangs)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        """Everything the process wrote so far (kept after the process is gone)."""
        if self._final_log is not None:
            return self._final_log
        return Path(self._log.name).read_text(errors="replace")

    def wait_log(self, text: str, timeout: float) -> bool:
        """True once `text` is in the log; False at the deadline or when the process ended without it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return text in self.log()
            time.sleep(0.05)  # polling a file another process writes
        return False


class DaemonProcess(CommandProcess):
    """`blipd run -c CONFIG`."""

    def __init__(self, config: Path, env: Optional[Dict[str, str]] = None, prefix: Sequence[str] = ()) -> None:
        self.config = Path(config)
        super().__init__(["run", "-c", str(self.config)], env, prefix)


class EventCollector:
    """A SUB socket in a thread collecting every event (JSON part parsed; extra parts kept): the one
    subscriber thread of tests and benchmarks (bench/common.py's Subscriber wraps it).

    on_event(received epoch s, event) is called in the thread for every event; keep=False stores
    nothing (a long benchmark's flood), so only on_event sees the events."""

    def __init__(self, endpoint: str, topic: str = "", socket_options: Optional[Dict[int, Any]] = None,
                 on_event: Optional[Callable[[float, Dict[str, Any]], None]] = None, keep: bool = True) -> None:
        self.endpoint = endpoint
        self.topic = topic
        self._options = socket_options or {}
        self._on_event = on_event
        self._keep = keep
        self.events: List[Dict[str, Any]] = []
        self.parts: List[List[bytes]] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ctx = zmq.Context()

    def __enter__(self) -> "EventCollector":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ctx.term()

    def _run(self) -> None:
        sock = self._ctx.socket(zmq.SUB)
        # connected before the daemon binds, it retries every RECONNECT_IVL: 10 ms instead of
        # ZeroMQ's 100 ms, so it has joined before a tiny model's engine loads and the first
        # event is published (tests that check they saw each stream from seq 1; slow joiner)
        sock.setsockopt(zmq.RECONNECT_IVL, 10)
        for option, value in self._options.items():
            sock.setsockopt(option, value)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt_string(zmq.SUBSCRIBE, self.topic)
        sock.connect(self.endpoint)
        try:
            while not self._stop.is_set():
                if sock.poll(100):
                    parts = sock.recv_multipart()
                    received = time.time()
                    event = json.loads(parts[1].decode("utf-8"))
                    if self._on_event is not None:
                        self._on_event(received, event)
                    with self._cond:
                        if self._keep:
                            self.events.append(event)
                            self.parts.append(parts)
                        self._cond.notify_all()
        finally:
            sock.close()

    def snapshot(self) -> List[Dict[str, Any]]:
        with self._cond:
            return list(self.events)

    def wait_for(self, predicate: Callable[[List[Dict[str, Any]]], bool], timeout: float) -> List[Dict[str, Any]]:
        """Wait until predicate(events) holds; returns the events, or raises AssertionError with a summary."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds: Dict[str, int] = {}
                    for e in self.events:
                        key = "%s/%s" % (e.get("type"), e.get("stream"))
                        kinds[key] = kinds.get(key, 0) + 1
                    raise AssertionError("timed out after %.0f s; events so far: %s" % (timeout, kinds))
                self._cond.wait(min(left, 0.5))
            return list(self.events)


def seq_gaps(events: List[Dict[str, Any]]) -> Dict[str, List[int]]:
    """Per (boot, stream): the seq values missing between the first and the last received."""
    seen: Dict[str, List[int]] = {}
    for e in events:
        seen.setdefault("%s/%s" % (e["boot"], e["stream"]), []).append(e["seq"])
    gaps = {}
    for key, seqs in seen.items():
        missing = sorted(set(range(min(seqs), max(seqs) + 1)) - set(seqs))
        if missing or seqs != sorted(seqs):
            gaps[key] = missing or seqs
    return gaps
