"""Fixtures of the blip unit tests: one tiny toy package per session (tiny.py) and a CPU runtime."""
import pytest

from blip.package import ModelPackage
from blip.runtime import create_runtime
from tests.blip import tiny


@pytest.fixture(scope="session")
def weights() -> tiny.Weights:
    return tiny.Weights()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, weights) -> str:
    return tiny.make_package(str(tmp_path_factory.mktemp("pkg") / "tiny"), weights)


@pytest.fixture(scope="session")
def package(tiny_dir) -> ModelPackage:
    return ModelPackage.load(tiny_dir)


@pytest.fixture(scope="session")
def runtime():
    return create_runtime("onnxruntime", device=None, threads=1)
