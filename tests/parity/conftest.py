"""Session fixtures of the parity tests: tiny random BLIP checkpoints and the package exported from them."""
from pathlib import Path
from typing import Dict

import pytest

from tests.models import make_tiny_checkpoints


@pytest.fixture(scope="session", autouse=True)
def _torch_one_thread():
    """Tiny models on a shared 2-core box: one intra-op thread is ~100x faster than spinning two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> Dict[str, Path]:
    """{task: Hugging Face checkpoint folder} for caption, match and answer (tiny, random, seeded)."""
    return make_tiny_checkpoints(tmp_path_factory.mktemp("tiny-hf"))


@pytest.fixture(scope="session")
def tiny_package(tiny_checkpoints, tmp_path_factory) -> Path:
    """The model package exported (and verified) from `tiny_checkpoints`, all three tasks."""
    from blip.export.api import export_package

    out = tmp_path_factory.mktemp("tiny-pkg") / "tiny"
    return export_package(out, name="tiny", **tiny_checkpoints)


@pytest.fixture(scope="session")
def ort_runtime():
    """ONNX Runtime on the CPU (device None), one thread: the parity tests' one backend."""
    from blip.runtime import create_runtime

    return create_runtime(name="onnxruntime", device=None, threads=1)


@pytest.fixture(scope="session")
def loaded_package(tiny_package):
    from blip.package import ModelPackage

    return ModelPackage.load(str(tiny_package))
