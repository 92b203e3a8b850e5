"""The small interface every backend implements: load a graph file, describe its tensors, run it."""
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: static dims are ints, dynamic ones None; dtype is a numpy name."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str


def static_dim(graph: Any, tensor: str, axis: int, rank: Optional[int] = None) -> Optional[int]:
    """The size a graph fixes for one axis of its input `tensor` (static TPU variants), or None
    where that axis is dynamic, the input is missing, or its rank is not `rank` (when given)."""
    spec = graph.inputs.get(tensor)
    if spec is None or len(spec.shape) <= axis or (rank is not None and len(spec.shape) != rank):
        return None
    size = spec.shape[axis]
    return int(size) if size is not None else None


class Graph:
    """One loaded graph. Not thread-safe: each worker thread loads its own."""

    path: str
    inputs: Dict[str, TensorSpec]
    outputs: Dict[str, TensorSpec]

    def run(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run once; returns every output by name. Raises BackendError on failure."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the graph's memory early (sessions also go away with the last reference)."""


class Runtime:
    """A backend: creates graphs for one device with one set of options."""

    name: str = ""

    def load(self, path: str, graph_name: Optional[str] = None) -> Graph:
        """Load a graph file. `graph_name` picks a graph inside a multi-graph file (bmodels)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release device handles the runtime holds (no-op where there are none)."""


class GraphLoader:
    """Loads each graph file once per engine: tasks that share a file (a shared vision encoder)
    share one loaded graph instead of holding two copies of its weights."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._graphs: Dict[Tuple[str, Optional[str]], Graph] = {}

    def load(self, path: str, graph_name: Optional[str] = None) -> Graph:
        """The graph of `path` (and `graph_name`), loaded on first use."""
        key = (path, graph_name)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self.runtime.load(path, graph_name)
            self._graphs[key] = graph
        return graph

    def close(self) -> None:
        """Close every graph loaded through this loader."""
        graphs, self._graphs = list(self._graphs.values()), {}
        for graph in graphs:
            graph.close()
