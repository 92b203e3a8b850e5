"""bridge.yaml / relay.yaml: the examples validate, errors are FILE:LINE: key lines with exit 2, and
no secret ever appears in them."""
import os
import subprocess
import sys
from pathlib import Path

from daemon.publish.curve import write_keypair

REPO = Path(__file__).resolve().parents[2]


def blipd(*args: str, env: dict = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.commands.cli", *args], cwd=str(REPO), capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, **(env or {})))


def test_example_bridge_config_validates() -> None:
    secrets = {"BLIPD_MQTT_PASSWORD": "pw-never-shown", "BLIPD_WEBHOOK_SECRET": "hook-never-shown"}
    ok = blipd("bridge", "-c", "config/bridge.yaml", "--check", env=secrets)
    assert ok.returncode == 0, ok.stderr
    env = dict(os.environ)
    env.pop("BLIPD_MQTT_PASSWORD", None)
    missing = subprocess.run([sys.executable, "-m", "daemon.commands.cli", "bridge", "-c", "config/bridge.yaml",
                              "--check"], cwd=str(REPO), capture_output=True, text=True, timeout=60,
                             env=dict(env, BLIPD_WEBHOOK_SECRET="x"))
    assert missing.returncode == 2
    assert "config/bridge.yaml:" in missing.stderr and "BLIPD_MQTT_PASSWORD is not set" in missing.stderr


def test_example_relay_config_validates(tmp_path: Path) -> None:
    for name in ("box1-server", "box2-server", "relay-client", "relay-server"):
        write_keypair(tmp_path, name)
    (tmp_path / "relay-clients").mkdir()
    result = blipd("relay", "-c", "config/relay.yaml", "--check", env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    result = blipd("relay", "-c", "config/relay.yaml", "--check", env={"CREDENTIALS_DIRECTORY": str(tmp_path / "no")})
    assert result.returncode == 2
    assert "config/relay.yaml:11: upstreams[0].curve.server_key: file not found" in result.stderr


def test_errors_name_file_line_and_key_and_hide_secrets(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("sources:\n  - connect: tcp://127.0.0.1\n"
                    "mqtt:\n  url: mqtt://user:hunter2-secret@broker:1883\n  qos: 5\n  prefx: x\n"
                    "webhooks:\n  - url: ftp://x\n    types: [nope]\n  - url: https://u:hunter2-hook@example.net/x\n")
    result = blipd("bridge", "-c", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "%s:2: sources[0].connect: a tcp endpoint needs a port" % path in lines[0]
    assert any("%s:4: mqtt.url: no password in the URL" % path in line for line in lines)
    assert any("%s:5: mqtt.qos: must be 0, 1 or 2" % path in line for line in lines)
    assert any("%s:6: mqtt.prefx: unknown key (did you mean 'prefix'?)" % path in line for line in lines)
    assert any("%s:8: webhooks[0].url: must be an http" % path in line for line in lines)
    assert any("webhooks[0].types[0]" in line for line in lines)
    assert any("%s:10: webhooks[1].url: no user or password in the URL" % path in line for line in lines)
    assert "hunter2" not in result.stderr + result.stdout


def test_command_line_form() -> None:
    ok = blipd("bridge", "--sub", "tcp://127.0.0.1:5556", "--mqtt", "mqtt://u@127.0.0.1:1883", "--home-assistant",
               "--check")
    assert ok.returncode == 0, ok.stderr
    for args in (["--sub", "tcp://127.0.0.1:5556"], ["--mqtt", "mqtt://h:1"], []):
        assert blipd("bridge", *args).returncode == 2
    bad = blipd("bridge", "--sub", "tcp://127.0.0.1:5556", "--mqtt", "mqtt://u:pw-secret@h:1883")
    assert bad.returncode == 2 and "command line: mqtt.url: no password in the URL" in bad.stderr
    assert "pw-secret" not in bad.stderr
