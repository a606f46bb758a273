"""Locating dataset files under a user's ``data_dir`` and opening them with one-line errors."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

from actlab.data.base import DatasetError
from actlab.data.cache import cache_dir

__all__ = ["default_data_dir", "find_root", "find_file", "read_bytes"]


def default_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir`` if given, else ``$ACTLAB_DATA``, else ``<cache dir>/data``."""
    if data_dir is None:
        data_dir = os.environ.get("ACTLAB_DATA") or cache_dir() / "data"
    return Path(data_dir).expanduser()


def find_root(
    dataset: str,
    data_dir: str | os.PathLike[str] | None,
    subdirs: Sequence[str],
    marker: Sequence[str],
    expected: str,
) -> Path:
    """The first of ``data_dir/<subdir>`` (``""`` = ``data_dir`` itself) holding a ``marker`` file.

    ``marker`` lists alternative names (e.g. with and without ``.gz``). Raises
    :class:`DatasetError` naming the first expected path when none matches.
    """
    root = default_data_dir(data_dir)
    hint = "" if data_dir is not None else "; pass data_dir=... or set $ACTLAB_DATA"
    if not root.is_dir():
        raise DatasetError(
            f"{dataset}: data_dir {root} is not a directory (expected {expected}){hint}"
        )
    for sub in subdirs:
        d = root / sub if sub else root
        if any((d / m).is_file() for m in marker):
            return d
    first = root / subdirs[0] / marker[0] if subdirs[0] else root / marker[0]
    from actlab.data.checksums import SOURCES  # the table only; nothing is downloaded here

    if dataset in SOURCES:
        where = "" if data_dir is None else f" --data-dir {root}"
        hint += f"; `actlab data download {dataset}{where}` fetches it"
    raise DatasetError(f"{dataset}: missing file {first} (expected {expected}){hint}")


def find_file(dataset: str, folder: Path, names: Sequence[str], expected: str) -> Path:
    """The first existing ``folder/<name>``; :class:`DatasetError` naming ``names[0]`` if none."""
    for n in names:
        if (folder / n).is_file():
            return folder / n
    raise DatasetError(f"{dataset}: missing file {folder / names[0]} (expected {expected})")


def read_bytes(dataset: str, path: Path) -> bytes:
    """Contents of ``path``, transparently gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError as err:
        raise DatasetError(f"{dataset}: missing file {path}") from err
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"{dataset}: cannot read {path}: {err} (corrupt gzip?)") from err
    return raw
