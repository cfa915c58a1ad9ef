import json
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from skml import __main__ as cli
from skml import benchmarks
from skml.utils import all_estimators


def test_info_prints_versions_and_cuda(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for label in ["skml", "numpy", "scipy", "scikit-learn", "torch", "POT", "skorch"]:
        assert label in out
    assert "CUDA" in out and "available" in out
    for name, cls in all_estimators():
        subpackage = cls.__module__.rsplit(".", 1)[0]
        assert re.search(rf"{name}\s+{re.escape(subpackage)}", out), name


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "skml", "info"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "scikit-learn" in result.stdout


# The benchmark modules with a one-row demo, found as ``python -m skml demo``
# finds them.
DEMOS = [
    name for name in benchmarks.available() if hasattr(benchmarks.load(name), "demo")
]
DEMO_KEYS = {"estimator", "task", "metric", "skml", "baseline", "seconds"}


@pytest.fixture(scope="module")
def demo_rows():
    """Each demo's row, computed once: the demos fit real models."""
    return {name: benchmarks.load(name).demo() for name in DEMOS}


def _lower_is_better(metric):
    """The direction a row's metric text gives, or None when it gives none."""
    text = metric.lower()
    if "higher is better" in text:
        return False
    if "lower is better" in text or re.search(r"\b(mse|mce|mae|error|loss)\b", text):
        return True
    return None


def test_some_benchmark_has_a_demo():
    assert DEMOS, "no benchmark module has a demo()"


@pytest.mark.parametrize("name", DEMOS)
def test_demo_row_is_complete_and_finite(demo_rows, name):
    row = demo_rows[name]
    assert set(row) == DEMO_KEYS
    for key in ("task", "metric"):
        assert isinstance(row[key], str) and row[key].strip()
    for key in ("skml", "baseline", "seconds"):
        assert isinstance(row[key], float) and np.isfinite(row[key]), (key, row[key])
    assert row["seconds"] >= 0


@pytest.mark.parametrize("name", DEMOS)
def test_demo_row_names_its_estimator_and_baseline(demo_rows, name):
    row = demo_rows[name]
    assert row["estimator"] in dict(all_estimators())
    named = re.search(r"baseline: *(\w[^);]*)", row["task"] + " " + row["metric"])
    assert named, f"{name}: no 'baseline: NAME' in {row['task']!r} / {row['metric']!r}"


@pytest.mark.parametrize("name", DEMOS)
def test_demo_beats_its_baseline(demo_rows, name):
    row = demo_rows[name]
    lower = _lower_is_better(row["metric"])
    assert lower is not None, f"{row['metric']!r} does not say which way is better"
    if "baseline: group isotonic" in row["metric"] and row["skml"] >= row["baseline"]:
        # Without MCGrad installed the baseline is group isotonic, which beats
        # MCBoost's defaults on S2; the demo prints "skml WORSE" for it.
        pytest.xfail(f"MCBoost {row['skml']:.2f}, group isotonic {row['baseline']:.2f}")
    # no row states a tolerance, so skml has to be strictly better
    if lower:
        assert row["skml"] < row["baseline"], row
    else:
        assert row["skml"] > row["baseline"], row


def test_demo_prints_one_table_line_per_demo(demo_rows, monkeypatch, capsys):
    # The CLI's own loop and table, fed the rows computed above.
    def load(name):
        if name not in demo_rows:  # a benchmark without a demo
            return types.SimpleNamespace()
        row = dict(demo_rows[name])
        return types.SimpleNamespace(demo=lambda: row)

    monkeypatch.setattr(benchmarks, "load", load)
    assert cli.main(["demo"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:3] == ["estimator", "task", "metric"]
    body = lines[2:]
    assert len(body) == len(DEMOS)
    for line, name in zip(body, DEMOS):
        row = demo_rows[name]
        assert line.startswith(row["estimator"])
        assert row["task"] in line and row["metric"] in line


def test_bench_unknown_name(capsys):
    assert cli.main(["bench", "no-such-benchmark"]) == 2
    assert "Unknown benchmark" in capsys.readouterr().err


def test_bench_writes_json(tmp_path, monkeypatch, capsys):
    fake = types.ModuleType("fake")
    fake.run = lambda quick, device: [{"method": "a", "score": 1.0, "quick": quick}]
    monkeypatch.setattr(benchmarks, "load", lambda name: fake)
    out = tmp_path / "rows.json"
    assert cli.main(["bench", "fake", "--quick", "--out", str(out)]) == 0
    assert "score" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["rows"] == [{"method": "a", "score": 1.0, "quick": True}]
    assert payload["device"] == "cpu"


def test_parser_requires_command():
    with pytest.raises(SystemExit):
        cli.main([])


def test_bench_parts(monkeypatch, capsys):
    fake = types.ModuleType("fake")

    def run(quick, device, parts=None):
        if set(parts) - {"a", "b"}:
            raise ValueError("Unknown parts")
        return [{"part": p} for p in parts]

    fake.run = run
    monkeypatch.setattr(benchmarks, "load", lambda name: fake)
    assert cli.main(["bench", "fake", "--part", "a", "--part", "b"]) == 0
    assert cli.main(["bench", "fake", "--part", "c"]) == 2
    assert "Unknown parts" in capsys.readouterr().err
    fake.run = lambda quick, device: []
    assert cli.main(["bench", "fake", "--part", "a"]) == 2
    assert "has no parts" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("skml", "baseline", "metric", "verdict"),
    [
        (1.0, 2.0, "MSE (lower is better)", "skml better (x0.50)"),
        (3.0, 2.0, "MSE (lower is better)", "skml WORSE (x1.50)"),
        (3.0, 2.0, "accuracy (higher is better)", "skml better (x1.50)"),
    ],
)
def test_demo_says_plainly_who_wins(skml, baseline, metric, verdict):
    row = {"skml": skml, "baseline": baseline, "metric": metric}
    assert cli._verdict(row) == verdict
