"""`preprocess: tpu` on the sophon.sail double: the decoder's device makes the model's pixel values
(Bmcv convert_format -> vpp_resize -> convert_to -> bm_image_to_tensor), the engine uses them
instead of the CPU preprocess, and the config refuses the option without sail.

What the double proves: the plumbing (channel order, the a*x+b constants, sizes, which resize
algorithm each chip gets, the CPU fallback). The double resizes with cv2, so on the bicubic
profile the device pixels equal the CPU's exactly; the real VPP's bicubic and bilinear kernels
are fixed-point and not verified here. On the bilinear profiles (BM1684X, BM1688) the difference
to the CPU's bicubic is the kernel alone, bounded below on a synthetic worst case (hard edges).
"""
import logging
import threading
from types import SimpleNamespace
from typing import Dict, List, Tuple

import jsonschema
import numpy as np
import pytest
import yaml

from blip.preprocess import preprocess
from daemon.errors import ConfigError
from daemon.pipeline.sources.base import DevicePreprocess, SourceSpec
from tests.daemon_proc import DaemonProcess, EventCollector, free_tcp_endpoint
from tests.integration.conftest import base_config, stream_entry
from tests.media import make_clip
from tests.sail.conftest import fake_env

pytestmark = pytest.mark.sail

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
GREY_LEVEL = 1.0 / (255.0 * min(STD))
"""One step of 255 grey levels in normalised units (about 0.015)."""
BILINEAR_MEAN_ABS = 0.02
BILINEAR_MAX_ABS = 1.0
"""Device bilinear vs CPU bicubic on the testsrc clips (docs/sophon.md): mean |diff| per value
measured 0.004-0.013 (under one grey level), max 0.67-0.83 (~57 levels, at the pattern's hard
edges, where bicubic overshoots)."""


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=1, fps=10, size=(160, 96))


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("media") / "big.mp4", seconds=0.5, fps=10, size=(640, 360),
                     pattern="testsrc2")


def plan(sizes: Tuple[int, ...] = (64,), interpolation: str = "bicubic") -> DevicePreprocess:
    return DevicePreprocess(sizes, MEAN, STD, interpolation)


def open_source(url: str, preprocess_plan: DevicePreprocess):  # type: ignore[no-untyped-def]
    from daemon.pipeline.sources.sail_decoder import SailSource

    src = SailSource(SourceSpec(name="cam", url=url, is_live=False, decoder="sail", preprocess=preprocess_plan))
    src.open()
    return src


def device_frames(url: str, preprocess_plan: DevicePreprocess) -> List[Tuple[np.ndarray, Dict[int, np.ndarray]]]:
    """(BGR frame, device pixels) for every frame of a file."""
    src = open_source(url, preprocess_plan)
    try:
        frames = []
        while src.grab():
            image = src.retrieve()
            frames.append((image, src.pixels()))
        return frames
    finally:
        src.close()


@pytest.fixture
def resize_calls(sail, monkeypatch) -> List[object]:
    """Every resize algorithm Bmcv is asked for (recorded before the double accepts or refuses it)."""
    calls: List[object] = []
    real = sail.Bmcv._resize

    def spy(self, image, width, height, alg, what):  # type: ignore[no-untyped-def]
        calls.append(sail.bmcv_resize_algorithm(alg))
        return real(self, image, width, height, alg, what)

    monkeypatch.setattr(sail.Bmcv, "_resize", spy)
    return calls


# -- the pixels ------------------------------------------------------------------------------------


def test_bicubic_chip_gives_the_cpu_preprocess_exactly(clip, sail, resize_calls):
    sail._configure(chip="BM1684")
    frames = device_frames(str(clip), plan((64, 100)))
    assert len(frames) == 10
    for image, pixels in frames:
        assert sorted(pixels) == [64, 100]
        for size, values in pixels.items():
            assert values.dtype == np.float32 and values.shape == (1, 3, size, size)
            assert not values.flags.writeable
            np.testing.assert_allclose(values, preprocess(image, size, MEAN, STD), rtol=0, atol=1e-6)
    assert set(resize_calls) == {sail.bmcv_resize_algorithm.BMCV_INTER_BICUBIC}
    assert len(resize_calls) == 2 * len(frames)  # one resize per size, the colour conversion shared


def test_chips_without_bicubic_resize_bilinear_within_the_documented_tolerance(big_clip, sail, resize_calls):
    sail._configure(chip="BM1684X")
    frames = device_frames(str(big_clip), plan((64, 384)))
    assert frames and all(pixels for _, pixels in frames)
    assert set(resize_calls) == {sail.bmcv_resize_algorithm.BMCV_INTER_LINEAR}  # BICUBIC never asked for
    assert not [m for m in sail._logged() if "supports only" in m]
    mean_abs, max_abs = [], 0.0
    for image, pixels in frames:
        for size, values in pixels.items():
            # the kernel is the only difference: the CPU's bilinear path gives the same numbers
            np.testing.assert_allclose(values, preprocess(image, size, MEAN, STD, "bilinear"), rtol=0, atol=1e-6)
            diff = np.abs(values - preprocess(image, size, MEAN, STD))
            mean_abs.append(float(diff.mean()))
            max_abs = max(max_abs, float(diff.max()))
    print("bilinear vs bicubic: mean |diff| %.4f (%.2f grey levels), max %.3f (%.0f levels)"
          % (max(mean_abs), max(mean_abs) / GREY_LEVEL, max_abs, max_abs / GREY_LEVEL))
    assert 0 < max(mean_abs) <= BILINEAR_MEAN_ABS
    assert max_abs <= BILINEAR_MAX_ABS


@pytest.mark.parametrize("interpolation, target, expected", [
    ("bicubic", "BM1684", "bicubic"), ("bicubic", "BM1684X", "bilinear"), ("bicubic", "BM1688", "bilinear"),
    ("bicubic", "CV186AH", "bilinear"), ("bicubic", "unknown", "bilinear"), ("bilinear", "BM1684", "bilinear"),
])
def test_resize_algorithm_per_chip_and_package(interpolation, target, expected):
    from daemon.pipeline.sources.sail_decoder import resize_algorithm

    assert resize_algorithm(interpolation, target) == expected


def test_a_bilinear_package_resizes_bilinear_on_a_bicubic_chip(clip, sail, resize_calls):
    sail._configure(chip="BM1684")
    image, pixels = device_frames(str(clip), plan((48,), "bilinear"))[0]
    assert set(resize_calls) == {sail.bmcv_resize_algorithm.BMCV_INTER_LINEAR}
    np.testing.assert_allclose(pixels[48], preprocess(image, 48, MEAN, STD, "bilinear"), rtol=0, atol=1e-6)


def test_a_bmcv_failure_leaves_the_frame_to_the_cpu_and_is_logged_once(clip, sail, monkeypatch, caplog):
    def refuse(self, *args):  # type: ignore[no-untyped-def]
        raise sail.SailBMImageError("bmcv api fail")

    monkeypatch.setattr(sail.Bmcv, "convert_to", refuse)
    caplog.set_level(logging.WARNING, logger="daemon.pipeline.sources.sail_decoder")
    frames = device_frames(str(clip), plan())
    assert len(frames) == 10
    assert all(image is not None and pixels is None for image, pixels in frames)
    warnings = [r.getMessage() for r in caplog.records if "preprocess tpu failed" in r.getMessage()]
    assert len(warnings) == 1 and "SailBMImageError: bmcv api fail" in warnings[0], warnings


def test_a_silent_convert_to_failure_never_reaches_the_model(big_clip, sail, resize_calls, caplog):
    """BM1688: bmcv_image_convert_to fails, sail prints and returns success, the output holds
    uninitialised memory. The frames go on with CPU preprocessing after one warning."""
    sail._configure(chip="BM1688")
    caplog.set_level(logging.WARNING, logger="daemon.pipeline.sources.sail_decoder")
    frames = device_frames(str(big_clip), plan((64, 384)))
    assert len(frames) == 5 and all(image is not None and pixels is None for image, pixels in frames)
    assert "bmcv_image_convert_to error" in sail._logged()
    warnings = [r.getMessage() for r in caplog.records if "unusable pixels" in r.getMessage()]
    assert len(warnings) == 1 and "bmcv failed without saying so" in warnings[0], warnings
    assert len(resize_calls) == 1  # the device path is off after the first bad result, until a reopen


def test_in_range_but_wrong_device_pixels_are_caught_on_the_first_frame(clip, sail, monkeypatch, caplog):
    """Memory that held another picture passes a range check; the first frame of every open is
    compared with the resized frame itself."""
    def stale(self, image, out, alpha_beta):  # type: ignore[no-untyped-def]
        out._float = np.zeros((3, out.height(), out.width()), dtype=np.float32)
        return 0

    sail._configure(chip="BM1684")
    monkeypatch.setattr(sail.Bmcv, "convert_to", stale)
    caplog.set_level(logging.WARNING, logger="daemon.pipeline.sources.sail_decoder")
    frames = device_frames(str(clip), plan())
    assert frames and all(pixels is None for _, pixels in frames)
    assert any("differs from the resized frame" in r.getMessage() for r in caplog.records)


def test_without_a_plan_the_sail_source_gives_no_pixels(clip, sail):
    src = open_source(str(clip), None)  # type: ignore[arg-type]
    try:
        assert src.grab() and src.retrieve() is not None
        assert src.pixels() is None
    finally:
        src.close()


def test_the_supervisor_hands_device_pixels_on_with_the_frame(clip, sail):
    from daemon.counters import StreamCounters
    from daemon.pipeline.frames import Frame
    from daemon.pipeline.sampler import Sampler
    from daemon.pipeline.sources.supervisor import SourceState, StreamSupervisor, SupervisorPolicy

    sail._configure(chip="BM1684")
    spec = SourceSpec(name="cam", url=str(clip), is_live=False, realtime=False, decoder="sail", preprocess=plan((64,)))
    frames: List[Frame] = []
    states: List[SourceState] = []
    ended = threading.Event()

    def on_state(status):  # type: ignore[no-untyped-def]
        states.append(status.state)
        if status.state in (SourceState.ENDED, SourceState.FAILED):
            ended.set()

    sup = StreamSupervisor(spec, Sampler(0.3, scene_change=0.0), frames.append, StreamCounters("cam"), on_state,
                           SupervisorPolicy(file_retries=0))
    sup.start()
    try:
        assert ended.wait(60), states  # a file without loop ends by itself
    finally:
        sup.stop(timeout=5)
    assert SourceState.ENDED in states, states
    assert len(frames) >= 3
    for frame in frames:
        assert list(frame.pixels) == [64]
        np.testing.assert_allclose(frame.pixels[64], preprocess(frame.image, 64, MEAN, STD), rtol=0, atol=1e-6)


def test_device_preprocess_asks_for_the_sizes_of_the_tasks_a_stream_runs():
    from daemon.pipeline.streams import device_preprocess

    sizes = {"caption": 384, "match": 384, "answer": 480}
    package = SimpleNamespace(
        tasks=dict.fromkeys(sizes),
        task=lambda name: SimpleNamespace(image_size=sizes[name]),
        preprocess=SimpleNamespace(mean=MEAN, std=STD, interpolation="bicubic"),
    )

    def stream(caption: bool, prompts: int, questions: int):  # type: ignore[no-untyped-def]
        return SimpleNamespace(caption=SimpleNamespace(enabled=caption), prompts=(None,) * prompts,
                               questions=(None,) * questions)

    assert device_preprocess(package, stream(True, 1, 0)) == DevicePreprocess((384,), MEAN, STD, "bicubic")
    assert device_preprocess(package, stream(False, 0, 2)).sizes == (480,)
    assert device_preprocess(package, stream(True, 1, 1)).sizes == (384, 480)
    assert device_preprocess(package, stream(False, 0, 0)) is None


# -- the engine ------------------------------------------------------------------------------------

PROMPTS = {"thing": "a red circle", "other": "a person"}


def package_and_double(request, layout):  # type: ignore[no-untyped-def]
    """The session's tiny package of `layout`, and the `sophon.sail` the code under test imports:
    building a package the first time imports a fresh double (conftest.double_on_path)."""
    package = request.getfixturevalue(layout + "_package")
    import sophon.sail as sail

    return package, sail


def sail_engine(package):  # type: ignore[no-untyped-def]
    from blip.engine import Engine
    from blip.runtime.sail import SailRuntime

    return Engine(package, SailRuntime(), tasks=("caption", "match"))


@pytest.mark.parametrize("layout", ["seed", "split"])
def test_the_engine_runs_on_device_pixels_instead_of_the_cpu_preprocess(request, clip, layout):
    package, sail = package_and_double(request, layout)
    size = package.task("caption").image_size
    sail._configure(chip="BM1684")  # bicubic: the same numbers as the CPU's
    frames = device_frames(str(clip), plan((size,)))[:3]
    sail._configure(chip="BM1684X")  # the packages' bmodels are for BM1684X
    with sail_engine(package) as engine:
        cpu = [engine.infer(image, caption=True, prompts=PROMPTS) for image, _ in frames]
        def no_cpu_preprocess(frame):  # type: ignore[no-untyped-def]
            raise AssertionError("the CPU preprocess ran although the frame came with pixels")

        for task in (engine.captioner, engine.matcher):
            task.embed = no_cpu_preprocess
        device = [engine.infer(image, caption=True, prompts=PROMPTS, pixels=pixels) for image, pixels in frames]
        # pixels win over the frame: another frame's pixels give that frame's results
        swapped = engine.infer(frames[0][0], caption=True, prompts=PROMPTS, pixels=frames[2][1])
    for (image, pixels), want, got in zip(frames, cpu, device):
        np.testing.assert_array_equal(pixels[size], preprocess(image, size, MEAN, STD))
        assert got.caption == want.caption and got.caption_ids == want.caption_ids
        assert got.scores == pytest.approx(want.scores, abs=1e-6)
    assert swapped.scores == pytest.approx(cpu[2].scores, abs=1e-6) and swapped.caption_ids == cpu[2].caption_ids


@pytest.mark.parametrize("layout", ["seed", "split"])
def test_bilinear_device_pixels_change_the_tiny_models_results_little(request, big_clip, layout):
    """The effect of BM1684X's bilinear resize on caption and match, measured on the tiny package
    (random weights: a sensitive model, not a quality measure)."""
    package, sail = package_and_double(request, layout)
    sail._configure(chip="BM1684X")
    size = package.task("caption").image_size
    frames = device_frames(str(big_clip), plan((size,)))
    with sail_engine(package) as engine:
        same_caption, score_diff = 0, 0.0
        for image, pixels in frames:
            cpu = engine.infer(image, caption=True, prompts=PROMPTS)
            device = engine.infer(image, caption=True, prompts=PROMPTS, pixels=pixels)
            same_caption += cpu.caption_ids == device.caption_ids
            score_diff = max(score_diff, max(abs(cpu.scores[k] - device.scores[k]) for k in PROMPTS))
    print("%s: same caption on %d/%d frames, max |score diff| %.4f" % (layout, same_caption, len(frames), score_diff))
    assert score_diff <= 0.05
    assert same_caption >= len(frames) - 1


# -- config and the daemon -------------------------------------------------------------------------

CONFIG = """\
model:
  package: models/demo
  backend: {backend}
  preprocess: tpu
streams:
  - name: cam
    url: rtsp://cam.lan/stream1
{decoder}"""


def load_text(tmp_path, text):  # type: ignore[no-untyped-def]
    from daemon.config.config import load_config

    path = tmp_path / "blipd.yaml"
    path.write_text(text)
    return path, load_config(path, env={})


def test_preprocess_tpu_with_backend_and_decoder_sail_loads(tmp_path):
    _, settings = load_text(tmp_path, CONFIG.format(backend="sail", decoder="    decoder: sail\n"))
    assert settings.model.preprocess == "tpu"


@pytest.mark.parametrize("backend, decoder, line, key, word", [
    ("onnxruntime", "    decoder: sail\n", 4, "model.preprocess", "needs backend: sail (the backend is onnxruntime)"),
    ("auto", "    decoder: sail\n", 4, "model.preprocess", "the backend is auto"),
    ("sail", "    decoder: opencv\n", 8, "streams[0].decoder", "needs decoder: sail, not opencv"),
    ("sail", "", 6, "streams[0].decoder", "not auto (auto means opencv)"),
])
def test_preprocess_tpu_without_sail_is_one_line_naming_file_line_and_key(tmp_path, backend, decoder, line, key, word):
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, CONFIG.format(backend=backend, decoder=decoder))
    lines = caught.value.lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("%s:%d: %s: " % (tmp_path / "blipd.yaml", line, key)), lines[0]
    assert word in lines[0]


class RecordingEngine:
    """Answers at once and keeps what each `infer` call got."""

    def __init__(self, calls: int) -> None:
        self.got: List[Tuple[np.ndarray, object]] = []
        self.enough = threading.Event()
        self._calls = calls

    def infer(self, frame, caption=False, prompts=None, questions=None, pixels=None):  # type: ignore[no-untyped-def]
        from blip.engine import EngineResult

        self.got.append((frame, pixels))
        if len(self.got) >= self._calls:
            self.enough.set()
        return EngineResult(caption="a thing" if caption else None, scores={k: 0.1 for k in (prompts or {})},
                            answers={k: "yes" for k in (questions or {})})


@pytest.mark.integration
def test_the_service_wires_device_pixels_from_the_decoder_to_the_engine(seed_package, clip, tmp_path):
    """config -> StreamSet (sizes of the stream's tasks) -> SailSource -> Frame -> Worker -> Engine."""
    from daemon.config.config import load_config
    from daemon.service import Service

    config = base_config(seed_package.path, free_tcp_endpoint(), [stream_entry("file", str(clip), loop=True, decoder="sail")])
    config["model"].update(backend="sail", preprocess="tpu")
    path = tmp_path / "blipd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    engine = RecordingEngine(calls=3)
    service = Service(load_config(path), engine_factory=lambda: engine)
    service.start()
    try:
        assert engine.enough.wait(60), "no inference within 60 s"
    finally:
        service.stop()
    size = seed_package.task("caption").image_size
    for frame, pixels in engine.got[:3]:
        assert isinstance(pixels, dict) and list(pixels) == [size]
        # the double's default profile is a BM1684X: bilinear on the device
        np.testing.assert_allclose(pixels[size], preprocess(frame, size, MEAN, STD, "bilinear"), rtol=0, atol=1e-6)


@pytest.mark.integration
def test_daemon_publishes_schema_valid_captions_with_tpu_preprocessing(seed_package, tmp_path):
    from daemon.publish.events import json_schema

    clip = make_clip(tmp_path / "clip.mp4", seconds=2, fps=10, size=(160, 96))
    endpoint = free_tcp_endpoint()
    config = base_config(seed_package.path, endpoint, [stream_entry("file", str(clip), loop=True, decoder="sail")])
    config["model"].update(backend="sail", preprocess="tpu")
    config["log_level"] = "debug"
    path = tmp_path / "blipd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    validator = jsonschema.Draft202012Validator(json_schema())
    with EventCollector(endpoint) as events, DaemonProcess(path, {"PYTHONPATH": fake_env()["PYTHONPATH"]}) as daemon:
        got = events.wait_for(lambda evs: {"caption", "answer", "stats"} <= {e["type"] for e in evs}, timeout=120)
        assert daemon.terminate(timeout=15) == 0
        log = daemon.log()
    assert "Traceback" not in log, log[-3000:]
    assert "preprocess tpu on BM1684X: bilinear resize to (64,)" in log, log[-3000:]
    assert "preprocess tpu failed" not in log and "preprocess tpu unavailable" not in log, log[-3000:]
    for event in got:
        validator.validate(event)
    caption = next(e for e in got if e["type"] == "caption")
    assert isinstance(caption["text"], str) and caption["stream"] == "file"
    stats = [e for e in got if e["type"] == "stats"][-1]
    assert stats["inferred"] > 0 and stats["failed"] == 0
