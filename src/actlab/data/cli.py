"""``actlab data``: ``download NAME`` (see :mod:`actlab.data.download`) and ``sources``.

Exit status: 0 done, 1 the download failed (one line on stderr), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Download data sets from their official locations."
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    dl = sub.add_parser("download", help="download, verify and unpack one data set")
    dl.add_argument("name", help="mnist, fashion_mnist, cifar10, cifar100, svhn or tiny_imagenet")
    dl.add_argument("--data-dir", metavar="DIR",
                    help="data folder (default $ACTLAB_DATA or ~/.cache/actlab/data)")
    dl.add_argument("--extra", action="store_true",
                    help="also fetch optional files (SVHN extra_32x32.mat, 1.3 GB)")
    dl.add_argument("--keep-archive", action="store_true",
                    help="keep the downloaded archive after unpacking")
    dl.add_argument("--base-url", metavar="URL",
                    help="fetch from this mirror instead (files are still verified)")
    dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("sources", help="list the downloadable data sets and their URLs")


def run(args: argparse.Namespace) -> int:
    from actlab.data.checksums import SOURCES
    from actlab.data.download import DownloadError, download

    if args.data_command == "sources":
        for src in SOURCES.values():
            files = ", ".join(f.name + (" (optional)" if f.optional else "") for f in src.files)
            print(f"{src.name:14s} {src.urls[0]}  {files}")
        return 0
    try:
        folder = download(args.name, args.data_dir, extra=args.extra,
                          keep_archive=args.keep_archive, progress=not args.no_progress,
                          base_url=args.base_url)
    except DownloadError as exc:
        print(f"actlab data download: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume", file=sys.stderr)
        return 130
    print(f"{args.name}: ready in {folder}")
    return 0
