"""daemon/pipeline/sources/sail_decoder.py on the sail double: files, RTSP, version-specific end codes, and
the URL password that sail.Decoder prints to stdout kept out of the process's output."""
import os
import subprocess
import sys
import textwrap

import pytest

from daemon.errors import SourceError
from daemon.pipeline.sources.base import SourceEnded, SourceSpec
from tests.media import make_clip, make_random_bytes
from tests.rtsp import RtspServer, closed_port
from tests.sail.conftest import REPO, fake_env

pytestmark = pytest.mark.sail

FRAMES = 12


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=FRAMES / 12, fps=12, size=(160, 96))


def source(url, **kw):
    from daemon.pipeline.sources.sail_decoder import SailSource

    kw.setdefault("is_live", "://" in url)
    return SailSource(SourceSpec(name="cam", url=url, decoder="sail", **kw))


def drain(src, limit=1000):
    frames = []
    while len(frames) < limit and src.grab():
        frames.append(src.retrieve())
    return frames


@pytest.mark.parametrize("version,code", [("3.10.7", 5007), ("3.9.1", 5006), ("3.9.0", 1)])
def test_file_decodes_to_bgr_and_ends_as_each_version_reports(clip, sail, version, code):
    sail._configure(version=version)
    src = source(str(clip))
    src.open()
    try:
        assert src.fps == pytest.approx(12.0)
        frames = drain(src)
        assert len(frames) == FRAMES
        assert all(f.shape == (96, 160, 3) and f.dtype.name == "uint8" for f in frames)
        assert src.pts_s > 0
        reason = src.end_reason()
        assert isinstance(reason, SourceEnded), reason
        assert "sail code %d" % code in str(reason)
    finally:
        src.close()
        src.close()  # twice is fine


def test_bad_files_fail_to_open_with_one_line(tmp_path, sail):
    with pytest.raises(SourceError, match="no such file"):
        source(str(tmp_path / "missing.mp4")).open()
    garbage = make_random_bytes(tmp_path / "garbage.mp4")
    with pytest.raises(SourceError, match="cannot open .*garbage.mp4: RuntimeError: Failed to open input file") as err:
        source(str(garbage)).open()
    assert "\n" not in str(err.value)


def test_old_sail_loops_a_file_after_20_failed_reads_so_the_source_stops_at_the_first(clip, sail):
    """The double mirrors sail <= 3.9.x: EOF counts as a failure and the 20th reopens the file."""
    sail._configure(version="3.9.4")
    handle = sail.Handle(0)
    decoder = sail.Decoder(str(clip), False, 0)
    codes = [decoder.read(handle, sail.BMImage()) for _ in range(FRAMES + 21)]
    assert codes[:FRAMES] == [0] * FRAMES
    assert codes[FRAMES:FRAMES + 20] == [5006] * 20
    assert codes[-1] == 0  # reopened from the beginning
    assert not hasattr(decoder, "is_eof")
    src = source(str(clip))
    src.open()
    assert len(drain(src)) == FRAMES
    assert src.grab() is False and isinstance(src.end_reason(), SourceEnded)
    src.close()


def test_capital_rtsp_is_lower_cased_so_sail_applies_its_read_timeout(sail):
    """sail applies stimeout and rtsp_transport only to URLs starting with lowercase `rtsp:`."""
    src = source("RTSP://viewer:secret@127.0.0.1:%d/live" % closed_port(), read_timeout_s=2.0)
    with pytest.raises(SourceError):
        src.open()
    path, options = sail._opens()[-1]
    assert path.startswith("rtsp://viewer:secret@127.0.0.1:")
    assert options["stimeout"] == "2000000" and options["rtsp_transport"] == "tcp"


@pytest.mark.parametrize("url", ["rtsps://viewer:secret@cam.lan/live", "https://cam.lan/live.m3u8", "http://cam.lan/x"])
def test_urls_sail_cannot_time_out_are_refused_before_sail_sees_them(sail, url):
    from daemon.pipeline.sources.base import DecoderUnavailable

    with pytest.raises(DecoderUnavailable, match="no read timeout for .*use decoder opencv or pyav") as err:
        source(url).open()
    assert "secret" not in str(err.value)
    assert sail._opens() == []


@pytest.mark.integration
@pytest.mark.parametrize("drop", ["eof", "error"])
def test_rtsp_reads_then_reports_the_drop(sail, drop):
    """sail >= 3.10.2 reports an RTSP drop that ffmpeg sees as EOF as 5007 (ended), others as 5006."""
    sail._configure(rtsp_drop=drop)
    with RtspServer({"live": "h264"}, width=160, height=96, fps=15) as server:
        src = source(server.url("live", "viewer:secret"), read_timeout_s=2.0, open_timeout_s=5.0)
        src.open()
        try:
            assert os.environ["SAIL_DECODER_stimeout"] == "2000000"  # microseconds
            assert os.environ["SAIL_DECODER_rtsp_transport"] == "tcp"
            frames = drain(src, limit=5)
            assert len(frames) == 5 and frames[0].shape == (96, 160, 3)
            server.kill()
            drain(src, limit=200)  # whatever was buffered, then the read fails
            reason = src.end_reason()
            assert isinstance(reason, SourceEnded) == (drop == "eof"), reason
            assert isinstance(reason, SourceError)
            assert "secret" not in str(reason) and "viewer:***@" in str(reason)
        finally:
            src.close()


def test_rtsp_open_failure_is_redacted(sail):
    src = source("rtsp://viewer:secret@127.0.0.1:%d/live" % closed_port(), read_timeout_s=2.0)
    with pytest.raises(SourceError) as err:
        src.open()
    assert "secret" not in str(err.value) and "viewer:***@" in str(err.value)


_CHILD = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    from daemon.pipeline.sources.base import SourceSpec
    from daemon.pipeline.sources.sail_decoder import SailSource
    for url in sys.argv[1:]:
        src = SailSource(SourceSpec(name="cam", url=url, decoder="sail", read_timeout_s=3.0))
        try:
            src.open()
            print("opened, grab:", src.grab())
        except Exception as exc:
            print("error:", exc, file=sys.stderr)
        src.close()
    print("done")
""")


def _child(args, script=_CHILD):
    return subprocess.run([sys.executable, "-c", script] + args, env=fake_env(), cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)


@pytest.mark.integration
def test_password_never_reaches_stdout_or_stderr_of_the_process():
    dead = "rtsp://viewer:secret@127.0.0.1:%d/live" % closed_port()
    # control: sail.Decoder itself prints the URL with its password to stdout
    raw = _child([dead], "import sys, sophon.sail as sail\ntry:\n    sail.Decoder(sys.argv[1], False, 0)\nexcept RuntimeError:\n    pass\n")
    assert b"viewer:secret@" in raw.stdout
    with RtspServer({"live": "h264"}, width=160, height=96) as server:
        proc = _child([server.url("live", "viewer:secret"), dead])
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, out
    assert "opened, grab: True" in proc.stdout.decode() and "done" in proc.stdout.decode()
    assert "secret" not in out
    assert "decoder ctor: filepath=rtsp://viewer:***@" in proc.stderr.decode()  # captured, redacted, logged
