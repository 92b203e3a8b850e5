"""`blipd check` on broken configs: exit 2 and ONE line `FILE:LINE: key: message`, never a secret.

The same cases are sent to a running daemon by SIGHUP in test_steady_daemon.py.
"""
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.daemon_proc import REPO
from tests.hardening.bad_configs import CASES, SECRET, BadConfig, ConfigContext, case_ids, good_config
from tests.privileges import command_prefix
from tests.rtsp import closed_port

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(tiny_package: Path, caption_only_package: Path, clips, tmp_path: Path) -> ConfigContext:
    return ConfigContext(tiny_package, caption_only_package, clips["moving"], "tcp://127.0.0.1:5556",
                         closed_port(), tmp_path)


def blipd_check(config: Path) -> "tuple":
    """(exit code, stdout, stderr, wall seconds) of `blipd check -c CONFIG` in a subprocess."""
    started = time.monotonic()
    command = command_prefix() + [sys.executable, "-m", "daemon.commands.cli", "check", "-c", str(config)]
    proc = subprocess.run(command, cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def test_the_good_config_passes(ctx: ConfigContext) -> None:
    """The base every case breaks is itself valid, so each failure below is the case's own."""
    path = ctx.folder / "good.yaml"
    path.write_text(good_config(ctx))
    code, out, err, _ = blipd_check(path)
    assert code == 0, err
    assert "3 stream(s)" in out
    assert SECRET not in out + err


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_check_rejects_with_one_line(case: BadConfig, ctx: ConfigContext) -> None:
    text = case.text(ctx)
    path = ctx.folder / ("%s.yaml" % case.name)
    path.write_text(text)
    code, out, err, wall = blipd_check(path)
    print("blipd check %s: %.2f s wall" % (case.name, wall))
    assert code == 2, (out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("blipd: %s:%d: %s: " % (path, case.line(text), case.key)), lines[0]
    assert SECRET not in err
