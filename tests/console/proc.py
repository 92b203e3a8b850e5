"""`blipd console` as a real subprocess, and a small HTTP client for its API, for the console tests."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tests.daemon_proc import REPO, CommandProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_command(args: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", "daemon.commands.cli", "console"] + list(args)


def run_console(args: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the command to its end (for refusals: bad config, exposed without auth)."""
    return subprocess.run(console_command(args), cwd=str(REPO), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))


class ConsoleProcess(CommandProcess):
    """`blipd console ARGS` with its output in a file; ready once it prints its page's address."""

    def __init__(self, args: Sequence[str], port: int) -> None:
        super().__init__(["console"] + list(args), log_prefix="blipd-console-")
        self.port = port
        self.base = "http://127.0.0.1:%d" % port

    def start(self, timeout: float = 60) -> "ConsoleProcess":
        offset = len(self.log())  # a restart appends to the same log
        super().start()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "blipd console: http://" in self.log()[offset:]:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("console did not start:\n" + self.log()[-3000:])

    def __exit__(self, *exc: object) -> None:
        self.stop()
        super().__exit__(*exc)

    def stop(self) -> Optional[int]:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode if self.proc is not None else None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def get(self, path: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str, headers: Optional[Dict[str, str]] = None) -> Any:
        status, _, body = self.get(path, headers)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def wait_json(self, path: str, predicate: Callable[[Any], Any], timeout: float, what: str,
                  headers: Optional[Dict[str, str]] = None) -> Any:
        """Poll an API path until predicate(answer) is truthy; returns the answer."""
        deadline = time.monotonic() + timeout
        answer = None
        while time.monotonic() < deadline:
            answer = self.json(path, headers)
            if predicate(answer):
                return answer
            time.sleep(0.2)
        raise AssertionError("timed out waiting for %s; last answer: %s" % (what, json.dumps(answer)[:1500]))
