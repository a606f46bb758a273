"""The process state a cell runs under, set the same way in every process that runs one.

A cell's numbers depend on the torch intra-op thread count (reductions are split differently)
and on the backend of the actlab layers (eager or compiled math), and its layers, model and
dataset may come from plug-ins. :func:`cell_environment` pins
``torch.set_num_threads(cell.threads)`` and the layer backend ``cell.layer_backend``, and loads
the cell's plug-ins before it trains, whether it runs in the ``actlab run`` process, a spawned
worker (``--workers N``) or a Ray task, so the same cell gives the same numbers in each; the
previous thread count and backend are restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from actlab.registry import load_plugins
from actlab.sweep.grid import Cell

__all__ = ["cell_environment"]


@contextlib.contextmanager
def cell_environment(cell: Cell) -> Iterator[None]:
    """Load ``cell.imports`` (and the installed plug-in entry points), run the body with
    ``cell.threads`` torch threads and the ``cell.layer_backend`` layer backend, then restore
    both."""
    import torch

    from actlab.functional import backends

    load_plugins(cell.imports)
    previous = torch.get_num_threads()
    torch.set_num_threads(cell.threads)
    try:
        with backends.backend(cell.layer_backend):
            yield
    finally:
        torch.set_num_threads(previous)
