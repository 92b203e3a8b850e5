"""Permission tests that also run as root.

Root reads a mode-000 file, so "permission denied" cannot happen in a root test process. Such a test
runs its check in a child whose root has lost CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (util-linux
`setpriv`): file modes then apply to it as to any user, and files it owns (the test's own temp
folders, the venv) stay readable through their owner bits.
"""
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[1]
DROP_FILE_OVERRIDE = ["--bounding-set=-dac_override,-dac_read_search"]


@functools.lru_cache(maxsize=1)
def modes_apply() -> bool:
    """True where this process is refused a mode-000 file (any ordinary user)."""
    fd, path = tempfile.mkstemp(prefix="blipd-mode-probe-")
    os.close(fd)
    os.chmod(path, 0)
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True
    finally:
        os.unlink(path)


def command_prefix() -> List[str]:
    """What to put before a command so file modes apply to it (nothing where they already do)."""
    if modes_apply():
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux setpriv: file modes cannot be made to apply")
    return [setpriv] + DROP_FILE_OVERRIDE


def ran_in_child(request: pytest.FixtureRequest) -> bool:
    """Where file modes do not apply here, run this very test in a child pytest where they do,
    assert it passed and return True (the caller returns); else False (the caller goes on)."""
    if modes_apply():
        return False
    cmd = command_prefix() + [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", request.node.nodeid]
    proc = subprocess.run(cmd, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    output = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0 and " passed" in output, output[-3000:]
    return True
