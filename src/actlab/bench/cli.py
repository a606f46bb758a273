"""Command line of the benchmarks (also reachable as ``actlab bench``).

``ops``: each layer next to its reference (time, ratio, saved-tensor bytes) for several shapes
and dtypes. ``step``: training-step time and memory of a small ResNet per layer choice.
Timings interleave the cases (each round runs every case once) and report medians; ``--json``
prints machine-readable results, ``--markdown`` tables for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().replace("x", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; expected e.g. 32x64x32x32") from None
    if len(shape) < 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; need B x C x spatial...")
    return shape


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{_cpu_model()}, {torch.get_num_threads()} torch threads, {device}, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True)
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    ops = sub.add_parser("ops", help="layer vs reference: time and saved-tensor bytes")
    ops.add_argument("--shape", type=_shape, action="append",
                     help="e.g. 32x64x32x32 (repeat; default 32x64x32x32 and 64x256x8x8)")
    ops.add_argument("--dtype", choices=sorted(_DTYPES), action="append",
                     help="repeat; default float32 and bfloat16")
    ops.add_argument("--case", action="append", help="only these cases (plus their references)")
    ops.add_argument("--no-compiled", action="store_true",
                     help="skip the *_compiled and *_inductor cases")
    step = sub.add_parser("step", help="training step of a small ResNet per act/norm choice")
    step.add_argument("--batch", type=int, default=64)
    step.add_argument("--image", type=int, default=32)
    step.add_argument("--width", type=int, default=16)
    step.add_argument("--config", action="append",
                      help="act/norm or act/norm/backend, e.g. sau/bn/compiled (repeat; the "
                           "first is the reference)")
    step.add_argument("--no-compiled", action="store_true", help="skip compiled configurations")
    for p in (ops, step):
        p.add_argument("--repeats", type=int, default=20)
        p.add_argument("--device", default=default_device)
        p.add_argument("--threads", type=int, default=None,
                       help="torch intra-op threads for this run (default: torch's own)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--markdown", action="store_true", help="markdown tables")
        p.add_argument("--output", help="also write the JSON results to this file")


def _write(path: str | None, data: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=1)


def _run_ops(args: argparse.Namespace) -> int:
    from actlab.bench.ops import OP_CASES, format_ops, run_ops

    cases = [c for c in OP_CASES if not (args.no_compiled and c.backend != "eager")]
    if args.case:
        wanted = set(args.case)
        unknown = wanted - {c.name for c in cases}
        if unknown:
            print(f"error: unknown case(s) {sorted(unknown)}", file=sys.stderr)
            return 2
        wanted |= {c.reference for c in cases if c.name in wanted}
        cases = [c for c in cases if c.name in wanted]
    dtypes = [_DTYPES[d] for d in (args.dtype or ["float32", "bfloat16"])]
    shapes = args.shape or [(32, 64, 32, 32), (64, 256, 8, 8)]
    results = run_ops(cases, shapes, dtypes, args.device, args.repeats, progress=not args.json)
    data = {"machine": machine_description(), "results": [r.as_dict() for r in results]}
    _write(args.output, data)
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        print(f"machine: {machine_description()}")
        print(format_ops(results, markdown=args.markdown))
    return 0


def _run_step(args: argparse.Namespace) -> int:
    from actlab.bench.step import STEP_CONFIGS, StepConfig, format_step, run_step

    configs = [c for c in STEP_CONFIGS if not (args.no_compiled and c.backend != "eager")]
    if args.config:
        configs = []
        for text in args.config:
            parts = text.split("/")
            if len(parts) not in (2, 3):
                print(f"error: bad config {text!r}; expected act/norm[/backend]", file=sys.stderr)
                return 2
            configs.append(StepConfig(*parts))
    results = run_step(configs, args.batch, args.image, args.width, args.device, args.repeats,
                       progress=not args.json)
    data = {"machine": machine_description(), "batch": args.batch, "image": args.image,
            "width": args.width, "results": [r.as_dict() for r in results]}
    _write(args.output, data)
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        print(f"machine: {machine_description()}")
        print(f"small_resnet (ResNet-8, width {args.width}), batch {args.batch}, "
              f"{args.image}×{args.image} inputs")
        print(format_step(results, markdown=args.markdown))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # explicit user request for this benchmark run
    if args.bench == "ops":
        return _run_ops(args)
    if args.bench == "step":
        return _run_step(args)
    raise AssertionError(args.bench)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="actlab bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
