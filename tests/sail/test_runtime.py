"""blip/runtime/sail.py on the sophon.sail double: names, dtypes, validation, errors, GIL."""
import json
import sys
import threading
import time

import numpy as np
import pytest

from blip.errors import BackendError
from tests.sail.onnx_graphs import make_cap, make_itm, make_vision, pixels

pytestmark = pytest.mark.sail

IDS = np.array([[101, 7, 8, 102, 0]], dtype=np.int64)
MASK = np.array([[1, 1, 1, 1, 0]], dtype=np.int64)


def runtime(**kw):
    from blip.runtime.sail import SailRuntime

    return SailRuntime(**kw)


def itm_feeds(value=0.5):
    return {"pixel_values": pixels(value=value), "input_ids": IDS, "attention_mask": MASK}


def expected_itm(value=0.5):
    return 48 * value + float((IDS * MASK).sum())


@pytest.mark.parametrize("io", ["tensor", "numpy"])
@pytest.mark.parametrize("ids_dtype", ["F32", "INT32"])
@pytest.mark.parametrize("f32_names", [False, True])
def test_itm_runs_with_every_name_variant_and_ids_dtype(tmp_path, sail, io, ids_dtype, f32_names):
    sail._configure(ids_dtype=ids_dtype, f32_names=f32_names)
    graph = runtime(io=io).load(str(make_itm(tmp_path / "blip_itm.bmodel")))
    assert graph.name == "blip_itm"
    assert set(graph.inputs) == {"pixel_values", "input_ids", "attention_mask"}
    assert graph.inputs["input_ids"].shape == (1, 5)
    assert graph.inputs["input_ids"].dtype == ("int32" if ids_dtype == "INT32" else "float32")
    assert list(graph.outputs) == ["output_Gather"]  # the `_f32` variant is folded at load
    out = graph.run(itm_feeds())["output_Gather"]
    assert out.dtype == np.float32 and out.shape == (1,)
    assert out[0] == pytest.approx(expected_itm())


@pytest.mark.parametrize("io", ["tensor", "numpy"])
def test_token_outputs_come_back_as_int64(tmp_path, sail, io):
    graph = runtime(io=io).load(str(make_cap(tmp_path / "blip_cap.bmodel")))
    assert graph.outputs["output_Concat"].dtype == "int64"
    tokens = graph.run({"pixel_values": pixels(value=2.5)})["output_Concat"]
    assert tokens.dtype == np.int64
    assert tokens.tolist() == [[103, 9, 10, 11, 104, 2]]


def test_split_graph_names_pass_through(tmp_path, sail):
    sail._configure(f32_names=True)
    graph = runtime().load(str(make_vision(tmp_path / "vision.bmodel")))
    assert list(graph.outputs) == ["image_embeds"]
    embeds = graph.run({"pixel_values": pixels(value=1.5)})["image_embeds"]
    assert embeds.shape == (1, 3, 16) and np.all(embeds == 3.0)


@pytest.mark.parametrize("version", ["3.9.0", "3.10.7"])
def test_wrong_shape_is_a_backend_error_before_sail_sees_it(tmp_path, sail, version):
    """sail >= 3.9.1 raises "bad input" on a wrong shape, 3.9.0 exit()s: the runtime's own check
    names the input and never lets 3.9.0 kill the process."""
    sail._configure(version=version)
    graph = runtime().load(str(make_itm(tmp_path / "blip_itm.bmodel")))
    short = dict(itm_feeds(0.0), pixel_values=np.zeros((1, 3, 2, 2), dtype=np.float32))
    with pytest.raises(BackendError, match=r"input pixel_values has shape \(1, 3, 2, 2\), the bmodel needs \(1, 3, 4, 4\)"):
        graph.run(short)


def test_missing_input_is_refused_where_sail_reuses_stale_data(tmp_path, sail):
    path = str(make_itm(tmp_path / "blip_itm.bmodel"))
    engine = sail.Engine(path, 0, sail.IOMode.SYSIO)
    engine.process("blip_itm", itm_feeds(1.0))
    partial = {"pixel_values": pixels(value=0.0)}
    assert engine.process("blip_itm", partial)["output_Gather"][0] == pytest.approx(expected_itm(0.0))  # old ids
    graph = runtime().load(path)
    with pytest.raises(BackendError, match="input_ids, attention_mask not given"):
        graph.run(partial)
    with pytest.raises(BackendError, match="has no input 'token_type_ids'"):
        graph.run(dict(itm_feeds(), token_type_ids=IDS))


@pytest.mark.parametrize("dtype,scale", [("BM_FLOAT16", 1.0), ("BM_BFLOAT16", 1.0), ("BM_INT8", 2.0)])
@pytest.mark.parametrize("io", ["tensor", "numpy"])
def test_half_and_quantised_outputs_come_back_as_numbers(tmp_path, sail, dtype, scale, io):
    """Tensor.asnumpy hands back F16/BF16 as uint16 bits and int8 without its scale."""
    path = make_itm(tmp_path / "blip_itm.bmodel")
    (tmp_path / "blip_itm.bmodel.json").write_text(json.dumps(
        {"output_dtypes": {"output_Gather": dtype}, "output_scales": {"output_Gather": scale}}))
    graph = runtime(io=io).load(str(path))
    assert graph.outputs["output_Gather"].dtype == "float32"
    out = graph.run(itm_feeds())["output_Gather"]
    assert out.dtype == np.float32
    assert out[0] == pytest.approx(expected_itm(), rel=1e-2)


def test_a_core_the_chip_lacks_is_refused_where_sail_returns_stale_outputs(tmp_path, sail):
    sail._configure(chip="BM1688")
    path = str(make_itm(tmp_path / "blip_itm.bmodel"))
    assert runtime(core=1).load(path).run(itm_feeds(0.5))["output_Gather"][0] == pytest.approx(expected_itm(0.5))
    # the double, like bmrt: the launch on core 2 fails, is logged, the previous outputs come back
    engine = sail.Engine(path, 0, sail.IOMode.SYSIO)
    engine.process("blip_itm", itm_feeds(1.0))
    stale = engine.process("blip_itm", itm_feeds(0.0), core_list=[2])["output_Gather"][0]
    assert stale == pytest.approx(expected_itm(1.0)) and any("launch" in line for line in sail._logged())
    with pytest.raises(BackendError, match="BM1688 with 2 core.s.: there is no core 2"):
        runtime(core=2)
    sail._configure(chip="BM1684X")
    with pytest.raises(BackendError, match="BM1684X with 1 core.s.: there is no core 1"):
        runtime(core=1)


def test_a_tpu_that_does_not_exist_is_one_line(sail):
    with pytest.raises(BackendError) as bad:
        runtime(device=3)
    assert "TPU 3 cannot be opened: SailDeviceError: init device failure" in str(bad.value)
    assert "\n" not in str(bad.value)


def test_ids_beyond_float32_precision_are_refused(tmp_path, sail):
    graph = runtime().load(str(make_itm(tmp_path / "blip_itm.bmodel")))
    feeds = dict(itm_feeds(), input_ids=IDS + (1 << 24))
    with pytest.raises(BackendError, match="cannot carry exactly"):
        graph.run(feeds)


def test_load_errors_are_one_line_backend_errors(tmp_path, sail):
    with pytest.raises(BackendError) as missing:
        runtime().load(str(tmp_path / "nope.bmodel"))
    assert "nope.bmodel" in str(missing.value) and "SailEngineError: invalid bmodel" in str(missing.value)
    assert "\n" not in str(missing.value)
    other_chip = make_itm(tmp_path / "blip_itm_bm1684_f32_1b.bmodel")
    with pytest.raises(BackendError, match="invalid bmodel"):
        runtime().load(str(other_chip))
    with pytest.raises(BackendError, match="has no graph 'blip_cap'"):
        runtime().load(str(make_itm(tmp_path / "blip_itm.bmodel")), "blip_cap")


def test_dynamic_bmodels_are_refused(tmp_path, sail):
    path = make_vision(tmp_path / "vision.bmodel")
    (tmp_path / "vision.bmodel.json").write_text(json.dumps({"dynamic": True}))
    with pytest.raises(BackendError, match="is dynamic"):
        runtime().load(str(path))


def test_missing_sail_is_a_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sophon.sail", None)
    with pytest.raises(BackendError, match="sophon.sail is not importable"):
        runtime()


def _reader_during(graph, feeds):
    """(iterations, longest pause in s) of a pure-Python 'reader' thread while `graph.run` runs."""
    state = {"count": 0, "last": 0.0, "gap": 0.0}
    stop = threading.Event()
    started = threading.Event()

    def reader():
        state["last"] = time.perf_counter()
        started.set()
        while not stop.is_set():
            sum(range(200))  # a little Python work per "frame", needing the GIL
            now = time.perf_counter()
            state["gap"] = max(state["gap"], now - state["last"])
            state["last"] = now
            state["count"] += 1

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert started.wait(5)
    before, state["gap"] = state["count"], 0.0
    graph.run(feeds)
    during, gap = state["count"] - before, state["gap"]
    stop.set()
    thread.join(5)
    return during, gap


def test_tensor_form_lets_readers_run_numpy_form_stalls_them(tmp_path, sail):
    sail._configure(infer_s=0.3)
    path = str(make_itm(tmp_path / "blip_itm.bmodel"))
    tensor_n, tensor_gap = _reader_during(runtime(io="tensor").load(path), itm_feeds())
    numpy_n, numpy_gap = _reader_during(runtime(io="numpy").load(path), itm_feeds())
    print("reader during a 0.3 s inference: tensor form %d iterations, longest pause %.3f s; "
          "numpy form %d iterations, longest pause %.3f s (progress ratio %.1f)"
          % (tensor_n, tensor_gap, numpy_n, numpy_gap, tensor_n / max(numpy_n, 1)))
    assert tensor_n > 0
