"""Broken config files for `blipd check` and for SIGHUP reload, each with the line and key its error
must name: the one list of whole-file bad configs (tests/daemon/test_config.py keeps only small
cases of YAML details that need no model package or media).

Every case is the same good config (`good_config`) with one thing wrong. The line the error must
point at carries the marker comment `# <-`, so the expected line is visible in the case itself.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

from daemon.publish.curve import write_keypair

MARKER = "# <-"
SECRET = "Hunter2Secret"
"""A password placed in URLs of the cases: it must never appear in an error or a log."""
UNSET_VAR = "BLIPD_TEST_NEVER_SET_PASSWORD"

GOOD = """\
model:
  package: {package}
publish:
  bind: {bind}
  stats_every_s: 0.5
  heartbeat_s: 0.1
{publish_extra}metrics:
  port: 0
defaults:
  sample_every_s: 0.25
  scene_change: 0
  open_timeout_s: 2
  read_timeout_s: 2
  stall_timeout_s: 2
  backoff_initial_s: 0.05
  backoff_max_s: 0.2
{defaults_extra}streams:
  - name: file
    url: {clip}
    loop: true
    caption: {{enabled: true, every_s: 0.2}}
  - name: never
    url: rtsp://127.0.0.1:{closed_port}/never
  - name: nohost
    url: rtsp://viewer:{secret}@no-such-camera.invalid/stream1
{streams_extra}{top_extra}"""
"""Three streams: a looping file (captions), a closed port and an unresolvable host (dead cameras,
retried forever with small backoff). Cases add to the marked places; new streams are `streams[3]`."""

ALIAS_BOMB = """\
lol:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]  # <-
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@dataclass(frozen=True)
class ConfigContext:
    """What the config texts point at; `bind` matters only to a running daemon."""

    package: Path
    caption_only_package: Path
    clip: Path
    bind: str
    closed_port: int
    folder: Path
    """Where cases write their extra files (keys, a folder used as a video)."""


@dataclass(frozen=True)
class BadConfig:
    """One broken config: `key` is the key path its one error line must name."""

    name: str
    key: str
    build: Callable[[ConfigContext], Dict[str, str]]
    """Returns overrides of GOOD's placeholders."""
    word: str = ""
    """Text the error line must contain besides file, line and key."""

    def text(self, ctx: ConfigContext) -> str:
        return render(ctx, **self.build(ctx))

    def line(self, text: str) -> int:
        """1-based line of the `# <-` marker."""
        marked = [n for n, line in enumerate(text.splitlines(), 1) if MARKER in line]
        assert len(marked) == 1, "case %s must mark exactly one line" % self.name
        return marked[0]


def render(ctx: ConfigContext, **overrides: str) -> str:
    values = dict(package=str(ctx.package), bind=ctx.bind, clip=str(ctx.clip), closed_port=str(ctx.closed_port),
                  secret=SECRET, publish_extra="", defaults_extra="", streams_extra="", top_extra="")
    values.update(overrides)
    return GOOD.format(**values)


def good_config(ctx: ConfigContext) -> str:
    return render(ctx)


def _stream(lines: List[str]) -> Dict[str, str]:
    return {"streams_extra": "".join(line + "\n" for line in lines)}


def _curve(ctx: ConfigContext, secret_file: Path) -> Dict[str, str]:
    clients = ctx.folder / "clients"
    clients.mkdir(exist_ok=True)
    text = "  curve:\n    secret_key_file: %s  %s\n    clients_dir: %s\n" % (secret_file, MARKER, clients)
    return {"publish_extra": text}


def _unreadable_key(ctx: ConfigContext) -> Dict[str, str]:
    """A key file the daemon cannot read: mode 000 (a root test runs blipd under
    tests/privileges.py's prefix, where modes apply to root too)."""
    _, secret = write_keypair(ctx.folder / "unreadable", "server")
    os.chmod(secret, 0)
    return _curve(ctx, Path(secret))


def _shared_key(ctx: ConfigContext) -> Dict[str, str]:
    _, secret = write_keypair(ctx.folder / "shared", "server")
    os.chmod(secret, 0o644)
    return _curve(ctx, Path(secret))


def _folder_as_video(ctx: ConfigContext) -> Dict[str, str]:
    folder = ctx.folder / "videos"
    folder.mkdir(exist_ok=True)
    return _stream(["  - name: folder", "    url: %s  %s" % (folder, MARKER)])


CASES: List[BadConfig] = [
    BadConfig("duplicate_key", "defaults.sample_every_s",
              lambda c: {"defaults_extra": "  sample_every_s: 1  %s\n" % MARKER},
              word="duplicate key (first defined at line"),
    BadConfig("alias_bomb", "lol.a", lambda c: {"top_extra": ALIAS_BOMB},
              word="anchors"),
    BadConfig("unknown_key", "defaults.sample_evry_s",
              lambda c: {"defaults_extra": "  sample_evry_s: 1  %s\n" % MARKER},
              word="did you mean 'sample_every_s'"),
    BadConfig("wrong_type", "defaults.slot_size",
              lambda c: {"defaults_extra": "  slot_size: plenty  %s\n" % MARKER},
              word="integer"),
    BadConfig("duplicate_stream_name", "streams[3].name",
              lambda c: _stream(["  - name: file  " + MARKER, "    url: %s" % c.clip]),
              word="duplicate stream name 'file'"),
    BadConfig("bad_stream_name", "streams[3].name",
              lambda c: _stream(["  - name: Front Door!  " + MARKER, "    url: %s" % c.clip]),
              word="a-z"),
    BadConfig("unsupported_scheme", "streams[3].url",
              lambda c: _stream(["  - name: ftp", "    url: ftp://viewer:%s@cam.example/x  %s" % (SECRET, MARKER)]),
              word="unsupported URL scheme 'ftp'"),
    BadConfig("missing_model_package", "model.package",
              lambda c: {"package": "%s  %s" % (c.folder / "no-such-package", MARKER)}),
    BadConfig("task_missing_in_package", "streams[3].questions",
              lambda c: dict(_stream(["  - name: ask", "    url: %s" % c.clip, "    questions:  " + MARKER,
                                      "      - {id: what, text: \"what is it?\"}"]),
                             package=str(c.caption_only_package)),
              word="no 'answer' task"),
    BadConfig("exit_above_enter", "streams[3].prompts[0].exit",
              lambda c: _stream(["  - name: gate", "    url: %s" % c.clip, "    prompts:",
                                 "      - {id: p, text: a dog, enter: 0.5, exit: 0.8}  " + MARKER]),
              word="below enter (0.5)"),
    BadConfig("negative_interval", "defaults.max_frame_age_s",
              lambda c: {"defaults_extra": "  max_frame_age_s: -1  %s\n" % MARKER},
              word="greater than 0"),
    BadConfig("zero_interval", "streams[3].caption.every_s",
              lambda c: _stream(["  - name: zero", "    url: %s" % c.clip,
                                 "    caption: {enabled: true, every_s: 0}  " + MARKER]),
              word="greater than 0"),
    BadConfig("backoff_max_below_initial", "streams[3].backoff_max_s",
              lambda c: _stream(["  - name: cam", "    url: rtsp://cam.example/s",
                                 "    backoff_max_s: 0.01  " + MARKER]),
              word="at least backoff_initial_s"),
    BadConfig("unreadable_secret_key", "publish.curve.secret_key_file", _unreadable_key),
    BadConfig("secret_key_readable_by_others", "publish.curve.secret_key_file", _shared_key),
    BadConfig("unset_variable", "streams[3].url",
              lambda c: _stream(["  - name: cam",
                                 "    url: rtsp://viewer:${%s}@cam.example/s  %s" % (UNSET_VAR, MARKER)]),
              word="environment variable %s is not set" % UNSET_VAR),
    BadConfig("password_in_url_no_host", "streams[3].url",
              lambda c: _stream(["  - name: cam", "    url: rtsps://admin:%s@/stream1  %s" % (SECRET, MARKER)]),
              word="no host"),
    BadConfig("password_in_url_loop", "streams[3].loop",
              lambda c: _stream(["  - name: cam", "    url: rtsp://admin:%s@cam.example/s" % SECRET,
                                 "    loop: true  " + MARKER]),
              word="files only"),
    BadConfig("folder_as_video", "streams[3].url", _folder_as_video,
              word="is a folder"),
    BadConfig("port_not_a_number", "streams[3].url",
              lambda c: _stream(["  - name: cam", "    url: rtsp://admin:%s@cam.example:85x4/s  %s" % (SECRET, MARKER)]),
              word="port must be a number from 1 to 65535"),
    BadConfig("text_not_utf8", "streams[3].prompts[0].text",
              lambda c: _stream(["  - name: odd", "    url: %s" % c.clip, "    prompts:",
                                 "      - {id: p, text: \"a \\ud800 dog\"}  " + MARKER]),
              word="cannot be encoded as UTF-8"),
    BadConfig("missing_video_file", "streams[3].url",
              lambda c: _stream(["  - name: gone", "    url: %s  %s" % (c.folder / "gone.mp4", MARKER)]),
              word="file not found"),
]


def case_ids() -> List[str]:
    return [case.name for case in CASES]
