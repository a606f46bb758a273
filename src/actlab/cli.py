"""Command-line entry point (``actlab``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actlab", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the default study")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
