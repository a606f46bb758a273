"""On-disk cache for generated datasets (``$ACTLAB_CACHE`` or ``~/.cache/actlab``).

Files are written atomically: to a temporary file in the same directory, then moved into place
with :func:`os.replace`, so a concurrent reader sees either nothing or a complete file.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "save_arrays", "load_arrays"]


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: ``path`` if given, else ``$ACTLAB_CACHE``, else ``~/.cache/actlab``."""
    if path is None:
        path = os.environ.get("ACTLAB_CACHE") or Path.home() / ".cache" / "actlab"
    return Path(path).expanduser()


def save_arrays(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """Write ``arrays`` to an ``.npz`` file at ``path`` atomically (tmp file + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_arrays(
    path: str | os.PathLike[str], keys: tuple[str, ...]
) -> dict[str, np.ndarray] | None:
    """Read ``keys`` from an ``.npz`` file; ``None`` if it is missing, unreadable or incomplete."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            if not all(k in z.files for k in keys):
                return None
            return {k: z[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
