"""Config loading: bad files give one `FILE:LINE: key: message` line and never a secret; good
files give frozen settings with resolved paths, expanded variables and redacted URLs."""
import shutil
import textwrap
from pathlib import Path
from typing import Dict, Optional

import pytest

from daemon.config.config import (
    DEFAULT_FIELDS, Settings, StreamConfig, check_tasks, diff_streams, load_config,
)
from daemon.errors import ConfigError
from blip.redact import redact_text, redact_url, url_secrets
from tests.privileges import ran_in_child

SECRET = "hunter2-Zq9"
REPO = Path(__file__).resolve().parents[2]

BASE = """\
model:
  package: models/demo
streams:
  - name: cam
    url: rtsp://viewer:${CAM_PASSWORD}@cam.lan/stream1
"""


def write(folder: Path, text: str, name: str = "blipd.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def load(path: Path, env: Optional[Dict[str, str]] = None) -> Settings:
    merged = {"CAM_PASSWORD": SECRET}
    merged.update(env or {})
    return load_config(path, env=merged)


def error_of(path: Path, env: Optional[Dict[str, str]] = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(path, env)
    return caught.value



# (case id, YAML text, expected line, expected key path, a word the message must contain).
# Small YAML details only: whole-file bad configs (duplicate keys, aliases, unknown keys, wrong
# types, names, schemes, intervals, variables, URLs, files) are tests/hardening/bad_configs.py's
# CASES, judged in tests/hardening/test_config_check.py and by SIGHUP in test_steady_daemon.py.
BAD = [
    ("duplicate-section", "model: {package: a}\nmodel: {package: b}\n" + BASE[BASE.index("streams"):], 2, "model", "duplicate"),
    ("any-alias", BASE + "    caption: *cap\n", 6, "streams[0].caption", "aliases"),
    ("anchor", "model: &m {package: a}\n", 1, "model", "anchors"),
    ("unknown-section", BASE + "publsh: {}\n", 6, "publsh", "did you mean 'publish'"),
    ("udp-scheme", BASE.replace("rtsp://", "udp://"), 5, "streams[0].url", "'udp'"),
    ("negative-interval", BASE + "    sample_every_s: -1\n", 6, "streams[0].sample_every_s", "greater than 0"),
    ("empty-prompt-text", BASE + "    prompts:\n      - {id: p, text: '  '}\n", 7, "streams[0].prompts[0].text", "empty"),
    ("duplicate-question", BASE + "    questions:\n      - {id: q, text: a}\n      - {id: q, text: b}\n", 8,
     "streams[0].questions[1].id", "duplicate question id"),
    ("bad-bind", BASE + "publish: {bind: 'udp://0.0.0.0:1'}\n", 6, "publish.bind", "tcp://"),
    ("bad-log-level", BASE + "log_level: loud\n", 6, "log_level", "one of"),
    ("quality", BASE + "publish:\n  snapshot: {quality: 0}\n", 7, "publish.snapshot.quality", "greater than or equal to 1"),
    ("malformed-variable", BASE.replace("${CAM_PASSWORD}", "${CAM PASSWORD}"), 5, "streams[0].url", "malformed"),
    ("missing-required", "model: {package: m}\nstreams:\n  - name: cam\n", 3, "streams[0].url", "required"),
    ("no-streams", "model: {package: m}\nstreams: []\n", 2, "streams", "at least one stream"),
    ("non-string-key", BASE + "    yes: 1\n", 6, "streams[0]", "strings"),
    ("too-deep", "model: " + "[" * 40 + "]" * 40 + "\n", 1, "model" + "[0]" * 15, "deeper"),
    ("merge-key", BASE + "    <<: {loop: true}\n", 6, "streams[0]", "merge keys"),
    ("python-tag", BASE + "    decoder: !!python/object:os.system x\n", 6, "streams[0].decoder", "tag"),
    ("port-out-of-range", BASE.replace("cam.lan/", "cam.lan:70000/"), 5, "streams[0].url", "port must be a number"),
    ("lone-surrogate-key", BASE + '    "\\udc80": 1\n', 6, "streams[0]", "cannot be encoded as UTF-8"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case, text, line, key, word", BAD, ids=[case[0] for case in BAD])
def test_bad_config_is_one_line_naming_file_line_and_key(tmp_path, case, text, line, key, word):
    path = write(tmp_path, text)
    error = error_of(path)
    assert len(error.lines) == 1, error.lines
    assert str(error) == error.lines[0]
    assert error.lines[0].startswith("%s:%d: %s: " % (path, line, key)), error.lines[0]
    assert word in error.lines[0]
    assert SECRET not in str(error) and SECRET not in repr(error)


def test_several_problems_give_one_line_each_in_file_order(tmp_path):
    path = write(tmp_path, BASE + "    decoder: vlc\n    sample_every_s: 0\nmetrics: {port: 70000}\n")
    lines = error_of(path).lines
    assert [line.split(": ")[1] for line in lines] == [
        "streams[0].decoder", "streams[0].sample_every_s", "metrics.port"]
    assert [int(line.split(":")[1]) for line in lines] == [6, 7, 8]


def test_every_problem_is_reported_reading_and_validation_alike(tmp_path):
    """A duplicate key, an unknown key, a refused tag, an unset variable and a bad value: one
    line each, in file order, so one `blipd check` run lists everything to fix."""
    text = BASE.replace("${CAM_PASSWORD}", "${NOT_SET_ANYWHERE}") + (
        "    decoder: auto\n"
        "    decoder: opencv\n"
        "    prompt: []\n"
        "    loop: !!python/name:os.system x\n"
        "    sample_every_s: 0\n")
    lines = error_of(write(tmp_path, text)).lines
    assert [(int(line.split(":")[1]), line.split(": ")[1]) for line in lines] == [
        (5, "streams[0].url"), (7, "streams[0].decoder"), (8, "streams[0].prompt"),
        (9, "streams[0].loop"), (10, "streams[0].sample_every_s")]
    assert "duplicate key" in lines[1] and "tag" in lines[3]


def test_a_variable_with_non_utf8_bytes_is_refused_at_load(tmp_path):
    """os.environ decodes undecodable bytes to lone surrogates; such text must not reach a prompt."""
    path = write(tmp_path, BASE + "    prompts:\n      - {id: p, text: \"${PROMPT_TEXT}\"}\n")
    error = error_of(path, env={"PROMPT_TEXT": b"caf\xe9".decode("utf-8", "surrogateescape")})
    assert error.lines == ("%s:7: streams[0].prompts[0].text: text that cannot be encoded as UTF-8 (a lone "
                           "surrogate such as \\ud800, or an environment variable holding non-UTF-8 bytes)"
                           % path,)
    str(error).encode("utf-8")  # the message itself prints anywhere


def test_password_in_a_failing_url_never_leaks(tmp_path):
    text = BASE.replace("rtsp://viewer:${CAM_PASSWORD}@cam.lan/stream1",
                        "gopher://admin:%s@cam.lan/x?token=%s" % (SECRET, SECRET))
    error = error_of(write(tmp_path, text))
    assert SECRET not in str(error)
    # a wrong type for the whole url (a mapping holding the secret) is hidden as well
    text = BASE.replace("rtsp://viewer:${CAM_PASSWORD}@cam.lan/stream1", "{password: %s}" % SECRET)
    error = error_of(write(tmp_path, text))
    assert "streams[0].url" in str(error) and SECRET not in str(error)


def test_unset_variable_names_it_but_no_value(tmp_path):
    path = write(tmp_path, BASE.replace("viewer:${CAM_PASSWORD}", "${CAM_USER}:${CAM_PASSWORD}"))
    assert load(path, {"CAM_USER": "operator-name"}).stream("cam").display_url == "rtsp://operator-name:***@cam.lan/stream1"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"CAM_USER": "operator-name"})
    assert caught.value.lines == ("%s:5: streams[0].url: environment variable CAM_PASSWORD is not set" % path,)


def test_every_unset_variable_is_reported(tmp_path):
    path = write(tmp_path, BASE + "  - {name: two, url: 'rtsp://u:${OTHER}@cam2/x'}\nlog_level: '${LEVEL:-info}'\n")
    lines = error_of(path, {"CAM_PASSWORD": ""}).lines  # set but empty counts as set
    assert lines == ("%s:6: streams[1].url: environment variable OTHER is not set" % path,)


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"# only a comment\n", "the file is empty"),
    (b"- model\n- streams\n", "top level must be a mapping"),
    (b"just text\n", "top level must be a mapping"),
    (b"model: {package: m}\nname: caf\xe9\n", "not UTF-8"),
    (b"model: [unclosed\n", "expected"),
    (b"model: {package: m}\n---\nmodel: {package: n}\n", "single document"),
])
def test_unusable_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "blipd.yaml"
    path.write_bytes(content)
    error = error_of(path)
    assert len(error.lines) == 1 and error.lines[0].startswith(str(path) + ":")
    assert message in error.lines[0]


def test_unreadable_config_file(tmp_path):
    error = error_of(tmp_path)  # a folder cannot be read as a file
    assert error.lines == ("%s: cannot read: Is a directory" % tmp_path,)
    error = error_of(tmp_path / "absent.yaml")
    assert error.lines == ("%s: cannot read: No such file or directory" % (tmp_path / "absent.yaml"),)


def test_oversized_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("x: '" + "a" * (1024 * 1024) + "'\n")
    assert "larger than" in str(error_of(path))


# --- CURVE files ---------------------------------------------------------------------------

CURVE = BASE + """\
publish:
  curve:
    secret_key_file: server.key_secret
    clients_dir: clients
"""


def make_key(folder: Path, mode: int = 0o600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "server.key_secret"
    key.write_text('metadata\ncurve\n    public-key = "pub"\n    secret-key = "%s"\n' % SECRET)
    key.chmod(mode)
    (folder / "clients").mkdir(exist_ok=True)
    return key


def test_curve_files_resolve_against_the_config_folder(tmp_path):
    key = make_key(tmp_path)
    settings = load(write(tmp_path, CURVE))
    assert settings.publish.curve is not None
    assert settings.publish.curve.secret_key_file == key
    assert settings.publish.curve.clients_dir == tmp_path / "clients"


def test_curve_files_resolve_against_credentials_directory(tmp_path):
    credentials = tmp_path / "credentials"
    key = make_key(credentials)
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    settings = load(write(config_dir, CURVE), {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.publish.curve.secret_key_file == key
    assert settings.publish.curve.clients_dir == credentials / "clients"


def test_group_readable_secret_key_is_refused_without_showing_it(tmp_path):
    key = make_key(tmp_path, 0o644)
    error = error_of(write(tmp_path, CURVE))
    assert error.lines == ("%s:8: publish.curve.secret_key_file: %s is readable by group or others "
                           "(mode 0644): chmod 600 it" % (tmp_path / "blipd.yaml", key),)
    assert SECRET not in str(error)


@pytest.mark.parametrize("make, message", [
    (lambda key: key.unlink(), "file not found"),
    (lambda key: (key.unlink(), key.mkdir()), "not a regular file"),  # unreadable, even for root
])
def test_unreadable_secret_key_file(tmp_path, make, message):
    make(make_key(tmp_path))
    error = error_of(write(tmp_path, CURVE))
    assert len(error.lines) == 1
    assert error.lines[0].startswith("%s:8: publish.curve.secret_key_file: " % (tmp_path / "blipd.yaml"))
    assert message in error.lines[0] and str(tmp_path / "server.key_secret") in error.lines[0]


def test_secret_key_without_read_permission(tmp_path, request):
    if ran_in_child(request):
        return
    make_key(tmp_path, 0o000)
    assert "cannot read" in str(error_of(write(tmp_path, CURVE)))


def test_missing_clients_dir(tmp_path):
    make_key(tmp_path)
    (tmp_path / "clients").rmdir()
    error = error_of(write(tmp_path, CURVE))
    assert error.lines[0].startswith("%s:9: publish.curve.clients_dir: folder not found" % (tmp_path / "blipd.yaml"))


# --- good configs ----------------------------------------------------------------------------


def test_minimal_config_gets_every_default(tmp_path):
    settings = load(write(tmp_path, BASE))
    assert settings.source_path == tmp_path / "blipd.yaml"
    assert settings.model.package == tmp_path / "models" / "demo"
    assert (settings.model.backend, settings.model.device, settings.model.workers) == ("auto", 0, 1)
    assert settings.publish.bind == "tcp://127.0.0.1:5556" and settings.publish.curve is None
    assert settings.metrics.active and settings.metrics.port == 9464
    stream = settings.stream("cam").resolved(settings.defaults)
    assert stream.is_live and stream.decoder == "auto" and not stream.loop
    assert (stream.sample_every_s, stream.max_frame_age_s, stream.scene_change) == (1.0, 2.0, 0.02)
    assert (stream.backoff_initial_s, stream.backoff_max_s, stream.stall_timeout_s) == (1.0, 60.0, 10.0)
    assert stream.caption.enabled and stream.caption.every_s == 5.0
    assert settings.tasks_needed() == {"caption"}
    with pytest.raises(KeyError):
        settings.stream("nope")


def test_every_default_can_be_overridden_per_stream():
    for name in DEFAULT_FIELDS:
        assert StreamConfig.model_fields[name].default is None, name


def test_stream_override_beats_defaults(tmp_path):
    text = BASE + "    sample_every_s: 0.25\n    slot_size: 2\ndefaults: {sample_every_s: 3, scene_change: 0}\n"
    settings = load(write(tmp_path, text))
    stream = settings.resolved_streams()[0]
    assert (stream.sample_every_s, stream.slot_size, stream.scene_change) == (0.25, 2, 0.0)


def test_environment_expansion(tmp_path):
    text = BASE.replace("cam.lan", "${CAM_HOST:-cam.lan}") + "    prompts:\n      - {id: p, text: 'costs $${PRICE}'}\n"
    text += "metrics: {port: '${METRICS_PORT}'}\n"
    settings = load(write(tmp_path, text), {"METRICS_PORT": "9500"})
    stream = settings.stream("cam")
    assert stream.secret_url() == "rtsp://viewer:%s@cam.lan/stream1" % SECRET
    assert stream.prompts[0].text == "costs ${PRICE}"
    assert settings.metrics.port == 9500
    settings = load(write(tmp_path, text), {"METRICS_PORT": "9500", "CAM_HOST": "10.0.0.9"})
    assert settings.stream("cam").display_url == "rtsp://viewer:***@10.0.0.9/stream1"


def test_password_never_shows_outside_the_secret_accessor(tmp_path):
    settings = load(write(tmp_path, BASE))
    stream = settings.stream("cam")
    resolved = stream.resolved(settings.defaults)
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(stream), repr(resolved),
                 str(settings.model_dump())):
        assert SECRET not in text
    assert stream.display_url == resolved.display_url == "rtsp://viewer:***@cam.lan/stream1"
    assert resolved.secret_url() == stream.secret_url() == "rtsp://viewer:%s@cam.lan/stream1" % SECRET
    assert SECRET in settings.secrets() and SECRET in resolved.secrets()


def test_settings_are_frozen(tmp_path):
    settings = load(write(tmp_path, BASE))
    with pytest.raises(Exception):
        settings.log_level = "debug"  # type: ignore[misc]
    with pytest.raises(Exception):
        settings.streams[0].loop = True  # type: ignore[misc]
    assert isinstance(settings.streams, tuple)


def test_file_sources_resolve_against_the_config_folder(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"\0")
    text = """\
    model: {package: /opt/models/x}
    streams:
      - {name: rel, url: clips/a.mp4, loop: true}
      - {name: uri, url: "file:///srv/not-yet/b.mp4"}
      - {name: web, url: "https://cam.lan/mjpeg?token=abc"}
    """
    settings = load(write(tmp_path, text))
    rel, uri, web = settings.resolved_streams()
    assert rel.secret_url() == str(tmp_path / "clips" / "a.mp4") and rel.loop and not rel.is_live
    assert uri.secret_url() == "/srv/not-yet/b.mp4" and not uri.is_live
    assert web.is_live and web.display_url == "https://cam.lan/mjpeg?token=***"
    assert settings.model.package == Path("/opt/models/x")


def test_check_tasks_names_the_stream_key(tmp_path):
    text = BASE + "    prompts: [{id: p, text: a dog}]\n    questions:\n      - {id: q, text: 'is it day?'}\n"
    path = write(tmp_path, text)
    settings = load(path)
    assert settings.tasks_needed() == {"caption", "match", "answer"}
    check_tasks(settings, {"caption", "match", "answer"})
    with pytest.raises(ConfigError) as caught:
        check_tasks(settings, {"caption", "match"})
    assert caught.value.lines == ("%s:7: streams[0].questions: the model package has no 'answer' task" % path,)
    with pytest.raises(ConfigError) as caught:
        check_tasks(settings, set())
    assert [line.split(": ")[1] for line in caught.value.lines] == [
        "streams[0].caption", "streams[0].prompts", "streams[0].questions"]
    assert [int(line.split(":")[1]) for line in caught.value.lines] == [4, 6, 7]  # caption: the stream's line


def test_diff_streams(tmp_path):
    old_text = BASE + (
        '  - {name: yard, url: "rtsp://cam-yard.lan/x"}\n'
        '  - {name: dock, url: "rtsp://cam-dock.lan/x", sample_every_s: 2}\n'
        '  - {name: gone, url: "rtsp://cam-gone.lan/x"}\n')
    new_text = old_text.replace("name: gone, url: \"rtsp://cam-gone", "name: new, url: \"rtsp://cam-new")
    new_text = new_text.replace("cam-yard.lan/x", "cam-yard.lan/y")
    new_text += "defaults: {sample_every_s: 0.5}\n"  # cam inherits it, dock overrides it
    old = load(write(tmp_path, old_text, "old.yaml"))
    new = load(write(tmp_path, new_text, "new.yaml"))
    diff = diff_streams(old, new)
    assert diff.added == ("new",) and diff.removed == ("gone",)
    assert diff.changed == ("cam", "yard") and diff.unchanged == ("dock",)
    password_change = load(write(tmp_path, new_text, "new.yaml"), {"CAM_PASSWORD": "other"})
    assert diff_streams(new, password_change).changed == ("cam",)
    assert diff_streams(new, new).unchanged == ("cam", "yard", "dock", "new")


# --- the example configs -------------------------------------------------------------------


def test_example_demo_config(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(str(REPO / "config" / "demo.yaml"), str(config / "demo.yaml"))
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "demo.mp4").write_bytes(b"\0")
    settings = load_config(config / "demo.yaml", env={})
    demo = settings.stream("demo").resolved(settings.defaults)
    assert demo.secret_url() == str(tmp_path / "samples" / "demo.mp4") and demo.loop and not demo.is_live
    assert settings.model.package == tmp_path / "models" / "demo"
    assert [p.id for p in demo.prompts] == ["red_circle", "blue_square"]
    assert [q.text for q in demo.questions] == ["how many shapes are there?", "is there a triangle?"]
    assert settings.tasks_needed() == {"caption", "match", "answer"}
    assert settings.publish.bind == "tcp://127.0.0.1:5556"


def test_example_cameras_config(tmp_path):
    credentials = tmp_path / "credentials"
    make_key(credentials)
    text = (REPO / "config" / "cameras.yaml").read_text()
    assert "/etc/blipd/curve/clients" in text
    text = text.replace("/etc/blipd/curve/clients", str(credentials / "clients"))
    path = write(tmp_path, text, "cameras.yaml")
    settings = load(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert [s.name for s in settings.streams] == ["gate", "yard", "dock"]
    assert all(s.is_live and SECRET in s.secret_url() for s in settings.resolved_streams())
    assert settings.publish.curve.secret_key_file == credentials / "server.key_secret"
    assert SECRET not in repr(settings)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert len(caught.value.lines) == 3 and "CAM_PASSWORD" in caught.value.lines[0]


def test_example_sophon_config():
    settings = load(REPO / "config" / "sophon-se7.yaml")
    assert (settings.model.backend, settings.model.device, settings.model.workers) == ("sail", 0, 1)
    assert all(stream.decoder == "sail" for stream in settings.streams)


# --- redaction -----------------------------------------------------------------------------


@pytest.mark.parametrize("url, shown", [
    ("rtsp://user:secret@host/x", "rtsp://user:***@host/x"),
    ("rtsp://user:se@cr/et@host:554/x", "rtsp://user:***@host:554/x"),
    ("rtsps://user@host/x", "rtsps://user@host/x"),
    ("http://host/x?a=1&token=t0k&Password=p&key=&pwd=z#f", "http://host/x?a=1&token=***&Password=***&key=&pwd=***#f"),
    ("rtsp://u:p@h/s?pass=q", "rtsp://u:***@h/s?pass=***"),
    ("rtsp://u:p@[::1]:554/s", "rtsp://u:***@[::1]:554/s"),
    ("/srv/clips/a.mp4", "/srv/clips/a.mp4"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_text_hides_urls_and_given_secrets():
    text = "cannot open rtsp://admin:p%40ss@cam/x: 401 (password p@ss, again p%40ss)"
    cleaned = redact_text(text, url_secrets("rtsp://admin:p%40ss@cam/x"))
    assert "p@ss" not in cleaned and "p%40ss" not in cleaned
    assert cleaned.startswith("cannot open rtsp://admin:***@cam/x: 401")
    assert redact_text("nothing to hide") == "nothing to hide"
    assert redact_text("frame 1 of 10", ["1"]) == "frame 1 of 10"  # too short to search for


@pytest.mark.parametrize("text, shown", [
    ("cannot open http://cam/y?token=abc: refused", "cannot open http://cam/y?token=***: refused"),
    ("lost rtsp://u:pw@cam/s, retrying", "lost rtsp://u:***@cam/s, retrying"),
    ("(from rtsp://u:pw@cam/s?key=k1)", "(from rtsp://u:***@cam/s?key=***)"),
    ("end: http://cam/x?sig=s.", "end: http://cam/x?sig=***."),
])
def test_redact_text_keeps_the_punctuation_after_a_url(text, shown):
    assert redact_text(text) == shown
