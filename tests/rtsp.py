"""Start, break and restart a real RTSP server (tests/rtsp_server.py) from tests.

    with RtspServer({"live": "h264"}) as server:
        url = server.url("live")
        server.pause()    # SIGSTOP: the camera is connected but silent
        server.resume()   # SIGCONT
        server.kill()     # the camera is gone (port closed)
        server.restart()  # back on the same port

The server runs under Debian's /usr/bin/python3 because the `gi` bindings are not in the venv.
"""
import os
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

SYSTEM_PYTHON = os.environ.get("BLIPD_TEST_SYSTEM_PYTHON", "/usr/bin/python3")
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")


def closed_port() -> int:
    """A local TCP port nothing listens on (bound then released): a camera that never existed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServer:
    """One gst-rtsp-server subprocess; mounts map a name to a kind (h264, h265, file:PATH)."""

    def __init__(self, mounts: Dict[str, str], width: int = 320, height: int = 240, fps: int = 15,
                 ready_timeout_s: float = 30.0) -> None:
        self.mounts = dict(mounts)
        self.width, self.height, self.fps = width, height, fps
        self.ready_timeout_s = ready_timeout_s
        self.port = 0
        self._proc: Optional[subprocess.Popen] = None
        self._log = tempfile.NamedTemporaryFile(prefix="rtsp-server-", suffix=".log", delete=False)

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, mount: str, userinfo: str = "") -> str:
        """rtsp://127.0.0.1:PORT/mount; `userinfo` ("user:pass") is ignored by the server."""
        auth = userinfo + "@" if userinfo else ""
        return "rtsp://%s127.0.0.1:%d/%s" % (auth, self.port, mount)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "RtspServer":
        """Start the server (on self.port, 0 the first time) and wait for its READY line."""
        if self.running:
            raise RuntimeError("RTSP server already running")
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), "--width", str(self.width),
               "--height", str(self.height), "--fps", str(self.fps)]
        cmd += ["%s=%s" % item for item in self.mounts.items()]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)
        self.port = self._wait_ready(self._proc)
        return self

    def _wait_ready(self, proc: subprocess.Popen) -> int:
        assert proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout_s
        line = b""
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    self.kill()
                    raise RuntimeError("RTSP server did not start: %s %s" % (line.decode(errors="replace"), self.log_tail()))
                if sel.select(timeout=min(left, 0.5)):
                    chunk = os.read(proc.stdout.fileno(), 256)
                    if not chunk:
                        continue
                    line += chunk
        if not line.startswith(b"READY "):
            self.kill()
            raise RuntimeError("RTSP server failed: %s %s" % (line.decode(errors="replace").strip(), self.log_tail()))
        return int(line.split()[1])

    def log_tail(self, n: int = 2000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL and reap: every client sees its connection drop, the port closes."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a stopped process must run to die cleanly on some kernels
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is sent (a hung camera)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> "RtspServer":
        """Kill if running, then start again on the same port."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        self.kill()
        self._log.close()
        try:
            os.unlink(self._log.name)
        except OSError:
            pass
