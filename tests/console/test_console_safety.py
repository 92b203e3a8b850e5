"""What the console refuses and protects: config errors with file:line:key, a non-loopback listen
without auth, HTTP auth (token, users), and a CURVE-protected bus recorded with client keys."""
import base64
import os
import signal
from pathlib import Path

import pytest
import yaml

from daemon.publish.curve import write_keypair
from tests.console.proc import ConsoleProcess, free_port, run_console
from tests.daemon_proc import REPO, DaemonProcess, free_tcp_endpoint
from tests.rtsp import RtspServer, closed_port

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-0123456789abcdef"
CAMERA_PASSWORD = "pa55-camera-word"


def secret_file(path: Path, text: str) -> Path:
    path.write_text(text)
    os.chmod(str(path), 0o600)
    return path


def test_config_errors_name_file_line_and_key(tmp_path):
    bad = tmp_path / "console.yaml"
    bad.write_text("buses:\n  - endpoint: tcp://127.0.0.1:5556\nlisten: 127.0.0.1:8080\nretention:\n  max_age_dayz: 3\n")
    result = run_console(["-c", str(bad)])
    assert result.returncode == 2
    assert "%s:5: retention.max_age_dayz: unknown key (did you mean 'max_age_days'?)" % bad in result.stderr


def test_bad_endpoint_from_options_is_bad_input():
    result = run_console(["--sub", "localhost:5556"])
    assert result.returncode == 2 and "buses.0.endpoint" in result.stderr and "tcp://" in result.stderr


def test_non_loopback_listen_without_auth_is_refused(tmp_path):
    result = run_console(["--sub", "tcp://127.0.0.1:5556", "--listen", "0.0.0.0:%d" % free_port(),
                          "--data", str(tmp_path)])
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "auth" in result.stderr
    assert not (tmp_path / "console.db").exists()  # refused before anything was created


def test_sighup_is_logged_and_the_console_goes_on(tmp_path):
    """SIGHUP's default action would end it; the console has no reload, so it says so."""
    port = free_port()
    args = ["--sub", "tcp://127.0.0.1:%d" % free_port(), "--listen", "127.0.0.1:%d" % port, "--data", str(tmp_path)]
    with ConsoleProcess(args, port) as console:
        console.signal(signal.SIGHUP)
        assert console.wait_log("SIGHUP ignored", 30), console.log()
        assert console.get("/api/status")[0] == 200
        assert console.terminate() == 0


def test_token_auth_guards_every_path_when_exposed(tmp_path):
    token_file = secret_file(tmp_path / "token", TOKEN + "\n")
    port = free_port()
    args = ["--sub", "tcp://127.0.0.1:%d" % free_port(), "--listen", "0.0.0.0:%d" % port,
            "--data", str(tmp_path / "data"), "--token-file", str(token_file)]
    with ConsoleProcess(args, port) as console:
        for path in ("/", "/api/streams", "/api/search?q=x", "/api/live", "/static/app.js"):
            assert console.get(path)[0] == 401, path
        assert console.get("/api/streams", {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        assert console.get("/api/streams", {"Authorization": "Bearer " + TOKEN})[0] == 200
        status, headers, _ = console.get("/?token=" + TOKEN)
        assert status == 200 and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert console.get("/api/streams", {"Cookie": cookie})[0] == 200
        status, headers, _ = console.get("/?token=wrong", {"Authorization": "Bearer " + TOKEN})
        assert status == 200 and "Set-Cookie" not in headers  # a wrong ?token= never becomes the cookie
        bearer = {"Authorization": "Bearer " + TOKEN}
        assert console.get("/api/events?before_id=99999999999999999999", bearer)[0] == 400
        assert TOKEN not in console.log()


def test_a_curve_bus_over_real_rtsp_is_recorded_with_client_keys_redacted_behind_basic_auth(tmp_path):
    keys, clients = tmp_path / "keys", tmp_path / "clients"
    _, server_secret = write_keypair(str(keys), "server")
    client_public, client_secret = write_keypair(str(keys), "console")
    clients.mkdir()
    (clients / "console.key").write_bytes(Path(client_public).read_bytes())
    endpoint = free_tcp_endpoint()
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    rtsp = RtspServer({"demo": "file:%s" % (REPO / "samples" / "demo.mp4")})
    stream = dict(demo["streams"][0], url="", questions=[])
    stream.pop("loop", None)  # files only
    # a camera that never answers, with a password in its URL: its state changes must reach the
    # console with the password redacted
    dead = {"name": "dead", "url": "rtsp://viewer:%s@127.0.0.1:%d/x" % (CAMERA_PASSWORD, closed_port()),
            "caption": {"enabled": True, "every_s": 5}}
    daemon_config = dict(demo, streams=[stream, dead], model={"package": str(REPO / "models" / "demo")},
                         publish={"bind": endpoint, "stats_every_s": 1,
                                  "curve": {"secret_key_file": server_secret, "clients_dir": str(clients)}})
    daemon_config["defaults"] = dict(demo["defaults"], open_timeout_s=2, read_timeout_s=5)
    users = secret_file(tmp_path / "users", "# user:password\noperator:correct-horse\n")
    port = free_port()
    console_yaml = tmp_path / "console.yaml"
    console_yaml.write_text(yaml.safe_dump({
        "buses": [{"endpoint": endpoint, "curve": {"server_key_file": str(keys / "server.key"),
                                                   "client_secret_key_file": client_secret}}],
        "listen": "127.0.0.1:%d" % port, "data_dir": str(tmp_path / "data"), "auth": {"users_file": str(users)}}))
    good = {"Authorization": "Basic " + base64.b64encode(b"operator:correct-horse").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"operator:wrong").decode()}
    with rtsp, ConsoleProcess(["-c", str(console_yaml)], port) as console:
        stream["url"] = rtsp.url("demo")
        (tmp_path / "blipd.yaml").write_text(yaml.safe_dump(daemon_config))
        with DaemonProcess(tmp_path / "blipd.yaml"):
            status, headers, _ = console.get("/api/streams", bad)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
            answer = console.wait_json(
                "/api/streams", lambda a: {s["stream"] for s in a["streams"] if s["caption"] or s["state"]} >= {"demo", "dead"},
                60, "the RTSP stream's caption and the dead camera's state, over CURVE", good)
        dead_state = next(s["state"] for s in answer["streams"] if s["stream"] == "dead")
        assert dead_state["state"] != "online"
        every = console.get("/api/events?limit=500", good)[2] + console.get("/api/streams", good)[2]
        assert CAMERA_PASSWORD.encode() not in every
        raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("console.db*"))
        assert CAMERA_PASSWORD.encode() not in raw
        assert "correct-horse" not in console.log()


def test_the_example_config_is_valid_and_loopback_only():
    from daemon.console.config import load_settings

    settings = load_settings(REPO / "config" / "console.yaml", env={})
    assert settings.host == "127.0.0.1" and settings.port == 8080 and settings.auth is None
    assert settings.buses[0].endpoint == "tcp://127.0.0.1:5556"


def test_retention_and_the_disk_floor_run_continuously_in_the_console(tmp_path):
    """A real PUB socket feeds a console whose retention keeps ~2 s and whose disk floor is above
    any disk: snapshots are skipped (counted), events recorded, and old ones deleted as it runs."""
    import json
    import time

    import zmq

    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    port_bus = pub.bind_to_random_port("tcp://127.0.0.1")
    port = free_port()
    config = tmp_path / "console.yaml"
    config.write_text(yaml.safe_dump({
        "buses": [{"endpoint": "tcp://127.0.0.1:%d" % port_bus}], "listen": "127.0.0.1:%d" % port,
        "data_dir": str(tmp_path / "data"), "retention": {"max_age_days": 2.0 / 86400, "check_every_s": 0.5},
        "snapshots": {"enabled": True, "min_free_mb": 1e12}}))
    try:
        with ConsoleProcess(["-c", str(config)], port) as console:
            seq = 0
            deadline = time.monotonic() + 60
            status = {}
            while time.monotonic() < deadline:
                seq += 1
                event = {"schema": 1, "type": "caption", "stream": "s", "seq": seq, "boot": "b", "model": "m",
                         "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "text": "a red circle %d" % seq}
                pub.send_multipart([b"caption/s", json.dumps(event).encode(), b"\xff\xd8jpeg\xff\xd9"])
                time.sleep(0.05)  # pacing the publisher, not synchronising: the loop ends on the status
                status = console.json("/api/status")
                if status["retention_deleted"] > 0 and status["snapshots_skipped_disk"] > 0:
                    break
            assert status["retention_deleted"] > 0 and status["snapshots_skipped_disk"] > 0, status
            assert status["snapshots_written"] == 0 and status["recorded"] > 0
            left = [e["event"]["seq"] for e in console.json("/api/events?type=caption&limit=500")["events"]]
            assert left and min(left) > 1  # the first events are gone, the newest kept
            assert "snapshots not written" in console.log()
    finally:
        pub.close(0)
        context.term()
