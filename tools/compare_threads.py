"""Time the 12,000-row MCBoost fit of ``python -m skml bench threads`` on this
checkout and on another one (e.g. a worktree of an older commit), quiet and
with one other process busy, in one run.

Usage::

    git worktree add /tmp/skml-before b0fe8f3
    python tools/compare_threads.py /tmp/skml-before [--repeats 2]
"""

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", help="path of the other checkout")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from skml.benchmarks.threads import mcboost_code, time_workload

    trees = {"baseline": args.baseline, "this checkout": str(ROOT)}
    print(f"{'code':<14} {'machine':<6} seconds (best of {args.repeats})")
    results = {}
    for busy in (False, True):
        for label, tree in trees.items():
            seconds = min(
                time_workload(mcboost_code(tree), busy=busy)
                for _ in range(args.repeats)
            )
            results[label, busy] = seconds
            print(f"{label:<14} {'busy' if busy else 'quiet':<6} {seconds:.2f}")
    for busy in (False, True):
        ratio = results["baseline", busy] / results["this checkout", busy]
        print(f"{'busy' if busy else 'quiet'}: this checkout is {ratio:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
