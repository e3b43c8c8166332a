"""Connected groups of tiles: one implementation (SciPy's) for planning and matching."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = ["component_labels"]


def component_labels(n: int, edges: Iterable[tuple[int, int]]) -> np.ndarray:
    """Label each of ``n`` nodes with the lowest node index of its connected component.

    Parameters
    ----------
    n : int
        Number of nodes, ``0 .. n - 1``.
    edges : iterable of (int, int)
        Undirected links between nodes.

    Returns
    -------
    ndarray of int, shape (n,)
        Deterministic labels (independent of the order of ``edges``): two nodes share a
        label exactly when a path of edges joins them.
    """
    pairs = np.asarray(list(edges), dtype=np.int64).reshape(-1, 2)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
    )
    _, raw = connected_components(graph, directed=False)
    # SciPy numbers components in its own order; name each by its lowest node instead.
    lowest = np.full(int(raw.max()) + 1, n, dtype=np.int64)
    np.minimum.at(lowest, raw, np.arange(n, dtype=np.int64))
    return lowest[raw]
