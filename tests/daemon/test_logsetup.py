"""The logging set-up: one formatted line per record, the stream on every line, URLs and the known
secrets redacted by the handler's filter, which a reload keeps current."""
import io
import logging
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from daemon.config.config import load_config
from daemon.ops.logsetup import RedactFilter, set_level, setup_logging, stream_logger

SECRET = "Sw0rdfish-42"
NEW_SECRET = "Ne3wPassw0rd"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """setup_logging configures the process's root logger: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def output(root_logging: None) -> io.StringIO:
    return io.StringIO()


def test_urls_and_known_secrets_are_redacted_and_the_stream_named(output: io.StringIO) -> None:
    setup_logging("info", secrets=[SECRET], stream=output)
    log = logging.getLogger("blipd.test")
    log.info("cannot open rtsp://viewer:%s@cam/s: refused", "other-pass")
    log.info("decoder said: bad password %s", SECRET)
    stream_logger("blipd.test", "gate").warning("gate message")
    lines = output.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("[-] cannot open rtsp://viewer:***@cam/s: refused")
    assert lines[1].endswith("[-] decoder said: bad password ***")
    assert lines[2].endswith("WARNING blipd.test [gate] gate message")
    assert SECRET not in output.getvalue() and "other-pass" not in output.getvalue()


def test_an_exception_whose_text_holds_a_secret_loses_its_text(output: io.StringIO) -> None:
    setup_logging("info", secrets=[SECRET], stream=output)
    try:
        raise RuntimeError("login failed for %s" % SECRET)
    except RuntimeError:
        logging.getLogger("blipd.test").exception("stream failed")
    text = output.getvalue()
    assert SECRET not in text
    assert "stream failed (RuntimeError; details withheld: they held a secret)" in text
    assert "Traceback" not in text


def test_a_secret_in_a_chained_exception_is_withheld_too(output: io.StringIO) -> None:
    """Defect: only the outermost exception's text was checked; the traceback also prints its
    cause (`raise ... from exc`) and context, whose text may hold the URL's password."""
    setup_logging("info", secrets=[SECRET], stream=output)
    try:
        try:
            raise OSError("cannot open rtsp://viewer:%s@cam/s" % SECRET)
        except OSError as exc:
            raise RuntimeError("the decoder gave up") from exc
    except RuntimeError:
        logging.getLogger("blipd.test").exception("stream failed")
    text = output.getvalue()
    assert SECRET not in text
    assert "stream failed (RuntimeError; details withheld: they held a secret)" in text


def test_added_secrets_are_redacted_and_the_old_ones_kept(output: io.StringIO) -> None:
    redactor = setup_logging("info", secrets=[SECRET], stream=output)
    log = logging.getLogger("blipd.test")
    log.info("before: %s", NEW_SECRET)
    redactor.add_secrets([NEW_SECRET])
    log.info("after: %s and %s", NEW_SECRET, SECRET)
    lines = output.getvalue().splitlines()
    assert lines[0].endswith("before: " + NEW_SECRET)  # not known yet: the reason reload must add it
    assert lines[1].endswith("after: *** and ***")


def test_short_secrets_are_not_searched_for() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "frame 1 of 10", None, None)
    assert RedactFilter(["1"]).filter(record) and record.getMessage() == "frame 1 of 10"


def test_set_level(root_logging: None) -> None:
    setup_logging("warning", stream=io.StringIO())
    assert not logging.getLogger("blipd.test").isEnabledFor(logging.INFO)
    set_level("debug")
    assert logging.getLogger("blipd.test").isEnabledFor(logging.DEBUG)


def _write(path: Path, package: Path, clip: Path, level: str, password: str) -> Path:
    path.write_text(yaml.safe_dump({
        "model": {"package": str(package)},
        "publish": {"bind": "tcp://127.0.0.1:*"},
        "metrics": {"port": 0},
        "log_level": level,
        "streams": [{"name": "file", "url": str(clip)},
                    {"name": "cam", "url": "rtsp://viewer:%s@127.0.0.1:9/s" % password}],
    }, sort_keys=False))
    return path


@pytest.mark.parametrize("override", [None, "warning"], ids=["config-level", "command-line-level"])
def test_reload_adds_the_new_secrets_and_applies_log_level(tiny_package, clips, tmp_path, root_logging,
                                                          override) -> None:
    """Service.reload gives the filter the new config's secrets before anything logs about its
    streams, and sets the new `log_level` unless `--log-level` fixed it."""
    from daemon.service import Service

    path = _write(tmp_path / "blipd.yaml", tiny_package, clips["short"], "info", SECRET)
    settings = load_config(path)
    redactor = setup_logging(override or settings.log_level, secrets=settings.secrets(), stream=io.StringIO())
    service = Service(settings, log_filter=redactor, log_level=override)
    try:
        _write(path, tiny_package, clips["short"], "debug", NEW_SECRET)
        service.reload()
        assert {SECRET, NEW_SECRET} <= set(redactor.secrets)
        expected = logging.WARNING if override else logging.DEBUG
        assert logging.getLogger().level == expected
    finally:
        service.stop()
