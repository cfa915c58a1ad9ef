"""Command line: ``python -m skml {info,demo,bench}``. It only dispatches."""

import argparse
import inspect
import json
import platform
import sys
import time
from importlib import metadata

_PACKAGES = [
    ("skml", "skml"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("scikit-learn", "scikit-learn"),
    ("torch", "torch"),
    ("POT", "POT"),
    ("skorch", "skorch"),
]


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def info(args=None):
    """Print the estimators, versions of skml and its dependencies, and CUDA."""
    import skml
    from skml.utils import all_estimators

    print("estimators")
    for name, cls in all_estimators():
        print(f"  {name:<24} {cls.__module__.rsplit('.', 1)[0]}")
    print(f"python        {platform.python_version()} ({sys.executable})")
    for label, dist in _PACKAGES:
        version = skml.__version__ if label == "skml" else _version(dist)
        print(f"{label:<13} {version}")
    try:
        import torch

        available = torch.cuda.is_available()
        detail = ""
        if available:
            names = [
                torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
            ]
            detail = f" ({', '.join(names)})"
        print(f"{'CUDA':<13} {'available' if available else 'not available'}{detail}")
        print(f"{'torch CUDA':<13} {torch.version.cuda or 'none (CPU build)'}")
    except ImportError:
        print(f"{'CUDA':<13} unknown (torch not importable)")
    return 0


def demo(args=None):
    """Run every estimator's demo and print one table."""
    from skml import benchmarks
    from skml.utils import all_estimators, format_table

    rows = []
    for name in benchmarks.available():
        module = benchmarks.load(name)
        if not hasattr(module, "demo"):
            continue
        print(f"running {name} demo ...", file=sys.stderr)
        start = time.perf_counter()
        row = module.demo()
        row.setdefault("seconds", time.perf_counter() - start)
        rows.append(row)
    if not rows:
        n = len(all_estimators())
        print(f"skml {_version('skml')}: no estimator demos yet ({n} estimators).")
        return 0
    for row in rows:
        row["result"] = _verdict(row)
    columns = ["estimator", "task", "metric", "skml", "baseline", "result", "seconds"]
    print(format_table(rows, columns=columns))
    return 0


def _verdict(row):
    """Whether skml beat its baseline, from the direction the metric states."""
    lower = "higher is better" not in row["metric"].lower()
    better = row["skml"] < row["baseline"] if lower else row["skml"] > row["baseline"]
    ratio = row["skml"] / row["baseline"] if row["baseline"] else float("inf")
    return f"{'skml better' if better else 'skml WORSE'} (x{ratio:.2f})"


def bench(args):
    """Run ``skml.benchmarks.NAME``, print its table, optionally write JSON."""
    from skml import benchmarks
    from skml.utils import format_table, resolve_device

    try:
        module = benchmarks.load(args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        # "auto" and "cuda:N" become what every estimator and solver accepts.
        device = str(resolve_device(args.device))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kwargs = {"quick": args.quick, "device": device}
    if args.part:
        if "parts" not in inspect.signature(module.run).parameters:
            print(f"error: bench {args.name} has no parts", file=sys.stderr)
            return 2
        kwargs["parts"] = args.part
    start = time.perf_counter()
    try:
        rows = module.run(**kwargs)
    except ValueError as exc:
        if not args.part:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    if args.out:
        payload = {
            "benchmark": args.name,
            "quick": args.quick,
            "device": device,
            "device_requested": args.device,
            "seconds": elapsed,
            "versions": {label: _version(dist) for label, dist in _PACKAGES},
            "rows": rows,
        }
        # written before the report, so that a report that fails keeps the rows
        with open(args.out, "w") as handle:
            json.dump(payload, handle, indent=2, default=_json_default)
    report = getattr(module, "report", format_table)
    print(report(rows))
    print(
        f"\n# python -m skml bench {args.name}"
        f"{' --quick' if args.quick else ''}"
        f"{''.join(' --part ' + p for p in args.part or ())} --device {args.device}: "
        f"{elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0


def _json_default(obj):
    try:
        return obj.item()
    except AttributeError:
        return str(obj)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose epilog is computed only when help is shown."""

    def __init__(self, *args, epilog_factory=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._epilog_factory = epilog_factory

    def format_help(self):
        if self._epilog_factory is not None:
            self.epilog = self._epilog_factory()
        return super().format_help()


def _bench_epilog():
    """The benchmarks and their parts (imports every benchmark module)."""
    from skml import benchmarks

    lines = ["benchmarks (NAME) and their parts (--part P):"]
    for name in benchmarks.available():
        try:
            module = benchmarks.load(name)
        except Exception as exc:  # one broken module must not hide the others
            lines.append(f"  {name}: not importable ({type(exc).__name__}: {exc})")
            continue
        declared = getattr(module, "BENCHMARK", None)
        if declared is not None:
            lines += ["  " + line for line in declared.describe()]
        else:
            doc = (module.__doc__ or "").strip().splitlines()
            lines.append(f"  {name}: {doc[0] if doc else ''}".rstrip(": "))
    return "\n".join(lines)


def build_parser():
    """The argument parser of ``python -m skml``."""
    from skml import benchmarks

    parser = _Parser(prog="python -m skml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions and CUDA availability").set_defaults(
        func=info
    )
    sub.add_parser("demo", help="run every estimator's demo").set_defaults(func=demo)
    p_bench = sub.add_parser(
        "bench",
        help="run a benchmark",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog_factory=_bench_epilog,
    )
    p_bench.add_argument(
        "name",
        metavar="NAME",
        help=f"benchmark name, one of: {', '.join(benchmarks.available())}",
    )
    p_bench.add_argument("--quick", action="store_true", help="small grid, fewer seeds")
    p_bench.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N or auto (resolved once; the JSON records both)",
    )
    p_bench.add_argument(
        "--part",
        action="append",
        default=None,
        metavar="P",
        help="run only this part (repeatable; the parts are listed below)",
    )
    p_bench.add_argument("--out", default=None, help="write the rows to this JSON file")
    p_bench.set_defaults(func=bench)
    return parser


def main(argv=None):
    """Entry point of ``python -m skml`` and the ``skml`` script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
