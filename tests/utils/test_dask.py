import numpy as np
import pytest

from skml.utils import is_dask_collection, weighted_quantile
from skml.utils._dask import RowBlocks, blockwise_weighted_quantile, sum_blocks

da = pytest.importorskip("dask.array")


def _values(block):
    return np.asarray(block["X"]), np.asarray(block["w"])


def _quantiles(X, w, levels, chunks):
    blocks = RowBlocks({"X": da.from_array(X, chunks=(chunks, -1)), "w": w})
    return blockwise_weighted_quantile(lambda block: _values(block), (), blocks, levels)


@pytest.mark.parametrize("chunks", [7, 100, 1000])
def test_blockwise_quantile_equals_the_in_memory_one(chunks):
    rng = np.random.default_rng(0)
    n = 1000
    X = np.column_stack(
        [
            rng.normal(size=n),  # continuous
            rng.integers(0, 3, n).astype(float),  # heavy ties
            np.full(n, 2.5),  # constant
            np.r_[rng.normal(size=n - 200), np.full(200, 7.0)],  # a point mass
        ]
    )
    w = rng.integers(0, 4, n).astype(float)  # integer weights, zeros included
    levels = [0.0, 0.01, 0.25, 0.5, 0.75, 0.999, 1.0]
    got = _quantiles(X, w, levels, chunks)
    np.testing.assert_array_equal(got, weighted_quantile(X, levels, w))


def test_blockwise_quantile_narrows_a_large_sample():
    # More rows than one collection holds: the histogram passes must narrow
    # each quantile to a bin before the exact answer is read.
    rng = np.random.default_rng(1)
    X = rng.standard_t(3, size=(600_000, 1))
    w = rng.uniform(0.5, 2.0, len(X))
    levels = [0.1, 0.5, 0.9]
    got = _quantiles(X, w, levels, 100_000)
    expected = weighted_quantile(X, levels, w)
    # the weights are not integers: a level can sit within rounding of a
    # cumulative weight, so allow the neighbouring order statistic
    order = np.sort(X[:, 0])
    for g, e in zip(got[:, 0], expected[:, 0]):
        assert abs(np.searchsorted(order, g) - np.searchsorted(order, e)) <= 1


def test_blockwise_quantile_needs_positive_weight():
    X = np.ones((10, 1))
    with pytest.raises(ValueError, match="positive"):
        _quantiles(X, np.zeros(10), [0.5], 3)


def test_row_blocks_align_numpy_and_dask_inputs():
    X = da.from_array(np.arange(20.0).reshape(10, 2), chunks=(4, 2))
    blocks = RowBlocks({"X": X, "y": np.arange(10.0), "w": None})
    assert blocks.lengths == [4, 4, 2]
    import dask

    last = dask.compute(blocks.block(2))[0]
    np.testing.assert_array_equal(last["y"], [8.0, 9.0])
    assert last["w"] is None
    with pytest.raises(ValueError, match="rows"):
        RowBlocks({"X": X, "y": np.arange(9.0)})


def test_is_dask_collection():
    assert is_dask_collection(da.ones(3))
    assert not is_dask_collection(np.ones(3))
    assert not is_dask_collection([1, 2])


def test_sum_blocks_keeps_structure():
    parts = [{"a": np.ones(2), "b": (np.ones(1), np.zeros(1))}] * 3
    total = sum_blocks(parts)
    np.testing.assert_array_equal(total["a"], [3.0, 3.0])
    np.testing.assert_array_equal(total["b"][0], [3.0])
