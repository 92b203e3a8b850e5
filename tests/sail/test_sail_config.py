"""daemon/config/sail_checks.py: what `blipd check` refuses for the SOPHON parts, with file:line:key."""
import pytest

from daemon.errors import ConfigError

pytestmark = pytest.mark.sail

CONFIG = """\
model:
  package: models/demo
  backend: {backend}
  workers: {workers}
streams:
  - name: cam
    url: {url}
    decoder: {decoder}
"""


def load(tmp_path, url="rtsp://cam.lan/live", decoder="sail", backend="sail", workers=1):  # type: ignore[no-untyped-def]
    from daemon.config.config import load_config

    path = tmp_path / "blipd.yaml"
    path.write_text(CONFIG.format(url=url, decoder=decoder, backend=backend, workers=workers))
    return path, lambda: load_config(path, env={})


@pytest.mark.parametrize("url", ["rtsps://viewer:secret@cam.lan/live", "http://cam.lan/live", "https://cam.lan/x.m3u8"])
def test_urls_the_sail_decoder_cannot_time_out_are_refused(tmp_path, url):
    path, run = load(tmp_path, url=url)
    with pytest.raises(ConfigError) as caught:
        run()
    lines = caught.value.lines
    assert len(lines) == 1 and lines[0].startswith("%s:7: streams[0].url: decoder sail has no read timeout" % path), lines
    assert "secret" not in lines[0]


@pytest.mark.parametrize("url,decoder", [("RTSP://cam.lan/live", "sail"), ("rtsps://cam.lan/live", "opencv")])
def test_capital_rtsp_and_other_decoders_pass(tmp_path, url, decoder):
    _, run = load(tmp_path, url=url, decoder=decoder)
    assert run().streams[0].decoder == decoder


def test_more_sail_workers_than_any_chip_has_cores_is_refused(tmp_path):
    path, run = load(tmp_path, workers=3)
    with pytest.raises(ConfigError) as caught:
        run()
    assert caught.value.lines[0].startswith("%s:4: model.workers: backend sail runs one worker per TPU core" % path)
    _, run = load(tmp_path, workers=3, backend="onnxruntime", decoder="opencv")
    assert run().model.workers == 3
