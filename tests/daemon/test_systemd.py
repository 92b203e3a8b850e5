"""The systemd unit, sysusers and tmpfiles snippets, checked by systemd's own tools.

`systemd-analyze verify` exits 0 even on warnings, so any stderr output fails. It also complains
when ExecStart's binary is missing; rather than filtering that message, the test verifies a copy
of the unit whose ExecStart points at a stub executable in a temporary folder (every other line
unchanged), and checks separately that the real unit names the venv's entry point.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "blipd.service"
ENTRY_POINT = "/opt/blipd/venv/bin/blipd"
SOPHON_DEVICES = ["/dev/bm-sophon0", "/dev/bmdev-ctl", "/dev/bm-tpu0", "/dev/bm-vpu0", "/dev/bm-jpu0", "/dev/ion"]


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def service_section() -> Dict[str, List[str]]:
    """Key -> values of [Service] (systemd allows a key more than once; configparser does not)."""
    values: Dict[str, List[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_unit_verifies_without_any_warning(tmp_path):
    stub = tmp_path / "bin" / "blipd"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = UNIT.read_text()
    assert "ExecStart=%s run -c /etc/blipd/blipd.yaml" % ENTRY_POINT in text
    copy = tmp_path / "blipd.service"
    copy.write_text(text.replace(ENTRY_POINT, str(stub)))
    result = analyze("verify", "--man=no", str(copy))
    assert result.stderr == "" and result.returncode == 0, result.stderr


def test_unit_exposure_is_at_most_2():
    result = analyze("security", "--offline=true", str(UNIT))
    match = re.search(r"Overall exposure level for blipd\.service: (\d+(?:\.\d+)?)", result.stdout)
    assert match is not None, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_unit_settings_the_daemon_relies_on():
    service = service_section()
    for key, expected in [("Type", "notify"), ("NotifyAccess", "main"), ("WatchdogSec", "30"),
                          ("Restart", "on-failure"), ("RestartSec", "5"), ("TimeoutStopSec", "15"),
                          ("User", "blipd"), ("Group", "blipd"), ("ExecReload", "/bin/kill -HUP $MAINPID"),
                          ("DevicePolicy", "closed"), ("ProtectSystem", "strict"), ("CapabilityBoundingSet", ""),
                          ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"), ("NoNewPrivileges", "yes")]:
        assert service.get(key) == [expected], key
    assert service["DeviceAllow"] == ["%s rw" % device for device in SOPHON_DEVICES]
    assert "MemoryMax" in service and "MemoryDenyWriteExecute" not in service
    # the credential name is what config/cameras.yaml calls secret_key_file
    (credential,) = service["LoadCredential"]
    name = credential.split(":", 1)[0]
    assert "secret_key_file: %s " % name in (REPO / "config" / "cameras.yaml").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles --root chowns to the blipd user")
def test_sysusers_and_tmpfiles_apply_in_a_temporary_root(tmp_path):
    (tmp_path / "etc").mkdir()
    for tool, snippet in (("systemd-sysusers", "blipd.sysusers"), ("systemd-tmpfiles", "blipd.tmpfiles")):
        assert shutil.which(tool), tool
        args = [tool, "--root=%s" % tmp_path] + (["--create"] if tool == "systemd-tmpfiles" else [])
        result = subprocess.run(args + [str(REPO / "systemd" / snippet)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
    user = [line for line in (tmp_path / "etc" / "passwd").read_text().splitlines() if line.startswith("blipd:")]
    assert len(user) == 1 and user[0].endswith(":/var/lib/blipd:/usr/sbin/nologin")
    uid = int(user[0].split(":")[2])
    (group,) = [line for line in (tmp_path / "etc" / "group").read_text().splitlines() if line.startswith("blipd:")]
    curve = (tmp_path / "etc" / "blipd" / "curve").stat()
    assert (curve.st_mode & 0o777, curve.st_uid, curve.st_gid) == (0o750, 0, int(group.split(":")[2]))
    state = (tmp_path / "var" / "lib" / "blipd").stat()
    assert (state.st_mode & 0o777, state.st_uid) == (0o750, uid)


def test_a_bad_config_is_not_restarted_a_busy_port_is():
    """`blipd run` exits 2 for a bad config (a restart loop cannot fix it) and 1 when it cannot
    start (a busy port may free up): the unit must tell them apart."""
    from daemon.service import EXIT_CONFIG, EXIT_FAIL

    values = service_section()
    assert values["Restart"] == ["on-failure"]
    assert values["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]
    assert str(EXIT_FAIL) not in values["RestartPreventExitStatus"][0].split()
