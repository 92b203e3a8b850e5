"""create_runtime / resolve_backend and the ONNX Runtime graph wrapper."""
import sys

import numpy as np
import pytest

from blip.errors import BackendError
from blip.runtime import create_runtime, resolve_backend
from tests.blip import tiny


def test_ort_graph_describes_tensors_and_casts_feeds(tmp_path, weights, runtime):
    graph = runtime.load(tiny.step_graph(weights, str(tmp_path / "step.onnx"), slots=9))
    assert graph.inputs["input_ids"].dtype == "int64" and graph.inputs["cross_mask"].dtype == "float32"
    assert graph.inputs["self_kv"].shape == (weights.layers, 2, None, weights.heads, 9, weights.head_dim)
    assert list(graph.outputs) == ["logits", "self_kv_out"]
    kv = np.zeros((weights.layers, 2, 1, weights.heads, 9, weights.head_dim))  # float64 on purpose
    out = graph.run({
        "input_ids": np.array([[7]], np.int32),  # int32 on purpose
        "position": [0],
        "self_kv": kv,
        "cross_mask": np.ones((1, 3), np.int64),
        **{"cross_%s_%d" % (kind, i): kv[i, 0, :, :, :3] for i in range(weights.layers) for kind in ("key", "value")},
    })
    assert out["logits"].shape == (1, weights.vocab) and out["logits"].dtype == np.float32
    np.testing.assert_allclose(out["logits"][0], weights.e[7] @ weights.wo, rtol=1e-5)


def test_unknown_feed_and_unloadable_file(tmp_path, weights, runtime):
    graph = runtime.load(tiny.vision_graph(weights, str(tmp_path / "v.onnx")))
    with pytest.raises(BackendError, match=r"v\.onnx: graph has no input 'pixels'"):
        graph.run({"pixels": np.zeros((1, 3, 8, 8), np.float32)})
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendError, match=r"junk\.onnx: onnxruntime cannot load the graph") as info:
        runtime.load(str(tmp_path / "junk.onnx"))
    assert "\n" not in str(info.value)
    graph.close()
    with pytest.raises(BackendError, match="closed"):
        graph.run({"pixel_values": np.zeros((1, 3, 8, 8), np.float32)})


def test_runtime_options():
    rt = create_runtime("onnxruntime", device=None, threads=2, optimization="basic")
    assert rt.name == "onnxruntime" and rt.providers == ["CPUExecutionProvider"] and rt.threads == 2
    with pytest.raises(BackendError, match="unknown option"):
        create_runtime("onnxruntime", colour="blue")
    with pytest.raises(BackendError, match="optimization 'max'"):
        create_runtime("onnxruntime", optimization="max")


def test_intra_op_threads_sleep_unless_asked_to_spin():
    key = "session.intra_op.allow_spinning"
    assert create_runtime("onnxruntime", device=None).session_options().get_session_config_entry(key) == "0"
    spinning = create_runtime("onnxruntime", device=None, spinning=True)
    assert spinning.session_options().get_session_config_entry(key) == "1"


def test_unknown_backend():
    with pytest.raises(BackendError, match="unknown backend 'tensorrt'"):
        create_runtime("tensorrt")


def test_onnxruntime_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(BackendError, match=r"backend onnxruntime is not installed .*blipd\[onnx\]"):
        create_runtime("onnxruntime")


def test_sail_unavailable_is_a_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "blip.runtime.sail", None)
    with pytest.raises(BackendError, match="backend sail is unavailable"):
        create_runtime("sail")


def test_auto_follows_the_package(package):
    assert resolve_backend("auto", package) == "onnxruntime"


def test_auto_resolution(tmp_path, monkeypatch):
    assert resolve_backend("onnxruntime") == "onnxruntime" and resolve_backend("sail") == "sail"
    fake_dev = tmp_path / "bm-sophon0"
    assert resolve_backend("auto", devices=(str(fake_dev),)) == "onnxruntime"
    fake_dev.write_text("")
    monkeypatch.setitem(sys.modules, "sophon.sail", None)  # device node but no SDK
    assert resolve_backend("auto", devices=(str(fake_dev),)) == "onnxruntime"
    import blip.runtime as rt_mod

    monkeypatch.setattr(rt_mod, "_sail_installed", lambda: True)
    assert resolve_backend("auto", devices=(str(fake_dev),)) == "sail"
    assert resolve_backend("auto", devices=(str(tmp_path / "none"),)) == "onnxruntime"
