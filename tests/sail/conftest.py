"""Tests of the SOPHON backend on the sophon.sail test double (tests/fakes/sophon/sail.py).

The double is importable only inside these tests: an autouse fixture puts tests/fakes on sys.path
and imports a fresh `sophon.sail` for every test (so profile changes never leak), then removes both
again; subprocesses get it through `fake_env()`.
"""
import contextlib
import os
import sys
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "fakes"
_MODULES = ("sophon.sail", "sophon")


def _forget_double() -> None:
    for name in _MODULES:
        sys.modules.pop(name, None)


def fake_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a subprocess that should import the double (and this checkout)."""
    env = dict(os.environ)
    parts = [str(FAKES), str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def double_on_path() -> Iterator[object]:
    """The double importable for a block (session fixtures run before the autouse fixture)."""
    sys.path.insert(0, str(FAKES))
    _forget_double()
    try:
        import sophon.sail as module

        yield module
    finally:
        sys.path.remove(str(FAKES))
        _forget_double()


@pytest.fixture(autouse=True)
def sail(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A fresh `sophon.sail` double for each test, with the environment's default profile."""
    before = {k for k in os.environ if k.startswith("SAIL_DECODER_")}
    monkeypatch.syspath_prepend(str(FAKES))
    _forget_double()
    import sophon.sail as module

    yield module
    _forget_double()
    for key in [k for k in os.environ if k.startswith("SAIL_DECODER_") and k not in before]:
        del os.environ[key]
