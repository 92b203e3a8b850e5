"""Checks every unit in systemd/ gets from systemd's own tools (the daemon's, console's, bridge's
and relay's tests share them).

`systemd-analyze verify` exits 0 even on warnings, so any stderr output fails. It also complains
when ExecStart's binary is missing; rather than filtering that message, a copy of the unit whose
ExecStart points at a stub executable is verified (every other line unchanged), and the caller
checks separately that the real unit names the venv's entry point.
"""
import re
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "systemd"
ENTRY_POINT = "/opt/blipd/venv/bin/blipd"


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def service_section(unit: Path) -> Dict[str, List[str]]:
    """Key -> values of [Service] (systemd allows a key more than once; configparser does not)."""
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


def verify_output(unit: Path, command: str, tmp_path: Path) -> str:
    """What `systemd-analyze verify` says about `unit` (empty when clean); asserts that its
    ExecStart runs the venv's `blipd COMMAND`."""
    text = unit.read_text()
    assert "ExecStart=%s %s\n" % (ENTRY_POINT, command) in text
    stub = tmp_path / "bin" / "blipd"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(text.replace(ENTRY_POINT, str(stub)))
    result = analyze("verify", "--man=no", str(copy))
    return result.stderr + ("" if result.returncode == 0 else "exit %d" % result.returncode)


def exposure(unit: Path) -> Optional[float]:
    """`systemd-analyze security`'s overall exposure level of `unit` (None if it printed none)."""
    result = analyze("security", "--offline=true", str(unit))
    match = re.search(r"Overall exposure level for %s: (\d+(?:\.\d+)?)" % re.escape(unit.name), result.stdout)
    return float(match.group(1)) if match else None
