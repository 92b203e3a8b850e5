"""systemd/blipd-bridge.service and blipd-relay.service: the settings the commands rely on (verify
and exposure are checked for every unit in tests/daemon/test_systemd.py)."""
import pytest

from tests.systemd_units import SYSTEMD, service_section

UNITS = ("blipd-bridge.service", "blipd-relay.service")


@pytest.mark.parametrize("name", UNITS)
def test_unit_settings_the_commands_rely_on(name: str) -> None:
    service = service_section(SYSTEMD / name)
    for key, expected in [("Type", "notify"), ("NotifyAccess", "main"), ("ExecReload", "/bin/kill -HUP $MAINPID"),
                          ("TimeoutStopSec", "15"), ("Restart", "on-failure"), ("User", "blipd"),
                          ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"), ("CapabilityBoundingSet", "")]:
        assert service.get(key) == [expected], key


def test_relay_credentials_match_the_example_config() -> None:
    service = service_section(SYSTEMD / "blipd-relay.service")
    example = (SYSTEMD.parent / "config" / "relay.yaml").read_text()
    for credential in service["LoadCredential"]:
        assert credential.split(":", 1)[0] in example
