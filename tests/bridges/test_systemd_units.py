"""systemd/blipd-bridge.service and blipd-relay.service, checked by systemd's own tools like the
daemon's unit (tests/daemon/test_systemd.py): verify without a word, exposure at most 2.0."""
import re
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINT = "/opt/blipd/venv/bin/blipd"
UNITS = {"blipd-bridge.service": "bridge -c /etc/blipd/bridge.yaml",
         "blipd-relay.service": "relay -c /etc/blipd/relay.yaml"}


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def service_section(unit: Path) -> Dict[str, List[str]]:
    values: Dict[str, List[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_verifies_without_any_warning(name: str, tmp_path: Path) -> None:
    stub = tmp_path / "bin" / "blipd"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = (REPO / "systemd" / name).read_text()
    assert "ExecStart=%s %s\n" % (ENTRY_POINT, UNITS[name]) in text
    copy = tmp_path / name
    copy.write_text(text.replace(ENTRY_POINT, str(stub)))
    result = analyze("verify", "--man=no", str(copy))
    assert result.stderr == "" and result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_exposure_is_at_most_2(name: str) -> None:
    result = analyze("security", "--offline=true", str(REPO / "systemd" / name))
    match = re.search(r"Overall exposure level for %s: (\d+(?:\.\d+)?)" % re.escape(name), result.stdout)
    assert match is not None, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_settings_the_commands_rely_on(name: str) -> None:
    service = service_section(REPO / "systemd" / name)
    for key, expected in [("Type", "notify"), ("NotifyAccess", "main"), ("ExecReload", "/bin/kill -HUP $MAINPID"),
                          ("TimeoutStopSec", "15"), ("Restart", "on-failure"), ("User", "blipd"),
                          ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"), ("CapabilityBoundingSet", "")]:
        assert service.get(key) == [expected], key


def test_relay_credentials_match_the_example_config() -> None:
    service = service_section(REPO / "systemd" / "blipd-relay.service")
    example = (REPO / "config" / "relay.yaml").read_text()
    for credential in service["LoadCredential"]:
        assert credential.split(":", 1)[0] in example
