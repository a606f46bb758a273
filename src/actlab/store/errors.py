"""Errors of the results store."""

from __future__ import annotations

__all__ = ["StoreError", "LeaseLost"]


class StoreError(RuntimeError):
    """The store file cannot be used: missing, not SQLite, damaged, wrong schema, unknown cell.
    The message is one line and names the file or the cell."""


class LeaseLost(RuntimeError):
    """This process no longer holds the lease of a cell (it expired and another process took
    the cell over); the cell must not be written to by this process any more."""
