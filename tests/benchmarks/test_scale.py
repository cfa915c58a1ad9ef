"""The scale benchmark's MCBoost part and report, on a tiny configuration."""

import numpy as np
import pytest

pytest.importorskip("distributed")

from skml.benchmarks import scale  # noqa: E402


def test_scale_blocks_are_the_in_memory_rows():
    X, y, g, base = scale.dask_scale_data(1100, chunk_rows=400)
    Xn, yn, gn, bn = scale.numpy_scale_data(1100, chunk_rows=400)
    assert X.chunks[0] == (400, 400, 300)
    np.testing.assert_array_equal(X.compute(), Xn)
    np.testing.assert_array_equal(base.compute(), bn)
    assert set(np.unique(gn)) <= {0.0, 1.0, 2.0, 3.0}


@pytest.mark.dask
def test_scale_mcboost_part_and_report():
    rows = scale.run_mcboost(
        sizes=(3000,), rounds=2, chunk_rows=1000, worker_memory=2**31, numpy_max=3000
    )
    dask_row, numpy_row = rows
    assert dask_row["path"] == "dask" and numpy_row["path"] == "numpy"
    assert dask_row["rounds"] == numpy_row["rounds"] == 2
    # the same rows, fitted out of core and in memory, give the same rounds
    assert dask_row["coef_diff"] < 1e-8
    assert 0 < dask_row["peak_worker_gb"] and dask_row["below_limit"]
    text = scale.report(rows)
    assert "coef_diff" in text
