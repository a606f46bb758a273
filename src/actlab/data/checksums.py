"""Where each downloadable dataset lives and the checksums its files must have.

Only the locations the dataset authors publish are listed first; a mirror follows only where
the official host is known to refuse downloads (MNIST), and every file is checked against the
digests below whichever host served it, so a mirror cannot change what lands on disk.

Sources of the digests (checked when this table was written, December 2026):

================  ============================================================================
dataset           digest and where it is published
================  ============================================================================
mnist             SHA-256 of the four ``.gz`` files as served: TensorFlow Datasets'
                  ``url_checksums/mnist.txt`` and torchvision's prototype ``mnist.py`` (the
                  same values; sizes 9,912,422 / 28,881 / 1,648,877 / 4,542 bytes). SHA-256
                  of the *uncompressed* IDX files: this project's ``shared/data/README.md``
                  (checked against the files there); both are verified.
fashion_mnist     SHA-256: TensorFlow Datasets ``url_checksums/fashion_mnist.txt`` (the same
                  values appear in torchvision's prototype datasets); the authors' README
                  publishes MD5s (``8d4fb7e6…`` for train images), which agree.
cifar10/100       SHA-256 of the *python version* archives: the Keras source
                  (``keras/datasets/cifar10.py`` / ``cifar100.py``, ``file_hash``). The
                  authors' page publishes MD5s (``c58f3010…`` / ``eb9058c3…``), also checked.
svhn              SHA-256: TensorFlow Datasets ``url_checksums/svhn_cropped.txt`` and
                  torchvision's prototype ``svhn.py`` (identical); MD5s from torchvision.
tiny_imagenet     **No SHA-256 from a trustworthy public source was found.** The archive is
                  verified by the MD5 ``90528d7c…`` that torchvision-style loaders (Avalanche
                  and others) publish; MD5 detects corruption, not a deliberate forgery.
================  ============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RemoteFile", "DatasetSource", "SOURCES", "source_for"]


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    Attributes:
        name: file name on the server and in the download folder.
        sha256: SHA-256 of the bytes as served (None where no trustworthy value exists).
        md5: MD5 of the bytes as served (checked too when given).
        content_sha256: SHA-256 of the gunzipped content (``.gz`` files), checked as well.
        optional: fetched only when asked for (SVHN's 1.3 GB ``extra_32x32.mat``).
    """

    name: str
    sha256: str | None = None
    md5: str | None = None
    content_sha256: str | None = None
    optional: bool = False


@dataclass(frozen=True)
class DatasetSource:
    """A downloadable dataset.

    Attributes:
        name: the registry name (``actlab list datasets``).
        urls: base URLs tried in order (official first); a file's URL is ``base + file.name``.
        files: the files to fetch.
        kind: ``"files"`` (placed as they are into ``data_dir/<target>``) or ``"tar"`` /
            ``"zip"`` (one archive extracted into ``data_dir``).
        target: the folder the readers look for under ``data_dir``.
        homepage: where the authors describe the data and its licence.
    """

    name: str
    urls: tuple[str, ...]
    files: tuple[RemoteFile, ...]
    kind: str
    target: str
    homepage: str
    aliases: tuple[str, ...] = field(default=())


SOURCES: dict[str, DatasetSource] = {
    s.name: s
    for s in (
        DatasetSource(
            name="mnist",
            urls=(
                "http://yann.lecun.com/exdb/mnist/",
                # the official host has answered 403 for years; these byte-identical copies
                # are the ones torchvision and TensorFlow Datasets fetch
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ),
            files=(
                RemoteFile(
                    "train-images-idx3-ubyte.gz",
                    sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                    md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    content_sha256=(
                        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
                    ),
                ),
                RemoteFile(
                    "train-labels-idx1-ubyte.gz",
                    sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                    md5="d53e105ee54ea40749a09fcbcd1e9432",
                    content_sha256=(
                        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
                    ),
                ),
                RemoteFile(
                    "t10k-images-idx3-ubyte.gz",
                    sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                    md5="9fb629c4189551a2d022fa330f9573f3",
                    content_sha256=(
                        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
                    ),
                ),
                RemoteFile(
                    "t10k-labels-idx1-ubyte.gz",
                    sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                    md5="ec29112dd5afa0611ce80d1b7f02629c",
                    content_sha256=(
                        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
                    ),
                ),
            ),
            kind="files",
            target="mnist",
            homepage="http://yann.lecun.com/exdb/mnist/",
        ),
        DatasetSource(
            name="fashion_mnist",
            urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            files=(
                RemoteFile(
                    "train-images-idx3-ubyte.gz",
                    sha256="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                    md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                ),
                RemoteFile(
                    "train-labels-idx1-ubyte.gz",
                    sha256="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                    md5="25c81989df183df01b3e8a0aad5dffbe",
                ),
                RemoteFile(
                    "t10k-images-idx3-ubyte.gz",
                    sha256="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                    md5="bef4ecab320f06d8554ea6380940ec79",
                ),
                RemoteFile(
                    "t10k-labels-idx1-ubyte.gz",
                    sha256="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                    md5="bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ),
            kind="files",
            target="fashion_mnist",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            aliases=("fashion-mnist", "fmnist"),
        ),
        DatasetSource(
            name="cifar10",
            urls=("https://www.cs.toronto.edu/~kriz/",),
            files=(
                RemoteFile(
                    "cifar-10-python.tar.gz",
                    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                    md5="c58f30108f718f92721af3b95e74349a",
                ),
            ),
            kind="tar",
            target="cifar-10-batches-py",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
            aliases=("cifar-10",),
        ),
        DatasetSource(
            name="cifar100",
            urls=("https://www.cs.toronto.edu/~kriz/",),
            files=(
                RemoteFile(
                    "cifar-100-python.tar.gz",
                    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
                    md5="eb9058c3a382ffc7106e4002c42a8d85",
                ),
            ),
            kind="tar",
            target="cifar-100-python",
            homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
            aliases=("cifar-100",),
        ),
        DatasetSource(
            name="svhn",
            urls=("http://ufldl.stanford.edu/housenumbers/",),
            files=(
                RemoteFile(
                    "train_32x32.mat",
                    sha256="435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8",
                    md5="e26dedcc434d2e4c54c9b2d4a06d8373",
                ),
                RemoteFile(
                    "test_32x32.mat",
                    sha256="cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b",
                    md5="eb5a983be6a315427106f1b164d9cef3",
                ),
                RemoteFile(
                    "extra_32x32.mat",
                    sha256="a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3",
                    md5="a93ce644f1a588dc4d68dda5feec44a7",
                    optional=True,
                ),
            ),
            kind="files",
            target="svhn",
            homepage="http://ufldl.stanford.edu/housenumbers/",
        ),
        DatasetSource(
            name="tiny_imagenet",
            urls=("http://cs231n.stanford.edu/",),
            files=(RemoteFile("tiny-imagenet-200.zip", md5="90528d7ca1a48142e341f4ef8d21d0de"),),
            kind="zip",
            target="tiny-imagenet-200",
            homepage="http://cs231n.stanford.edu/",
            aliases=("tiny-imagenet", "tinyimagenet"),
        ),
    )
}


def source_for(name: str) -> DatasetSource:
    """The :class:`DatasetSource` named ``name`` (aliases and ``-``/``_`` accepted)."""
    key = name.strip().lower()
    for src in SOURCES.values():
        if key in (src.name, src.name.replace("_", "-"), *src.aliases):
            return src
    raise KeyError(
        f"no download for dataset {name!r}; downloadable: {', '.join(sorted(SOURCES))}"
    )
