"""systemd/blipd-console.service: the settings the console relies on (verify and exposure are
checked for every unit in tests/daemon/test_systemd.py)."""
from tests.systemd_units import SYSTEMD

UNIT = SYSTEMD / "blipd-console.service"


def test_console_unit_settings_the_console_relies_on():
    lines = [line.strip() for line in UNIT.read_text().splitlines()]
    for expected in ("Type=notify", "StateDirectory=blipd-console", "NoNewPrivileges=yes",
                     "ProtectSystem=strict", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "UMask=0077"):
        assert expected in lines, expected
