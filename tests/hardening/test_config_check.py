"""`blipd check` on broken configs: exit 2 and one line `FILE:LINE: key: message` per problem,
never a secret.

The cases of bad_configs.py are judged in-process here (config and package, as `check` does),
a few through the command line, and all of them are sent to a running daemon by SIGHUP in
test_steady_daemon.py.
"""
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import pytest

from tests.daemon_proc import REPO
from daemon.commands.check import run_check
from daemon.errors import ConfigError
from tests.hardening.bad_configs import CASES, MARKER, SECRET, BadConfig, ConfigContext, case_ids, good_config, render
from tests.privileges import command_prefix
from tests.rtsp import closed_port

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(tiny_package: Path, caption_only_package: Path, clips, tmp_path: Path) -> ConfigContext:
    return ConfigContext(tiny_package, caption_only_package, clips["moving"], "tcp://127.0.0.1:5556",
                         closed_port(), tmp_path)


def blipd_check(config: Path, env: Optional[Mapping[Any, Any]] = None) -> "tuple":
    """(exit code, stdout, stderr, wall seconds) of `blipd check -c CONFIG` in a subprocess."""
    started = time.monotonic()
    command = command_prefix() + [sys.executable, "-m", "daemon.commands.cli", "check", "-c", str(config)]
    proc = subprocess.run(command, cwd=str(REPO), env=env,
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


CLI_CASES = ("alias_bomb", "unset_variable", "password_in_url_loop", "task_missing_in_package",
             "unreadable_secret_key")
"""Cases also run through the command line, one of each stage (YAML, variables, validation, model
package), and the one that needs file modes to apply (a root test process reads a mode-000 file;
tests/privileges.py's prefix drops that power from the subprocess)."""


@pytest.mark.parametrize("case", [c for c in CASES if c.name != "unreadable_secret_key"],
                         ids=[n for n in case_ids() if n != "unreadable_secret_key"])
def test_check_rejects_with_one_line(case: BadConfig, ctx: ConfigContext) -> None:
    """In-process, as `blipd check` judges it (config, then model package): one line naming the
    file, the marked line and the key, never the secret."""
    text = case.text(ctx)
    path = ctx.folder / ("%s.yaml" % case.name)
    path.write_text(text)
    out = io.StringIO()
    with pytest.raises(ConfigError) as caught:
        run_check(str(path), out=out)
    assert out.getvalue() == ""
    assert len(caught.value.lines) == 1, caught.value.lines
    assert caught.value.lines[0].startswith("%s:%d: %s: " % (path, case.line(text), case.key)), caught.value.lines[0]
    assert case.word in caught.value.lines[0]
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in CLI_CASES], ids=list(CLI_CASES))
def test_blipd_check_prints_the_line_and_exits_2(case: BadConfig, ctx: ConfigContext) -> None:
    """Exit 2, stderr `blipd: ` + the line, stdout empty."""
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


def test_blipd_check_prints_every_problem(ctx: ConfigContext) -> None:
    """Several mistakes in one file: one `blipd: FILE:LINE: key: message` line each, in file order."""
    text = render(ctx, defaults_extra="  sample_every_s: 1  {0}\n  slot_size: plenty  {0}\n".format(MARKER),
                  streams_extra="  - name: cam\n    url: rtsp://viewer:%s@cam.example:85x4/s  %s\n"
                                "  - name: Bad Name  %s\n    url: %s\n" % (SECRET, MARKER, MARKER, ctx.clip))
    path = ctx.folder / "many.yaml"
    path.write_text(text)
    code, out, err, _ = blipd_check(path)
    assert code == 2 and out == "", (out, err)
    marked = [n for n, line in enumerate(text.splitlines(), 1) if MARKER in line]
    lines = [line[len("blipd: %s:" % path):] for line in err.splitlines()]
    found = [(int(line.split(":")[0]), line.split(": ")[1]) for line in lines]
    assert found == list(zip(marked, ["defaults.sample_every_s", "defaults.slot_size", "streams[3].url",
                                      "streams[4].name"])), err
    assert all(line.startswith("blipd: %s:" % path) for line in err.splitlines())
    assert SECRET not in err


def test_a_variable_with_non_utf8_bytes_fails_check(ctx: ConfigContext) -> None:
    """A real environment holding Latin-1 bytes: refused at check with file:line:key, not at every frame."""
    text = render(ctx, streams_extra="  - name: ask\n    url: %s\n    questions:\n"
                                     "      - {id: q, text: \"${BLIPD_TEST_QUESTION}\"}  %s\n" % (ctx.clip, MARKER))
    path = ctx.folder / "latin1.yaml"
    path.write_text(text)
    env = dict(os.environb, BLIPD_TEST_QUESTION=b"qu\xe9 pasa?")  # type: ignore[arg-type]
    code, out, err, _ = blipd_check(path, env=env)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if MARKER in row)
    assert code == 2, (out, err)
    assert err.splitlines() == ["blipd: %s:%d: streams[3].questions[0].text: text that cannot be encoded as UTF-8 "
                                "(a lone surrogate such as \\ud800, or an environment variable holding non-UTF-8 "
                                "bytes)" % (path, line)]
