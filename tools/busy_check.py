"""Wall time of the README's Usage snippet, ``python -m skml demo`` and the
test suite on a quiet machine and with one other process spinning on a core.

Usage::

    python tools/busy_check.py [--no-tests]

Prints one line per command: quiet seconds, busy seconds, busy / quiet.
"""

import argparse
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _timed(command, busy):
    from skml.benchmarks.threads import busy_core

    with busy_core(busy):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


def main(argv=None):
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-tests", action="store_true", help="skip the suite")
    args = parser.parse_args(argv)
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    commands = {
        "README Usage snippet": [sys.executable, "-c", snippet],
        "python -m skml demo": [sys.executable, "-m", "skml", "demo"],
    }
    if not args.no_tests:
        commands["python -m pytest"] = [sys.executable, "-m", "pytest", "-q", "-x"]
    print(f"{'command':<24} {'quiet s':>8} {'busy s':>8} {'busy/quiet':>10}")
    worst = 0.0
    for label, command in commands.items():
        quiet = _timed(command, busy=False)
        busy = _timed(command, busy=True)
        worst = max(worst, busy / quiet)
        print(f"{label:<24} {quiet:8.1f} {busy:8.1f} {busy / quiet:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
