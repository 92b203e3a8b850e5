"""systemd/blipd-console.service checked by systemd's own tools (as tests/daemon/test_systemd.py does
for the daemon's unit): verify without any warning, exposure at most 2.0, and the settings the
console relies on."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "blipd-console.service"
ENTRY_POINT = "/opt/blipd/venv/bin/blipd"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (make sysdeps)")


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def test_console_unit_verifies_without_any_warning(tmp_path):
    stub = tmp_path / "bin" / "blipd"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text()
    assert "ExecStart=%s console -c /etc/blipd/console.yaml" % ENTRY_POINT in text
    copy = tmp_path / "blipd-console.service"
    copy.write_text(text.replace(ENTRY_POINT, str(stub)))
    result = analyze("verify", "--man=no", str(copy))
    assert result.stderr == "" and result.returncode == 0, result.stderr


def test_console_unit_exposure_is_at_most_2():
    result = analyze("security", "--offline=true", str(UNIT))
    match = re.search(r"Overall exposure level for blipd-console\.service: (\d+(?:\.\d+)?)", result.stdout)
    assert match is not None, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_console_unit_settings_the_console_relies_on():
    lines = [line.strip() for line in UNIT.read_text().splitlines()]
    for expected in ("Type=notify", "StateDirectory=blipd-console", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "UMask=0077"):
        assert expected in lines, expected
