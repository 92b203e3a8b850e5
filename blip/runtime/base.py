"""The small interface every backend implements: load a graph file, describe its tensors, run it."""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: static dims are ints, dynamic ones None; dtype is a numpy name."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str


class Graph:
    """One loaded graph. Not thread-safe: each worker thread loads its own."""

    path: str
    inputs: Dict[str, TensorSpec]
    outputs: Dict[str, TensorSpec]

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run once; returns every output by name. Raises BackendError on failure."""
        raise NotImplementedError


class Runtime:
    """A backend: creates graphs for one device with one set of options."""

    name: str = ""

    def load(self, path: str, graph_name: Optional[str] = None) -> Graph:
        """Load a graph file. `graph_name` picks a graph inside a multi-graph file (bmodels)."""
        raise NotImplementedError
