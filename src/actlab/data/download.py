"""``actlab data download NAME``: fetch a dataset's official files, verify them, place them.

Only this module (and only when called, from ``actlab data download``) touches the network;
nothing imports it at import or training time.

For each file of the dataset's :class:`~actlab.data.checksums.DatasetSource`:

1. The bytes are streamed into ``<folder>/.<name>.part`` with a progress bar. When that file is
   already there (an interrupted download), the request asks for the rest with an HTTP
   ``Range: bytes=<size>-`` header and appends (a server that ignores ranges answers 200 and
   the file is started again).
2. The complete file is checked against every digest the table has (SHA-256, and MD5 /
   the SHA-256 of the gunzipped content where published). On a mismatch the partial file is
   deleted and :class:`DownloadError` says which file, which digest and both values.
3. The verified file is flushed to disk (``fsync``) and renamed into place, so a reader sees
   either nothing or a complete, verified file.

Archives (CIFAR ``.tar.gz``, Tiny ImageNet ``.zip``) are then unpacked into a temporary folder
beside the target (members that would land outside it are refused) and the finished folder is
renamed to the name the readers expect (``cifar-10-batches-py``, ``tiny-imagenet-200``, ...).
A failure at any step removes what that step wrote.

Tests and mirrors: ``base_url`` (or ``$ACTLAB_DOWNLOAD_URL``) replaces the list of hosts, and
``checksums`` (or ``$ACTLAB_DOWNLOAD_CHECKSUMS``, a JSON object ``{file name: sha256}`` or the
path of a file holding one) replaces the table's digests by the given SHA-256s.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from http.client import HTTPException
from pathlib import Path

from actlab.data.checksums import DatasetSource, RemoteFile, source_for
from actlab.data.files import default_data_dir

__all__ = ["DownloadError", "download", "fetch_file", "verify_file", "resolve_source"]

URL_ENV = "ACTLAB_DOWNLOAD_URL"
CHECKSUMS_ENV = "ACTLAB_DOWNLOAD_CHECKSUMS"
_CHUNK = 1 << 20
_USER_AGENT = "actlab-download/1 (+https://pypi.org/project/actlab)"


class DownloadError(RuntimeError):
    """A download failed; the message is one line naming the URL or file."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


# ----------------------------------------------------------------------------------------------
# checksums
# ----------------------------------------------------------------------------------------------
def _digests(path: Path, want_content: bool) -> dict[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            sha.update(block)
            md5.update(block)
    out = {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}
    if want_content:
        content = hashlib.sha256()
        try:
            with gzip.open(path, "rb") as g:
                for block in iter(lambda: g.read(_CHUNK), b""):
                    content.update(block)
        except (OSError, EOFError) as err:
            raise DownloadError(f"{path}: not a valid gzip file ({err})") from err
        out["content_sha256"] = content.hexdigest()
    return out


def verify_file(path: Path, spec: RemoteFile) -> str | None:
    """None when ``path`` matches every digest of ``spec``, else a one-line description."""
    got = _digests(path, spec.content_sha256 is not None)
    for kind in ("sha256", "md5", "content_sha256"):
        want = getattr(spec, kind)
        if want is not None and got[kind] != want.lower():
            label = "SHA-256 of the gunzipped content" if kind == "content_sha256" else kind
            return f"{label} is {got[kind]}, expected {want.lower()}"
    return None


# ----------------------------------------------------------------------------------------------
# one file
# ----------------------------------------------------------------------------------------------
def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _stream(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size); fsync at the end."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the part file is complete
            return
        raise
    with response:
        status = response.status
        if offset and status != 206:  # the server ignored the range: start again
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        mode = "ab" if offset else "wb"
        with part.open(mode) as f, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.lstrip(".").removesuffix(".part"), disable=not progress,
            file=sys.stderr, leave=False,
        ) as bar:
            if mode == "wb":
                f.truncate(0)
            try:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
            finally:
                f.flush()
                os.fsync(f.fileno())
        received = part.stat().st_size
        if total is not None and received < total:
            raise DownloadError(
                f"{url}: connection closed after {received} of {total} bytes; "
                f"run the same command again to resume from {part}"
            )


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fetch_file(
    bases: tuple[str, ...],
    spec: RemoteFile,
    folder: Path,
    *,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``spec`` into ``folder`` (resuming, verified, renamed into place); its path.

    A verified file already in place is kept. Hosts in ``bases`` are tried in order; one that
    fails to answer (HTTP error, refused connection, timeout) passes the turn to the next.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / spec.name
    if final.is_file():
        if verify_file(final, spec) is None:
            return final
        final.unlink()  # a wrong file where ours belongs: fetch it again
    part = folder / f".{spec.name}.part"
    failures: list[str] = []
    for base in bases:
        url = base.rstrip("/") + "/" + spec.name
        try:
            _stream(url, part, progress, timeout)
            break
        except urllib.error.HTTPError as err:
            failures.append(f"{url}: HTTP {err.code} {err.reason}")
        except (TimeoutError, urllib.error.URLError, ConnectionError, HTTPException) as err:
            reason = getattr(err, "reason", err)
            if part.exists() and part.stat().st_size:
                raise DownloadError(
                    f"{url}: download interrupted ({reason}); run the same command again to "
                    f"resume from {part} ({part.stat().st_size} bytes so far)"
                ) from err
            failures.append(f"{url}: {reason}")
    else:
        raise DownloadError("could not download " + spec.name + ": " + "; ".join(failures))
    problem = verify_file(part, spec)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"checksum mismatch for {spec.name} from {url}: {problem}; the file was deleted "
            "(nothing was placed), run again to retry"
        )
    os.replace(part, final)
    _fsync_dir(folder)
    return final


# ----------------------------------------------------------------------------------------------
# archives
# ----------------------------------------------------------------------------------------------
def _inside(root: Path, name: str) -> bool:
    target = (root / name).resolve()
    return target == root or root in target.parents


def _unpack(archive: Path, kind: str, into: Path) -> None:
    root = into.resolve()
    if kind == "tar":
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                if not _inside(root, m.name) or m.issym() or m.islnk() or m.isdev():
                    raise DownloadError(f"{archive}: refusing archive member {m.name!r}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(into, members=members)
    elif kind == "zip":
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not _inside(root, name):
                    raise DownloadError(f"{archive}: refusing archive member {name!r}")
            zf.extractall(into)
    else:  # pragma: no cover - table entries are checked by tests
        raise ValueError(f"unknown archive kind {kind!r}")


def _place_archive(archive: Path, src: DatasetSource, data_dir: Path) -> Path:
    target = data_dir / src.target
    tmp = Path(tempfile.mkdtemp(prefix=f".{src.target}.unpack-", dir=data_dir))
    try:
        try:
            _unpack(archive, src.kind, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as err:
            raise DownloadError(f"cannot unpack {archive}: {err}") from err
        inner = tmp / src.target
        if not inner.is_dir():
            found = sorted(p.name for p in tmp.iterdir())
            raise DownloadError(
                f"{archive} holds {found}, not the expected folder {src.target!r}"
            )
        os.replace(inner, target)
        _fsync_dir(data_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------------------------
# a dataset
# ----------------------------------------------------------------------------------------------
def _checksum_override(checksums: Mapping[str, str] | str | None) -> dict[str, str] | None:
    if checksums is None:
        checksums = os.environ.get(CHECKSUMS_ENV) or None
    if checksums is None or isinstance(checksums, Mapping):
        return None if checksums is None else {str(k): str(v) for k, v in checksums.items()}
    text = checksums
    if not text.lstrip().startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as err:
            raise DownloadError(f"{CHECKSUMS_ENV}: cannot read {checksums}: {err}") from err
    try:
        table = json.loads(text)
    except json.JSONDecodeError as err:
        raise DownloadError(f"{CHECKSUMS_ENV}: not a JSON object of sha256s ({err})") from err
    if not isinstance(table, dict):
        raise DownloadError(f"{CHECKSUMS_ENV}: expected a JSON object {{file name: sha256}}")
    return {str(k): str(v) for k, v in table.items()}


def resolve_source(
    name: str,
    base_url: str | None = None,
    checksums: Mapping[str, str] | str | None = None,
) -> DatasetSource:
    """The dataset's source with the test/mirror overrides of the module docstring applied."""
    try:
        src = source_for(name)
    except KeyError as err:
        raise DownloadError(err.args[0]) from None
    base_url = base_url or os.environ.get(URL_ENV) or None
    if base_url:
        src = replace(src, urls=(base_url,))
    table = _checksum_override(checksums)
    if table is not None:
        files = []
        for f in src.files:
            if f.name not in table and not f.optional:
                raise DownloadError(f"checksum override lacks an entry for {f.name}")
            files.append(RemoteFile(f.name, sha256=table.get(f.name), optional=f.optional))
        src = replace(src, files=tuple(files))
    return src


def download(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    extra: bool = False,
    keep_archive: bool = False,
    progress: bool = True,
    base_url: str | None = None,
    checksums: Mapping[str, str] | str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download dataset ``name`` into ``data_dir`` in the layout its reader expects.

    Args:
        name: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn`` or
            ``tiny_imagenet`` (aliases accepted).
        data_dir: the data folder (default ``$ACTLAB_DATA`` or ``~/.cache/actlab/data``); the
            same folder ``load_dataset`` and ``actlab run --data-dir`` read.
        extra: also fetch optional files (SVHN's ``extra_32x32.mat``, 1.3 GB).
        keep_archive: keep a downloaded archive (in ``data_dir/.downloads``) after unpacking.
        progress: show a tqdm progress bar per file.
        base_url, checksums: overrides for tests and mirrors (module docstring).
        timeout: seconds to wait for a server to answer.

    Returns:
        the folder that now holds the data (``data_dir/mnist``, ``data_dir/cifar-10-batches-py``).
    """
    src = resolve_source(name, base_url, checksums)
    root = default_data_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    wanted = [f for f in src.files if extra or not f.optional]
    if src.kind == "files":
        folder = root / src.target
        for f in wanted:
            fetch_file(src.urls, f, folder, progress=progress, timeout=timeout)
        return folder
    target = root / src.target
    if target.is_dir():
        return target  # unpacked earlier (renamed into place only when complete)
    downloads = root / ".downloads"
    for f in wanted:
        archive = fetch_file(src.urls, f, downloads, progress=progress, timeout=timeout)
        _place_archive(archive, src, root)
        if not keep_archive:
            archive.unlink(missing_ok=True)
    return target
