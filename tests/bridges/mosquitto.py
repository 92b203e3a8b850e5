"""A real Mosquitto broker on a random loopback port, and a real paho subscriber, for bridge tests.

    with Mosquitto(tmp_path) as broker, MqttReader(broker.port, "blipd/#") as reader:
        reader.wait_for(lambda msgs: "blipd/cam/caption" in msgs.topics(), timeout=30)

The broker keeps its state in a folder (`persistence true`): a SIGTERM'ed and restarted broker
keeps retained messages and the reader's persistent session, as a production broker would.
"""
import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll `predicate` until it returns something true; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(step)


def make_tls_files(folder: Path) -> Dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "ext.cnf")}

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=blipd test CA",
        "-keyout", str(files["ca.key"]), "-out", str(files["ca.crt"]))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(files["server.key"]), "-out", str(files["server.csr"]))
    files["ext.cnf"].write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", str(files["server.csr"]), "-CA", str(files["ca.crt"]), "-CAkey", str(files["ca.key"]),
        "-CAcreateserial", "-days", "2", "-extfile", str(files["ext.cnf"]), "-out", str(files["server.crt"]))
    return files


class Mosquitto:
    """Debian's mosquitto with a generated config: anonymous, or a password file, or TLS."""

    def __init__(self, folder: Path, users: Optional[Dict[str, str]] = None,
                 tls: Optional[Dict[str, Path]] = None, extra: Sequence[str] = ()) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        lines = ["listener %d 127.0.0.1" % self.port, "persistence true",
                 "persistence_location %s/" % self.folder, "log_dest file %s" % (self.folder / "mosquitto.log"),
                 "log_type error", "log_type warning", "log_type notice",
                 # run as root, mosquitto would switch to its own user, who cannot write our folder
                 "user %s" % getpass.getuser()]
        if users:
            passwd = self.folder / "passwd"
            for number, (user, password) in enumerate(users.items()):
                flag = ["-c"] if number == 0 else []
                subprocess.run(["mosquitto_passwd", "-b", *flag, str(passwd), user, password],
                               check=True, capture_output=True, timeout=30)
            os.chmod(passwd, 0o600)
            lines += ["allow_anonymous false", "password_file %s" % passwd]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += ["cafile %s" % tls["ca.crt"], "certfile %s" % tls["server.crt"], "keyfile %s" % tls["server.key"]]
        lines += list(extra)
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "Mosquitto":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(self._accepts, 15, "mosquitto to listen on port %d" % self.port)
        return self

    def _accepts(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError("mosquitto exited: %s" % self.log()[-2000:])
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MqttReader:
    """A real paho client in its own network thread collecting (topic, payload, retained) in order."""

    def __init__(self, port: int, topic: str = "#", client_id: str = "", persistent: bool = False,
                 username: Optional[str] = None, password: Optional[str] = None,
                 ca_file: Optional[Path] = None) -> None:
        from daemon.bridges.mqtt_sink import make_client

        self.port = port
        self.topic = topic
        self.messages: List[Tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self.client = make_client(client_id) if not persistent else self._persistent(client_id)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=str(ca_file))
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()

    @staticmethod
    def _persistent(client_id: str) -> Any:
        import paho.mqtt.client as mqtt

        kwargs: Dict[str, Any] = {"client_id": client_id, "clean_session": False}
        if hasattr(mqtt, "CallbackAPIVersion"):
            kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
        return mqtt.Client(**kwargs)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, *rest: Any) -> None:
        client.subscribe(self.topic, qos=1)
        self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._cond:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def __enter__(self) -> "MqttReader":
        self.client.connect("localhost", self.port, 30)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, 15, "the MQTT reader to subscribe")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> List[Tuple[str, bytes, bool]]:
        with self._cond:
            return list(self.messages)

    def on(self, topic: str) -> List[bytes]:
        return [payload for t, payload, _ in self.snapshot() if t == topic]

    def last(self, topic: str) -> Optional[bytes]:
        found = self.on(topic)
        return found[-1] if found else None

    def wait_for(self, predicate: Callable[[List[Tuple[str, bytes, bool]]], Any], timeout: float,
                 what: str = "MQTT messages") -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self.messages)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    topics = sorted({t for t, _, _ in self.messages})
                    raise AssertionError("timed out after %.0f s waiting for %s; topics so far: %s"
                                         % (timeout, what, topics[:40]))
                self._cond.wait(min(left, 0.5))
