"""Frame sources on real files (good and broken) and a real RTSP server."""
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest

from daemon.pipeline.sources.base import DecoderUnavailable, Source, SourceEnded, SourceError, SourceSpec, to_bgr
from daemon.pipeline.sources.factory import make_source, source_class
from daemon.pipeline.sources.opencv_source import OpenCVSource
from tests import media
from tests.privileges import ran_in_child
from tests.rtsp import RtspServer, closed_port

HAVE_AV = importlib.util.find_spec("av") is not None


@pytest.fixture(params=["opencv", pytest.param("pyav", marks=pytest.mark.skipif(not HAVE_AV, reason="PyAV (av) not installed"))])
def decoder(request: pytest.FixtureRequest) -> Callable[[SourceSpec], Source]:
    """Each test that takes it runs once per decoder."""
    return source_class(request.param)


def file_spec(path: Path, **kw: object) -> SourceSpec:
    return SourceSpec(name="cam", url=str(path), is_live=False, open_timeout_s=5, read_timeout_s=5, **kw)  # type: ignore[arg-type]


def read_all(source: Source) -> List[float]:
    pts = []
    while source.grab():
        pts.append(source.pts_s)
    return pts


def test_file_frames_pts_and_end(clips: Dict[str, Path], decoder: Callable[[SourceSpec], Source]) -> None:
    source = decoder(file_spec(clips["moving"]))
    source.open()
    try:
        assert source.fps == pytest.approx(25.0)
        assert source.grab()
        image = source.retrieve()
        assert image is not None and image.shape == (240, 320, 3) and image.dtype == np.uint8
        pts = [source.pts_s] + read_all(source)
        assert len(pts) == 50
        assert pts[0] == 0.0 and pts[-1] == pytest.approx(49 / 25)
        assert all(b > a for a, b in zip(pts, pts[1:]))
        reason = source.end_reason()
        assert isinstance(reason, SourceEnded) and "after 50 frames" in str(reason)
    finally:
        source.close()
        source.close()  # twice is fine


def test_hwaccel_falls_back_to_software_where_there_is_none(clips: Dict[str, Path]) -> None:
    source = OpenCVSource(file_spec(clips["short"], hwaccel=True))
    source.open()
    assert source.grab() and source.retrieve() is not None
    assert len(read_all(source)) == 9
    source.close()


def test_reopen_restarts_stream_time(clips: Dict[str, Path], decoder: Callable[[SourceSpec], Source]) -> None:
    source = decoder(file_spec(clips["short"]))
    for _ in range(2):
        source.open()
        assert read_all(source)[0] == 0.0
        source.close()


def _bad_files(tmp: Path, clips: Dict[str, Path]) -> Dict[str, Path]:
    (tmp / "folder.mp4").mkdir()
    return {
        "zero": media.make_zero_length(tmp / "zero.mp4"),
        "random": media.make_random_bytes(tmp / "random.mp4"),
        "header": media.make_header_garbage(tmp / "header.mp4"),
        "truncated": media.make_truncated(clips["moving"], tmp / "truncated.mp4", 0.5),
        "text": media.make_text_file(tmp / "notes.txt"),
        "directory": tmp / "folder.mp4",
        "missing": tmp / "missing.mp4",
    }


@pytest.mark.parametrize("kind,why", [
    ("zero", "empty file"), ("random", "not a video"), ("header", "not a video"), ("truncated", "not a video"),
    ("text", "not a video"), ("directory", "is a directory"), ("missing", "no such file"),
])
def test_bad_files_fail_at_open_with_one_clear_line(tmp_path: Path, clips: Dict[str, Path], kind: str, why: str,
                                                   decoder: Callable[[SourceSpec], Source]) -> None:
    path = _bad_files(tmp_path, clips)[kind]
    source = decoder(file_spec(path))
    with pytest.raises(SourceError) as info:
        source.open()
    message = str(info.value)
    assert message.startswith("stream cam: cannot open %s: " % path) and why in message
    assert "\n" not in message
    assert not source.grab()
    source.close()


def test_unreadable_file(tmp_path: Path, clips: Dict[str, Path], request: pytest.FixtureRequest) -> None:
    if ran_in_child(request):
        return
    path = tmp_path / "locked.mp4"
    path.write_bytes(clips["short"].read_bytes())
    path.chmod(0)
    with pytest.raises(SourceError, match="permission denied"):
        OpenCVSource(file_spec(path)).open()


def test_truncated_file_with_index_first_ends_early(tmp_path: Path, decoder: Callable[[SourceSpec], Source]) -> None:
    whole = media.make_faststart_clip(tmp_path / "whole.mp4", 2)
    cut = media.make_truncated(whole, tmp_path / "cut.mp4", 0.5)
    source = decoder(file_spec(cut))
    source.open()
    frames = read_all(source)
    reason = source.end_reason()
    source.close()
    assert 0 < len(frames) < 50
    assert isinstance(reason, SourceEnded) and "ended early" in str(reason)


def test_to_bgr_converts_gray_and_bgra() -> None:
    gray = np.full((4, 6), 7, np.uint8)
    bgra = np.zeros((4, 6, 4), np.uint8)
    bgra[..., 2] = 200
    assert to_bgr(gray).shape == (4, 6, 3) and int(to_bgr(gray)[0, 0, 1]) == 7  # type: ignore[union-attr]
    out = to_bgr(bgra)
    assert out is not None and out.shape == (4, 6, 3) and int(out[0, 0, 2]) == 200
    assert to_bgr(None) is None and to_bgr(np.zeros((0, 0, 3), np.uint8)) is None


def test_factory_picks_and_refuses_decoders(clips: Dict[str, Path]) -> None:
    assert isinstance(make_source(file_spec(clips["short"], decoder="auto")), OpenCVSource)
    assert source_class("opencv") is OpenCVSource
    with pytest.raises(DecoderUnavailable, match="stream cam: unknown decoder 'vlc'"):
        make_source(file_spec(clips["short"], decoder="vlc"))


def test_missing_decoder_package_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, clips: Dict[str, Path]) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    monkeypatch.delitem(sys.modules, "daemon.pipeline.sources.pyav_source", raising=False)
    with pytest.raises(DecoderUnavailable) as info:
        make_source(file_spec(clips["short"], decoder="pyav"))
    assert str(info.value) == "stream cam: decoder pyav is not available (av not installed)"


def test_spec_hides_the_password() -> None:
    spec = SourceSpec(name="gate", url="rtsp://viewer:s3cret@cam/stream1")
    assert "s3cret" not in repr(spec) and "s3cret" not in spec.display_url
    assert spec.clean("DESCRIBE rtsp://viewer:s3cret@cam failed: s3cret\nline two") == \
        "DESCRIBE rtsp://viewer:***@cam failed: *** line two"


def test_closed_port_fails_without_leaking_the_password(decoder: Callable[[SourceSpec], Source]) -> None:
    url = "rtsp://viewer:s3cret@127.0.0.1:%d/live" % closed_port()
    source = decoder(SourceSpec(name="gate", url=url, open_timeout_s=3, read_timeout_s=3))
    with pytest.raises(SourceError) as info:
        source.open()
    assert "stream gate: cannot open rtsp://viewer:***@127.0.0.1" in str(info.value)
    assert "s3cret" not in str(info.value)


@pytest.mark.integration
@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_rtsp_stream_reads_then_reports_loss(rtsp_factory, codec: str,  # type: ignore[no-untyped-def]
                                            decoder: Callable[[SourceSpec], Source]) -> None:
    server: RtspServer = rtsp_factory({"cam": codec})
    spec = SourceSpec(name="cam", url=server.url("cam", "user:pw"), open_timeout_s=10, read_timeout_s=3)
    source = decoder(spec)
    source.open()
    try:
        pts = []
        for _ in range(5):
            assert source.grab()
            pts.append(source.pts_s)
        image = source.retrieve()
        assert image is not None and image.shape == (240, 320, 3)
        assert pts == sorted(pts)
        server.kill()
        while source.grab():  # frames already buffered, then the loss
            pass
        reason = source.end_reason()
        assert type(reason) is SourceError and "stream cam:" in str(reason) and "pw" not in str(reason)
    finally:
        source.close()


@pytest.mark.integration
def test_rtsp_file_mount_plays_the_clip_once(rtsp_factory, clips: Dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    server: RtspServer = rtsp_factory({"clip": "file:%s" % clips["short"]})
    source = OpenCVSource(SourceSpec(name="cam", url=server.url("clip"), open_timeout_s=10, read_timeout_s=5))
    source.open()
    try:
        frames = read_all(source)
        assert len(frames) == 10 and frames == sorted(frames)
        assert type(source.end_reason()) is SourceError  # a live stream that stops is lost, not ended
    finally:
        source.close()


@pytest.fixture(scope="module")
def odd_media(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """concatenated: two 3 s recordings joined (timestamps start over); corrupt: a 20 s clip with
    an eighth of its bytes overwritten mid-file (ffprobe still reads most frames)."""
    root = tmp_path_factory.mktemp("odd")
    whole = media.make_clip(root / "whole.mp4", 20, fps=25, size=(160, 120))
    return {
        "concatenated": media.make_concatenated(root / "joined.ts", 3, parts=2),
        "corrupt": media.make_corrupted(whole, root / "corrupt.mp4"),
    }


def test_sources_report_timestamps_that_go_back_as_they_are(odd_media: Dict[str, Path],
                                                             decoder: Callable[[SourceSpec], Source]) -> None:
    """Defect: the sources held pts at their maximum, so the second recording was never sampled."""
    source = decoder(file_spec(odd_media["concatenated"]))
    source.open()
    try:
        pts = read_all(source)
    finally:
        source.close()
    assert len(pts) == 150
    backs = [i for i, (a, b) in enumerate(zip(pts, pts[1:])) if b < a - 1.0]
    assert len(backs) == 1 and 74 <= backs[0] <= 76, backs
    assert pts[-1] == pytest.approx(2.96, abs=0.05)


def test_a_damaged_region_is_skipped_and_counted(odd_media: Dict[str, Path], decoder: Callable[[SourceSpec], Source],
                                                 capfd: pytest.CaptureFixture) -> None:
    """Defect: both decoders stopped at the damage; now they go on to the end, count what they
    skipped and say how many frames were lost; FFmpeg prints nothing of its own."""
    source = decoder(file_spec(odd_media["corrupt"]))
    source.open()
    try:
        pts = read_all(source)
        reason = source.end_reason()
    finally:
        source.close()
    assert pts[-1] > 19.0, "read to the end of the file"
    assert 300 < len(pts) < 500
    assert source.skipped > 0
    assert isinstance(reason, SourceEnded)
    assert "undecodable packet(s) skipped, %d frame(s) lost" % (500 - len(pts)) in str(reason), reason
    err = capfd.readouterr().err
    assert "[h264 @" not in err and "NAL unit" not in err, err[-500:]


def test_failed_opens_write_nothing_but_our_error(tmp_path: Path, decoder: Callable[[SourceSpec], Source],
                                                   capfd: pytest.CaptureFixture) -> None:
    """OpenCV's and FFmpeg's own stderr lines around the daemon's log format are silenced."""
    bad = media.make_random_bytes(tmp_path / "random.mp4")
    for spec in (file_spec(bad), SourceSpec(name="cam", url="http://127.0.0.1:%d/x" % closed_port(),
                                            open_timeout_s=2, read_timeout_s=2)):
        source = decoder(spec)
        with pytest.raises(SourceError):
            source.open()
        source.close()
    assert capfd.readouterr().err == ""
