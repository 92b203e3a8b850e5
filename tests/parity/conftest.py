"""Session fixtures of the parity tests. `tiny_package` itself comes from tests/conftest.py."""
from pathlib import Path
from typing import Dict

import pytest


@pytest.fixture(scope="session", autouse=True)
def _torch_one_thread():
    """Tiny models on a shared 2-core box: one intra-op thread is ~100x faster than spinning two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_checkpoints(tiny_package) -> Dict[str, Path]:
    """{task: Hugging Face checkpoint folder} the session's `tiny_package` (tests/conftest.py) was
    exported from, read from its manifest's `source`."""
    from tests.models import checkpoints_of

    return checkpoints_of(tiny_package)


@pytest.fixture(scope="session")
def ort_runtime():
    """ONNX Runtime on the CPU (device None), one thread: the parity tests' one backend."""
    from blip.runtime import create_runtime

    return create_runtime(name="onnxruntime", device=None, threads=1)


@pytest.fixture(scope="session")
def loaded_package(tiny_package):
    from blip.package import ModelPackage

    return ModelPackage.load(str(tiny_package))
