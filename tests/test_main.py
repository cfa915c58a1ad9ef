import json
import subprocess
import sys

import pytest

from skml import __main__ as cli
from skml import benchmarks


def test_info_prints_versions_and_cuda(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for label in ["skml", "numpy", "scipy", "scikit-learn", "torch", "POT", "skorch"]:
        assert label in out
    assert "CUDA" in out and "available" in out


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "skml", "info"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "scikit-learn" in result.stdout


def test_demo_runs(capsys):
    assert cli.main(["demo"]) == 0
    assert capsys.readouterr().out.strip()


def test_bench_unknown_name(capsys):
    assert cli.main(["bench", "no-such-benchmark"]) == 2
    assert "Unknown benchmark" in capsys.readouterr().err


def test_bench_writes_json(tmp_path, monkeypatch, capsys):
    import types

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
    import types

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
