"""``actlab data download`` against a local HTTP server serving fabricated official-format files.

Nothing here touches the network: the server listens on 127.0.0.1 (random port, a thread) and
the checksum table is replaced by the SHA-256s of the fabricated files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from actlab.cli import main
from actlab.data import load_dataset
from actlab.data.checksums import SOURCES, RemoteFile, source_for
from actlab.data.download import DownloadError, download, fetch_file

RNG = np.random.default_rng(7)
_ROOT = Path(__file__).resolve().parents[1]
# the project's copy of the official files: ../shared beside the checkout (or beside the
# folder of worktrees)
SHARED_MNIST = next((p for p in (_ROOT.parent / "shared" / "data" / "mnist",
                                 _ROOT.parent.parent / "shared" / "data" / "mnist")
                     if p.is_dir()), _ROOT.parent / "shared" / "data" / "mnist")


# ----------------------------------------------------------------------------------------------
# a small HTTP server with Range support and injectable faults
# ----------------------------------------------------------------------------------------------
class Server:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.fail: dict[str, int] = {}  # path -> HTTP status to answer with
        self.cut_once: set[str] = set()  # paths whose next answer stops half-way
        self.ignore_range = False
        self.ranges: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.ranges.append((name, rng))
                if name in server.fail:
                    self.send_error(server.fail[name])
                    return
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if name in server.cut_once:
                    server.cut_once.discard(name)
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def sums(self) -> dict[str, str]:
        return {k: hashlib.sha256(v).hexdigest() for k, v in self.files.items()}


# ----------------------------------------------------------------------------------------------
# fabricated files in each official format
# ----------------------------------------------------------------------------------------------
def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def _idx_files() -> dict[str, bytes]:
    return {
        "train-images-idx3-ubyte.gz": _idx(RNG.integers(0, 256, (40, 28, 28))),
        "train-labels-idx1-ubyte.gz": _idx(np.arange(40) % 10),
        "t10k-images-idx3-ubyte.gz": _idx(RNG.integers(0, 256, (10, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx(np.arange(10) % 10),
    }


def _pickled(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _cifar10_files() -> dict[str, bytes]:
    def batch(n):
        return _pickled({b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"labels": [int(v) for v in np.arange(n) % 10]})

    members = {f"cifar-10-batches-py/data_batch_{i}": batch(10) for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = batch(10)
    members["cifar-10-batches-py/batches.meta"] = _pickled(
        {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return {"cifar-10-python.tar.gz": _tar(members)}


def _cifar100_files() -> dict[str, bytes]:
    def part(n):
        fine = [int(v) for v in np.arange(n) * 7 % 100]
        return _pickled({b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": fine, b"coarse_labels": [v % 20 for v in fine]})

    return {"cifar-100-python.tar.gz": _tar({
        "cifar-100-python/train": part(100), "cifar-100-python/test": part(20),
        "cifar-100-python/meta": _pickled({b"fine_label_names": [b"f"] * 100}),
    })}


def _mat(n: int) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"X": RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                           "y": (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)})
    return buf.getvalue()


def _svhn_files() -> dict[str, bytes]:
    return {"train_32x32.mat": _mat(20), "test_32x32.mat": _mat(10)}


def _jpeg(colour) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _tiny_files() -> dict[str, bytes]:
    wnids = {"n01": (200, 0, 0), "n02": (0, 200, 0)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        root = "tiny-imagenet-200/"
        zf.writestr(root + "wnids.txt", "\n".join(wnids) + "\n")
        for w, c in wnids.items():
            for i in range(3):
                zf.writestr(f"{root}train/{w}/images/{w}_{i}.JPEG", _jpeg(c))
        lines = []
        for i, w in enumerate(["n02", "n01"]):
            zf.writestr(f"{root}val/images/val_{i}.JPEG", _jpeg(wnids[w]))
            lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
        zf.writestr(root + "val/val_annotations.txt", "\n".join(lines) + "\n")
    return {"tiny-imagenet-200.zip": buf.getvalue()}


FABRICATED = {
    "mnist": _idx_files, "fashion_mnist": _idx_files, "cifar10": _cifar10_files,
    "cifar100": _cifar100_files, "svhn": _svhn_files, "tiny_imagenet": _tiny_files,
}


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(files: dict[str, bytes]) -> Server:
        servers.append(Server(files))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".part") or ".unpack-" in p.name)


# ----------------------------------------------------------------------------------------------
# success: every dataset lands where its reader looks
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FABRICATED))
def test_download_places_data_the_reader_loads(name: str, serve, tmp_path: Path) -> None:
    srv = serve(FABRICATED[name]())
    folder = download(name, tmp_path, base_url=srv.url, checksums=srv.sums(), progress=False)
    assert folder == tmp_path / source_for(name).target and folder.is_dir()
    splits = load_dataset(name, data_dir=tmp_path, val_fraction=0.2)
    assert len(splits.train) > 0 and len(splits.test) > 0
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / ".downloads").exists() or not any((tmp_path / ".downloads").iterdir())
    # a second call finds everything in place and fetches nothing
    n = len(srv.ranges)
    download(name, tmp_path, base_url=srv.url, checksums=srv.sums(), progress=False)
    assert len(srv.ranges) == n


def test_downloaded_idx_bytes_are_the_served_bytes(serve, tmp_path: Path) -> None:
    files = _idx_files()
    srv = serve(files)
    folder = download("mnist", tmp_path, base_url=srv.url, checksums=srv.sums(), progress=False)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data


# ----------------------------------------------------------------------------------------------
# resume, mismatch, server errors
# ----------------------------------------------------------------------------------------------
def test_resume_after_interrupted_download(serve, tmp_path: Path) -> None:
    files = _cifar10_files()
    srv = serve(files)
    name = "cifar-10-python.tar.gz"
    srv.cut_once.add(name)
    with pytest.raises(DownloadError, match="resume") as err:
        download("cifar10", tmp_path, base_url=srv.url, checksums=srv.sums(), progress=False)
    assert "\n" not in str(err.value)
    part = tmp_path / ".downloads" / f".{name}.part"
    half = len(files[name]) // 2
    assert part.stat().st_size == half
    assert not (tmp_path / "cifar-10-batches-py").exists()
    download("cifar10", tmp_path, base_url=srv.url, checksums=srv.sums(), progress=False)
    assert srv.ranges[-1] == (name, f"bytes={half}-")  # only the rest was asked for
    assert load_dataset("cifar10", data_dir=tmp_path).num_classes == 10
    assert _leftovers(tmp_path) == []


def test_resume_when_server_ignores_range(serve, tmp_path: Path) -> None:
    files = _svhn_files()
    srv = serve(files)
    srv.cut_once.add("train_32x32.mat")
    with pytest.raises(DownloadError, match="resume"):
        download("svhn", tmp_path, base_url=srv.url, checksums=srv.sums(), progress=False)
    srv.ignore_range = True  # answers 200 with the whole file: start again, not append
    folder = download("svhn", tmp_path, base_url=srv.url, checksums=srv.sums(), progress=False)
    assert (folder / "train_32x32.mat").read_bytes() == files["train_32x32.mat"]


def test_checksum_mismatch_leaves_nothing(serve, tmp_path: Path) -> None:
    srv = serve(_tiny_files())
    wrong = {"tiny-imagenet-200.zip": "0" * 64}
    with pytest.raises(DownloadError) as err:
        download("tiny_imagenet", tmp_path, base_url=srv.url, checksums=wrong, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "checksum mismatch for tiny-imagenet-200.zip" in msg
    assert srv.sums()["tiny-imagenet-200.zip"] in msg and "0" * 64 in msg
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert not (tmp_path / "tiny-imagenet-200").exists()


def test_mismatch_of_one_file_keeps_the_verified_others(serve, tmp_path: Path) -> None:
    srv = serve(_idx_files())
    sums = srv.sums()
    sums["t10k-images-idx3-ubyte.gz"] = "f" * 64
    with pytest.raises(DownloadError, match="t10k-images"):
        download("fashion_mnist", tmp_path, base_url=srv.url, checksums=sums, progress=False)
    folder = tmp_path / "fashion_mnist"
    assert not (folder / "t10k-images-idx3-ubyte.gz").exists()
    assert _leftovers(tmp_path) == []


def test_server_error_is_one_line_and_writes_nothing(serve, tmp_path: Path) -> None:
    srv = serve(_cifar100_files())
    srv.fail["cifar-100-python.tar.gz"] = 500
    with pytest.raises(DownloadError) as err:
        download("cifar100", tmp_path, base_url=srv.url, checksums=srv.sums(), progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "HTTP 500" in msg and "cifar-100-python.tar.gz" in msg
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_next_host_is_tried_after_a_failing_one(serve, tmp_path: Path) -> None:
    data = b"payload" * 1000
    bad, good = serve({}), serve({"f.bin": data})
    spec = RemoteFile("f.bin", sha256=hashlib.sha256(data).hexdigest(),
                      md5=hashlib.md5(data).hexdigest())
    path = fetch_file((bad.url, good.url), spec, tmp_path, progress=False)
    assert path.read_bytes() == data
    assert bad.ranges == [("f.bin", None)]


def test_md5_and_gunzipped_content_are_checked(serve, tmp_path: Path) -> None:
    raw = b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"abc"
    data = gzip.compress(raw)
    srv = serve({"x.gz": data})
    sha = hashlib.sha256(data).hexdigest()
    ok = RemoteFile("x.gz", sha256=sha, md5=hashlib.md5(data).hexdigest(),
                    content_sha256=hashlib.sha256(raw).hexdigest())
    assert fetch_file((srv.url,), ok, tmp_path / "a", progress=False).read_bytes() == data
    for bad in (RemoteFile("x.gz", sha256=sha, md5="0" * 32),
                RemoteFile("x.gz", sha256=sha, content_sha256="1" * 64)):
        with pytest.raises(DownloadError, match="mismatch"):
            fetch_file((srv.url,), bad, tmp_path / "b", progress=False)
        assert list((tmp_path / "b").iterdir()) == []


def test_archive_members_outside_the_folder_are_refused(serve, tmp_path: Path) -> None:
    srv = serve({"cifar-10-python.tar.gz": _tar({"cifar-10-batches-py/x": b"1",
                                                  "../escaped": b"2"})})
    data_dir = tmp_path / "data"
    with pytest.raises(DownloadError, match="refusing archive member"):
        download("cifar10", data_dir, base_url=srv.url, checksums=srv.sums(), progress=False)
    assert not (tmp_path / "escaped").exists()
    assert not (data_dir / "cifar-10-batches-py").exists() and _leftovers(data_dir) == []


# ----------------------------------------------------------------------------------------------
# the command line (overrides through the environment)
# ----------------------------------------------------------------------------------------------
def test_cli_download_and_mismatch(serve, tmp_path: Path, monkeypatch, capsys) -> None:
    srv = serve(_idx_files())
    sums = tmp_path / "sums.json"
    sums.write_text(__import__("json").dumps(srv.sums()))
    monkeypatch.setenv("ACTLAB_DOWNLOAD_URL", srv.url)
    monkeypatch.setenv("ACTLAB_DOWNLOAD_CHECKSUMS", str(sums))
    data = tmp_path / "data"
    assert main(["data", "download", "mnist", "--data-dir", str(data), "--no-progress"]) == 0
    assert "ready in" in capsys.readouterr().out
    assert load_dataset("mnist", data_dir=data).sizes["test"] == 10
    monkeypatch.setenv("ACTLAB_DOWNLOAD_CHECKSUMS", '{"tiny-imagenet-200.zip": "' + "a" * 64
                       + '"}')
    srv.files.update(_tiny_files())
    assert main(["data", "download", "tiny-imagenet", "--data-dir", str(data),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("actlab data download: error: checksum mismatch") and "\n" not in err
    assert main(["data", "download", "imagenet", "--data-dir", str(data)]) == 1
    assert "downloadable: cifar10" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# the table itself
# ----------------------------------------------------------------------------------------------
def test_checksum_table_is_well_formed() -> None:
    assert sorted(SOURCES) == sorted(FABRICATED)
    for src in SOURCES.values():
        assert src.urls and all(u.startswith("http") and u.endswith("/") for u in src.urls)
        assert src.kind in ("files", "tar", "zip")
        for f in src.files:
            assert f.sha256 is not None or src.name == "tiny_imagenet", f.name
            for value, n in ((f.sha256, 64), (f.content_sha256, 64), (f.md5, 32)):
                assert value is None or re.fullmatch(f"[0-9a-f]{{{n}}}", value), f.name


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist (the project's "
                    "copy of the official MNIST files); a user checkout has none")
def test_mnist_content_checksums_match_the_real_files() -> None:
    for f in SOURCES["mnist"].files:
        raw = gzip.decompress((SHARED_MNIST / f.name).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == f.content_sha256, f.name


def test_download_module_is_not_imported_by_training_code() -> None:
    code = ("import sys, actlab, actlab.data, actlab.train, actlab.sweep, actlab.cli; "
            "from actlab.sweep.execute import execute_cell; "
            "print('actlab.data.download' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip() == "False"


def test_missing_files_error_names_the_download_command(tmp_path: Path) -> None:
    from actlab.data import DatasetError

    with pytest.raises(DatasetError) as err:
        load_dataset("cifar10", data_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and f"`actlab data download cifar10 --data-dir {tmp_path}`" in msg
