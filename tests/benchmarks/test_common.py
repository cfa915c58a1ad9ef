import json
import re
import types
import warnings
from pathlib import Path

import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

import skml
from skml import __main__ as cli
from skml import benchmarks
from skml.benchmarks._common import (
    Benchmark,
    Part,
    count_warnings,
    data_rows,
    status_lines,
)
from skml.utils import resolve_device

MISSING = "skml_no_such_peer_module"


def _fake(calls):
    """Two parts: x has a missing peer, y warns ``n_warnings`` times."""

    def part_x(ctx, scale):
        calls.append("x")
        assert not ctx.peer("ghost", MISSING, "pip install ghost")
        return [{"part": "x", "value": scale, "device": ctx.device}]

    def part_y(ctx, n_warnings):
        calls.append("y")
        for _ in range(n_warnings):
            warnings.warn("did not converge", ConvergenceWarning, stacklevel=1)
        # The rows of earlier parts are visible, the framework's are not.
        return [{"part": "y", "seen": [r["part"] for r in ctx.rows]}]

    return Benchmark(
        "fake",
        [
            Part("x", part_x, full={"scale": 10}, quick={"scale": 1}),
            Part("y", part_y, full={"n_warnings": 3}, quick={"n_warnings": 1}),
        ],
    )


def _status(rows, part):
    (row,) = [r for r in rows if r.get("status") == "done" and r["part"] == part]
    return row


@pytest.mark.parametrize("quick", [False, True])
def test_runs_parts_records_peers_and_counts_warnings(quick, capsys):
    calls = []
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        rows = _fake(calls).run(quick=quick)
    assert calls == ["x", "y"]
    assert not escaped
    assert "converge" not in capsys.readouterr().out

    skipped = [r for r in rows if "peer" in r]
    assert skipped == [
        {
            "part": "x",
            "status": "skipped",
            "peer": "ghost",
            "skipped": "not installed: pip install ghost",
        }
    ]
    n_warnings = 1 if quick else 3
    assert _status(rows, "y")["warnings"] == {"ConvergenceWarning": n_warnings}
    assert _status(rows, "x")["warnings"] == {}
    assert _status(rows, "x")["rows"] == 1
    assert data_rows(rows) == [
        {"part": "x", "value": 1 if quick else 10, "device": "cpu"},
        {"part": "y", "seen": ["x"]},
    ]
    (meta,) = [r for r in rows if r["part"] == "meta"]
    assert meta["benchmark"] == "fake" and meta["quick"] is quick
    assert meta["parts"] == ["x", "y"]


def test_progress_lines_on_stderr(capsys):
    _fake([]).run(quick=True)
    err = capsys.readouterr().err.splitlines()
    done = [line for line in err if " done in " in line]
    assert [line.split(" done in ")[0] for line in done] == [
        "[fake] part x 1/2",
        "[fake] part y 2/2",
    ]
    assert done[1].endswith("(ConvergenceWarning x1)")
    assert any("ghost skipped (not installed: pip install ghost)" in e for e in err)


def test_status_lines_name_warnings_and_peers():
    rows = _fake([]).run(quick=True, verbose=False)
    text = "\n".join(status_lines(rows))
    assert "y " in text and "ConvergenceWarning x1" in text
    assert "peer ghost skipped in x: not installed: pip install ghost" in text


def test_warning_filters_restored():
    before = list(warnings.filters)
    _fake([]).run(quick=True, verbose=False)
    assert warnings.filters == before


def test_select_parts():
    calls = []
    bench = _fake(calls)
    rows = bench.run(quick=True, parts=["x"], verbose=False)
    assert calls == ["x"]
    assert {r["part"] for r in rows} == {"meta", "x"}
    # declared order, whatever the order asked for
    calls.clear()
    bench.run(quick=True, parts=["y", "x"], verbose=False)
    assert calls == ["x", "y"]
    with pytest.raises(ValueError, match=r"'z'.*available parts: x, y"):
        bench.run(parts=["x", "z"])
    assert calls == ["x", "y"]


def test_part_left_out_of_quick_run():
    calls = []
    bench = Benchmark(
        "fake",
        [
            Part("a", lambda ctx: calls.append("a") or []),
            Part("big", lambda ctx: calls.append("big") or [], quick=False),
        ],
    )
    rows = bench.run(quick=True, verbose=False)
    assert calls == ["a"]
    assert {"part": "big", "status": "skipped"}.items() <= _row(rows, "big").items()
    bench.run(quick=False, verbose=False)
    assert calls == ["a", "a", "big"]


def _row(rows, part):
    (row,) = [r for r in rows if r["part"] == part and "status" in r]
    return row


def test_once_shares_a_result_between_parts():
    calls = []

    def shared(ctx):
        return ctx.once("prob", lambda: calls.append(1) or len(calls))

    bench = Benchmark(
        "fake",
        [
            Part("a", lambda ctx: [{"part": "a", "v": shared(ctx)}]),
            Part("b", lambda ctx: [{"part": "b", "v": shared(ctx)}]),
        ],
    )
    rows = data_rows(bench.run(verbose=False))
    assert [r["v"] for r in rows] == [1, 1]
    assert calls == [1]


def test_duplicate_or_meta_part_names_rejected():
    with pytest.raises(ValueError, match="unique"):
        Benchmark("fake", [Part("a", None), Part("a", None)])
    with pytest.raises(ValueError, match="meta"):
        Benchmark("fake", [Part("meta", None)])


def test_count_warnings_counts_every_occurrence():
    with count_warnings() as counts:
        for _ in range(3):
            warnings.warn("x", ConvergenceWarning, stacklevel=1)
        warnings.warn("y", UserWarning, stacklevel=1)
    assert counts == {"ConvergenceWarning": 3, "UserWarning": 1}


@pytest.mark.parametrize("device", ["auto", "CPU", torch.device("cpu")])
def test_device_resolved(device):
    rows = _fake([]).run(quick=True, device=device, verbose=False)
    expected = str(resolve_device(device))
    (meta,) = [r for r in rows if r["part"] == "meta"]
    assert meta["device"] == expected
    assert meta["device_requested"] == str(device)
    assert data_rows(rows)[0]["device"] == expected


def test_cli_device_auto(tmp_path, monkeypatch, capsys):
    seen = {}

    def run(quick, device, parts=None):
        seen["device"] = device
        return [{"part": "a", "value": 1.0}]

    fake = types.ModuleType("fake")
    fake.run = run
    monkeypatch.setattr(benchmarks, "load", lambda name: fake)
    out = tmp_path / "rows.json"
    assert cli.main(["bench", "fake", "--device", "auto", "--out", str(out)]) == 0
    expected = str(resolve_device("auto"))
    assert seen["device"] == expected
    payload = json.loads(out.read_text())
    assert payload["device"] == expected
    assert payload["device_requested"] == "auto"
    assert cli.main(["bench", "fake", "--device", "gpu"]) == 2
    assert "Unknown device" in capsys.readouterr().err


# POT's epsilon scaling (a front peer) does not converge on 30 points in its
# 20 capped stages; the test is about devices, not about POT's convergence.
@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge:UserWarning")
def test_srot_helpers_accept_auto():
    # POT's tensors were once created with device="auto" and raised.
    from skml.benchmarks import srot

    rows, prob = srot.run_refinements(n=30, d=2, regs=(1.0,), k_max=1, device="auto")
    front = srot.run_front(prob, regs=(1.0,), device="auto")
    assert [r["k"] for r in rows] == [0, 1]
    assert {r["method"] for r in front} == {srot.EOT_POT, srot.EOT_SCALING, srot.SROT}
    # a plan's L1 distance to another plan is at most 2
    assert all(0 <= r["l1"] <= 2 for r in rows + front)


def test_srot_report_of_the_new_parts():
    # the report reads every row kind of the real, speed, lazy and front parts
    from skml.benchmarks import srot

    real = [
        {
            "part": "real",
            "pair": "p",
            "n": 5,
            "m": 6,
            "d": 2,
            "reg": 0.1,
            "method": srot.EOT_POT,
            "gap": 0.2,
            "seconds": 0.1,
            "n_iter": 3,
        },
        {
            "part": "real",
            "pair": "p",
            "n": 5,
            "m": 6,
            "d": 2,
            "reg": 0.1,
            "method": srot.SROT,
            "gap": 0.1,
            "seconds": 0.2,
            "n_iter": 4,
            "choice": "entropic",
            "converged": True,
        },
    ]
    speed = [
        {
            "part": "speed",
            "n": 10,
            "d": 2,
            "method": method,
            "ms_per_iter": ms,
            "n_iter": 50,
        }
        for method, ms in (
            ("POT torch sinkhorn", 1.0),
            ("POT torch sinkhorn_log", 4.0),
            (srot.SROT_FIXED, 2.0),
        )
    ]
    lazy = [
        {
            "part": "lazy",
            "n": 10,
            "d": 2,
            "method": "lazy vs dense",
            "max_abs_diff": 1e-9,
        },
        {
            "part": "lazy",
            "n": 10,
            "d": 2,
            "method": srot.SROT,
            "fit_s": 1.0,
            "fit_transform_s": 1.5,
            "n_iter": 7,
            "choice": "entropic",
            "converged": True,
            "peak_rss_gb": 0.5,
        },
    ]
    front = [
        {
            "part": "front",
            "pair": "p",
            "reg": reg,
            "method": method,
            "l1": l1,
            "gap": 0.1,
            "entropy": h,
            "seconds": t,
            "n_iter": 1,
        }
        for reg, method, l1, h, t in (
            (1.0, srot.EOT_POT, 1.9, 10.0, 0.1),
            (0.1, srot.EOT_POT, 1.5, 6.0, 0.5),
            (1.0, srot.SROT, 1.7, 8.0, 0.2),
        )
    ]
    text = "\n".join(srot._new_parts_report(real + speed + lazy))
    assert "gap ratio < 1 in 1" in text and "= 1 (entropic fallback) in 1" in text
    assert "SROT / POT plain = 2.00" in text and "FAIL" in text
    assert "max |transform diff| 1.00e-09 <= 1e-6: PASS" in text
    lines = srot._front_comparison(front)
    # SROT (1.7 at 0.2 s) is not dominated; at entropy 8 POT's L1 is 1.7
    assert any("1 of 1 SROT runs are not dominated" in line for line in lines)
    assert any(
        "below EOT (POT sinkhorn_log)'s in 0, above in 1" in line for line in lines
    )


def test_srot_acceptance_counts_the_defaults_over_the_whole_grid():
    # the second pass's target: every grid point (small reg too) must have the
    # defaults' cost gap below EOT's, and 60% of them at most 0.7 times it
    from skml.benchmarks import srot

    def point(reg, gap_srot):
        base = {"part": "grid", "n": 10, "d": 2, "reg": reg, "l1": 1.0}
        return [
            {**base, "method": srot.EOT, "gap": 1.0, "seconds": 0.1, "n_iter": 1},
            {**base, "method": srot.REF, "gap": 2.0, "l1": 1.5, "seconds": 0.1},
            {
                **base,
                "method": srot.SROT,
                "gap": gap_srot,
                "marginal_err": 0.0,
                "seconds": 0.1,
                "n_iter": 1,
            },
        ]

    rows = point(0.003, 1.0) + point(0.1, 0.5) + point(1.0, 0.6)
    lines = srot.acceptance(rows).splitlines()
    start = next(
        i for i, line in enumerate(lines) if "defaults vs EOT over all 3" in line
    )
    below, within = lines[start + 1], lines[start + 2]
    assert "2/3" in below and below.endswith("FAIL")
    assert "2/3" in within and within.endswith("PASS")
    assert "(n=10, d=2, reg=0.003)" in lines[-1]


def test_bench_help_lists_benchmarks_and_parts(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    names = benchmarks.available()
    assert names
    for name in names:
        assert name in out
        declared = getattr(benchmarks.load(name), "BENCHMARK", None)
        if declared is not None:
            assert all(part in out for part in declared.part_names)


@pytest.mark.parametrize("name", benchmarks.available())
def test_modules_declare_their_parts(name):
    module = benchmarks.load(name)
    declared = module.BENCHMARK
    assert declared.name == name
    with pytest.raises(ValueError, match="available parts"):
        module.run(quick=True, parts=["no-such-part"])


def test_no_issue_numbers_in_package():
    root = Path(skml.__file__).parent
    pattern = re.compile(r"[Ii]ssue \d")
    offenders = []
    for path in root.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        offenders += [
            f"{path.relative_to(root)}:{i}"
            for i, line in enumerate(text.splitlines(), 1)
            if pattern.search(line)
        ]
    assert not offenders


def test_srot_grid_records_geomloss():
    # The real grid part on a tiny grid: GeomLoss runs or is a skipped row.
    import importlib.util

    from skml.benchmarks import srot

    bench = Benchmark(
        "srot",
        [Part("grid", srot._part_grid, full={"grid": {30: (1.0,)}, "dims": (2,)})],
    )
    rows = bench.run(params={"options": None}, verbose=False)
    methods = {r["method"] for r in data_rows(rows)}
    assert {srot.EOT_POT, srot.EOT, srot.REF, srot.SROT} <= methods
    skipped = [r["peer"] for r in rows if "peer" in r]
    if importlib.util.find_spec("geomloss") is None:
        assert skipped == ["GeomLoss"] and "EOT (GeomLoss)" not in methods
    else:
        assert skipped == [] and "EOT (GeomLoss)" in methods
