"""Backends behind one small interface (base.py); each SDK is imported only when its backend is chosen.

Backend names: "onnxruntime", "sail", and "auto" (see `resolve_backend`).
"""
import importlib
import importlib.util
import os
from typing import Any, Optional, Tuple

from blip.errors import BackendError
from blip.runtime.base import Graph, GraphLoader, Runtime, TensorSpec

__all__ = ["BACKENDS", "Graph", "GraphLoader", "Runtime", "TensorSpec", "create_runtime", "resolve_backend"]

BACKENDS = ("onnxruntime", "sail")
# Device nodes of the SOPHON driver: PCIe cards and SoC boxes respectively.
SOPHON_DEVICES = ("/dev/bm-sophon0", "/dev/bm-tpu0")


def _sail_installed() -> bool:
    """Whether sophon.sail could be imported, without importing it (find_spec only loads `sophon`)."""
    try:
        return importlib.util.find_spec("sophon.sail") is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(name: str, package: Any = None, devices: Tuple[str, ...] = SOPHON_DEVICES) -> str:
    """Map "auto" to a concrete backend; other names are checked and returned unchanged.

    With `package` (a ModelPackage) whose tasks all name one backend, that backend: the package's
    files decide what can run them. Otherwise "sail" when sophon.sail is installed and a SOPHON
    device node exists, else "onnxruntime".
    """
    if name == "auto":
        wanted = {spec.backend for spec in package.tasks.values()} if package is not None else set()
        if len(wanted) == 1:
            return wanted.pop()
        if any(os.path.exists(dev) for dev in devices) and _sail_installed():
            return "sail"
        return "onnxruntime"
    if name not in BACKENDS:
        raise BackendError("unknown backend %r (backends are auto, %s)" % (name, ", ".join(BACKENDS)))
    return name


def create_runtime(name: str, device: Optional[int] = 0, threads: Optional[int] = None, **options: Any) -> Runtime:
    """Create the runtime `name` ("auto" resolved first). Raises BackendError with one line when
    the backend's SDK is missing or an option is wrong.

    "sail" loads `blip.runtime.sail`, which must define `SailRuntime(device=..., **options)`;
    `threads` does not apply to it.
    """
    backend = resolve_backend(name)
    if backend == "onnxruntime":
        from blip.runtime.onnxruntime import OrtRuntime

        return OrtRuntime(device=device, threads=threads, **options)
    try:
        module = importlib.import_module("blip.runtime.sail")
    except ImportError as exc:
        raise BackendError("backend sail is unavailable: %s" % exc) from None
    return module.SailRuntime(device=0 if device is None else device, **options)
