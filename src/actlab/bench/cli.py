"""Command line of the benchmarks (also reachable as ``actlab bench``)."""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

from actlab.bench.ops import OP_CASES, format_ops, run_ops

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; expected e.g. 32x64x32x32") from None
    if len(shape) < 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; need B x C x spatial...")
    return shape


def machine_description() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{device}, torch {torch.__version__}, python {platform.python_version()}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True)
    ops = sub.add_parser("ops", help="layer vs reference: time and saved-tensor bytes")
    ops.add_argument("--shape", type=_shape, action="append", help="e.g. 32x64x32x32 (repeat)")
    ops.add_argument("--dtype", choices=sorted(_DTYPES), action="append")
    ops.add_argument("--case", action="append", help="only these cases (plus their references)")
    ops.add_argument("--repeats", type=int, default=20)
    ops.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ops.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    if args.bench == "ops":
        cases = OP_CASES
        if args.case:
            wanted = set(args.case)
            unknown = wanted - {c.name for c in OP_CASES}
            if unknown:
                print(f"error: unknown case(s) {sorted(unknown)}", file=sys.stderr)
                return 2
            wanted |= {c.reference for c in OP_CASES if c.name in wanted}
            cases = [c for c in OP_CASES if c.name in wanted]
        dtypes = [_DTYPES[d] for d in (args.dtype or ["float32"])]
        results = run_ops(cases, args.shape, dtypes, args.device, args.repeats,
                          progress=not args.json)
        if args.json:
            print(json.dumps({"machine": machine_description(),
                              "results": [r.as_dict() for r in results]}, indent=1))
        else:
            print(f"machine: {machine_description()}")
            print(format_ops(results))
        return 0
    raise AssertionError(args.bench)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actlab bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
