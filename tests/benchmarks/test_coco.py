"""The COCO benchmark's instances and plumbing (small horizons)."""

import numpy as np
import pytest

from skml.benchmarks import coco
from skml.benchmarks._common import data_rows


def test_b1_ccv_stays_bounded_for_np_ogd_and_grows_for_sinha_vaze():
    ccv = {}
    for algorithm in ("nested_projection", "sinha_vaze"):
        for T in (200, 2000):
            inst = coco.B1(T)
            run = coco.play(inst, algorithm, T, horizon=T)
            ccv[algorithm, T] = run["violations"].sum()
    # d = 1: NP-OGD pays at most G * D (here the first round only).
    G, D = 1.0, 20.0
    assert ccv["nested_projection", 2000] <= G * D
    assert ccv["nested_projection", 2000] == pytest.approx(
        ccv["nested_projection", 200]
    )
    assert ccv["sinha_vaze", 2000] > 3 * ccv["sinha_vaze", 200]


def test_b5_latest_only_pays_more_than_nested_projection():
    T = 3000
    nested = coco.play(coco.B5(T), "nested_projection", T)["violations"].sum()
    latest = coco.play(coco.B5(T), "latest_only", T)["violations"].sum()
    assert nested < latest


def test_growth_exponent_recovers_known_rates():
    grid = [1000, 2000, 5000, 10000]
    assert coco.growth(grid, np.sqrt(grid))[0] == pytest.approx(0.5)
    assert coco.growth(grid, np.full(4, 3.0))[0] == pytest.approx(0.0)
    exponent, local = coco.growth(grid, 2 + np.log(grid))
    assert exponent < 0.2 and np.allclose(local, 1.0)


def test_quick_run_reports_every_part():
    rows = coco.run(quick=True, parts=["growth", "sv_convex", "lazy"])
    data = data_rows(rows)
    assert {r["part"] for r in data} == {"growth", "sv_convex", "lazy"}
    text = coco.report(rows)
    assert "== acceptance" in text and "B1 CCV exponent" in text
    for r in data:
        if r.get("ccv_le_G_movement") is not None:
            assert r["ccv_le_G_movement"]
