"""Every unit in systemd/ (daemon, console, bridge, relay), the sysusers and tmpfiles snippets,
checked by systemd's own tools (tests/systemd_units.py); the daemon's own settings. The console's
and bridges' settings are checked beside their tests."""
import os
import shutil
import subprocess

import pytest

from tests.systemd_units import REPO, SYSTEMD, exposure, service_section, verify_output

UNIT = SYSTEMD / "blipd.service"
SOPHON_DEVICES = ["/dev/bm-sophon0", "/dev/bmdev-ctl", "/dev/bm-tpu0", "/dev/bm-vpu0", "/dev/bm-jpu0", "/dev/ion"]
UNITS = {"blipd.service": "run -c /etc/blipd/blipd.yaml",
         "blipd-console.service": "console -c /etc/blipd/console.yaml",
         "blipd-bridge.service": "bridge -c /etc/blipd/bridge.yaml",
         "blipd-relay.service": "relay -c /etc/blipd/relay.yaml"}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_verifies_without_any_warning(name, tmp_path):
    assert verify_output(SYSTEMD / name, UNITS[name], tmp_path) == ""


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_exposure_is_at_most_2(name):
    level = exposure(SYSTEMD / name)
    assert level is not None and level <= 2.0, level


def test_unit_settings_the_daemon_relies_on():
    service = service_section(UNIT)
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

    values = service_section(UNIT)
    assert values["Restart"] == ["on-failure"]
    assert values["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]
    assert str(EXIT_FAIL) not in values["RestartPreventExitStatus"][0].split()
