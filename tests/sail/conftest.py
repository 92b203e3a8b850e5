"""Tests of the SOPHON backend on the sophon.sail test double (tests/fakes/sophon/sail.py).

The double is importable only inside these tests: an autouse fixture puts tests/fakes on sys.path
and imports a fresh `sophon.sail` for every test (so profile changes never leak), then removes both
again; subprocesses get it through `fake_env()`.
"""
import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "fakes"
_MODULES = ("sophon.sail", "sophon")
CHIP = "bm1684x"


def _forget_double() -> None:
    for name in _MODULES:
        sys.modules.pop(name, None)


def fake_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a subprocess that should import the double (and this checkout)."""
    env = dict(os.environ)
    parts = [str(FAKES), str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def double_on_path() -> Iterator[object]:
    """The double importable for a block (session fixtures run before the autouse fixture)."""
    sys.path.insert(0, str(FAKES))
    _forget_double()
    try:
        import sophon.sail as module

        yield module
    finally:
        sys.path.remove(str(FAKES))
        _forget_double()


@pytest.fixture(autouse=True)
def sail(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A fresh `sophon.sail` double for each test, with the environment's default profile."""
    before = {k for k in os.environ if k.startswith("SAIL_DECODER_")}
    monkeypatch.syspath_prepend(str(FAKES))
    _forget_double()
    import sophon.sail as module

    yield module
    _forget_double()
    for key in [k for k in os.environ if k.startswith("SAIL_DECODER_") and k not in before]:
        del os.environ[key]


# Tiny random BLIP packages for the sail runtime, built once per session (about 30 s).


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    from tests.models import make_tiny_checkpoints

    return make_tiny_checkpoints(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="session")
def seed_onnx(checkpoints, tmp_path_factory):
    """`blipd export --layout seed`: the five seed graphs as ONNX (backend onnxruntime)."""
    from blip.export.seed import export_seed_package

    return export_seed_package(tmp_path_factory.mktemp("seed") / "onnx", **checkpoints)


@pytest.fixture(scope="session")
def seed_package(seed_onnx, tmp_path_factory):
    """The seed ONNX graphs under the seed's bmodel names (BM1684X/, bert-base-uncased/) -> package_seed."""
    from blip.package import ModelPackage
    from blip.package_seed import package_seed

    onnx_pkg = seed_onnx
    models = tmp_path_factory.mktemp("models")
    (models / CHIP.upper()).mkdir()
    for graph in sorted(onnx_pkg.glob("*/*.onnx")):
        shutil.copy(str(graph), str(models / CHIP.upper() / ("%s_%s_f32_1b.bmodel" % (graph.stem, CHIP))))
    shutil.copytree(str(onnx_pkg / "tokenizer"), str(models / "bert-base-uncased"))
    with double_on_path():  # package_seed reads each graph's image size through sail
        package_seed(models, CHIP)
    return ModelPackage.load(str(models))


@pytest.fixture(scope="session")
def split_package(checkpoints, tmp_path_factory):
    """Split export -> static shapes (1 prompt, 1 question) -> "compiled" .bmodel files -> sail manifest."""
    from blip.export.api import export_package
    from blip.export.seed import bmodel_package, static_split_package
    from blip.package import ModelPackage

    root = tmp_path_factory.mktemp("split")
    static = static_split_package(export_package(root / "onnx", verify=False, **checkpoints), root / "static")
    compiled = root / "bmodels"
    for graph in sorted(static.glob("*/*.onnx")):
        (compiled / graph.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(str(graph), str(compiled / graph.parent.name / (graph.stem + ".bmodel")))
    bmodel_package(static, compiled, CHIP)
    return ModelPackage.load(str(compiled))
