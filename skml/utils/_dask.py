"""Dask collections, block by block: what skml's out-of-core paths share.

``dask`` is an optional dependency (``pip install "skml[dask]"``). Nothing
here imports it unless the caller passed a dask collection, and the
estimators only ask :func:`is_dask_collection`, which never imports it.

The out-of-core fits work on aligned *row blocks*: every input (features,
labels, weights, groups, base predictions) is rechunked to the row chunks
of ``X`` with all of its columns in one chunk, and a block function receives
the numpy arrays of one block. Only per-block statistics come back to the
client, where they are summed in block order.
"""

import sys
from numbers import Integral

import numpy as np

# Distinct values collected per target when an exact quantile is narrowed
# down to one histogram bin (ties collapse: a bin of equal values is one).
_COLLECT_ROWS = 200_000
# Histogram bins per refinement pass of an exact quantile.
_QUANTILE_BINS = 4096


def is_dask_collection(obj):
    """Whether ``obj`` is a dask collection (array, dataframe, series).

    Never imports dask: if it was not imported, nothing can be a dask
    collection.

    Parameters
    ----------
    obj : object

    Returns
    -------
    bool

    Examples
    --------
    >>> import numpy as np
    >>> from skml.utils import is_dask_collection
    >>> is_dask_collection(np.ones(3))
    False
    """
    if "dask" not in sys.modules:
        return False
    import dask

    return bool(dask.is_dask_collection(obj))


def import_dask():
    """``(dask, dask.array)``, or an ImportError that says how to install them."""
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask is installed in CI
        raise ImportError(
            'Fitting on dask collections needs dask: pip install "skml[dask]".'
        ) from exc
    return dask, da


def as_dask_array(obj, name):
    """A dask array from a dask array, dataframe or series.

    Parameters
    ----------
    obj : dask collection
    name : str
        The argument's name, for error messages.

    Returns
    -------
    array : dask.array.Array
        With known chunk sizes.
    columns : list of str or None
        A dataframe's column names.
    """
    _, da = import_dask()
    columns = None
    if not isinstance(obj, da.Array):
        if not hasattr(obj, "to_dask_array"):
            raise TypeError(
                f"{name} is a dask collection of type {type(obj).__name__}; pass "
                "a dask array, dataframe or series."
            )
        if getattr(obj, "ndim", 1) == 2:
            columns = [str(c) for c in obj.columns]
        obj = obj.to_dask_array(lengths=True)
    if any(np.isnan(c) for c in obj.chunks[0]):
        obj = obj.compute_chunk_sizes()
    return obj, columns


class RowBlocks:
    """Aligned row blocks of several dask arrays.

    Parameters
    ----------
    arrays : dict of str to dask array, numpy array or None
        The first entry (``X``) fixes the row chunks; numpy arrays become
        dask arrays with those chunks; ``None`` stays ``None`` in every block.

    Attributes
    ----------
    n_rows : int
    lengths : list of int
        Rows of each block.
    """

    def __init__(self, arrays):
        _, da = import_dask()
        first = next(iter(arrays.values()))
        chunks = first.chunks[0]
        self.n_rows = int(sum(chunks))
        self.lengths = [int(c) for c in chunks]
        self._delayed = {}
        for key, value in arrays.items():
            if value is None:
                self._delayed[key] = [None] * len(chunks)
                continue
            if value.shape[0] != self.n_rows:
                raise ValueError(
                    f"{key} has {value.shape[0]} rows but X has {self.n_rows}; "
                    "pass one row per sample."
                )
            if not isinstance(value, da.Array):
                value = np.asarray(value)
                value = da.from_array(value, chunks=(chunks,) + value.shape[1:])
            spec = {0: chunks}
            spec.update(dict.fromkeys(range(1, value.ndim), -1))
            value = value.rechunk(spec)
            # Unoptimised: a fused graph would recompute a block shared by
            # several inputs (one generator for X and y) once per input.
            blocks = value.to_delayed(optimize_graph=False).ravel().tolist()
            self._delayed[key] = blocks
        self.keys = list(arrays)

    def __len__(self):
        return len(self.lengths)

    def block(self, i, keys=None):
        """The delayed numpy arrays of block ``i``, a dict by name (only
        ``keys``: a task depends on every block it receives, so a pass that
        reads the weights only must not be handed ``X``)."""
        return {key: self._delayed[key][i] for key in keys or self.keys}


def compute_blocks(fn, blocks, *args, keys=None):
    """``fn(*args, block)`` on every block (a dict of numpy arrays, only
    ``keys`` when given), computed.

    Returns
    -------
    list
        One result per block, in block order.
    """
    dask, _ = import_dask()
    task = dask.delayed(fn, pure=True)
    # Arrays and objects go into the graph once, not once per task.
    shared = [
        a
        if a is None or callable(a) or np.isscalar(a)
        else dask.delayed(a, pure=True, traverse=False)
        for a in args
    ]
    tasks = [task(*shared, blocks.block(i, keys)) for i in range(len(blocks))]
    return list(dask.compute(*tasks))


def sum_blocks(results):
    """Sum per-block results (tuples or dicts of arrays) in block order."""
    first = results[0]
    if isinstance(first, dict):
        return {key: sum_blocks([r[key] for r in results]) for key in first}
    if isinstance(first, tuple):
        return tuple(sum_blocks([r[j] for r in results]) for j in range(len(first)))
    total = np.array(first, dtype=np.float64, copy=True)
    for value in results[1:]:
        total = total + value
    return total


def _range_block(values_fn, args, block):
    V, w = values_fn(*args, block)
    V = V[w > 0]
    if len(V) == 0:
        k = V.shape[1]
        return np.full(k, np.inf), np.full(k, -np.inf), 0.0
    return V.min(0), V.max(0), float(w[w > 0].sum())


def _hist_block(values_fn, args, cols, lower, upper, edges, block):
    V, w = values_fn(*args, block)
    keep = w > 0
    V, w = V[keep], w[keep]
    n_bins = edges.shape[1]
    hist_w = np.zeros((len(cols), n_bins))
    hist_c = np.zeros((len(cols), n_bins))
    for t, col in enumerate(cols):
        v = V[:, col]
        inside = (v > lower[t]) & (v <= upper[t])
        idx = _bin_index(v[inside], lower[t], upper[t], edges[t])
        hist_w[t] = np.bincount(idx, w[inside], minlength=n_bins)
        hist_c[t] = np.bincount(idx, minlength=n_bins)
    return hist_w, hist_c


def _bin_index(v, lower, upper, edges):
    """``np.searchsorted(edges, v, side="left")`` for equally spaced edges
    in (lower, upper]: an arithmetic guess, corrected by one comparison each
    way (so rounding in the guess cannot move a value across an edge)."""
    n_bins = len(edges)
    width = upper - lower
    if not width > 0:
        return np.searchsorted(edges, v, side="left")
    guess = np.ceil((v - lower) / width * n_bins) - 1
    idx = np.clip(guess, 0, n_bins - 1).astype(np.intp)
    for _ in range(2):
        up = (v > edges[idx]) & (idx < n_bins - 1)
        down = (idx > 0) & (v <= edges[np.maximum(idx - 1, 0)])
        if not (up.any() or down.any()):
            break
        idx = idx + up - down
    if np.any(v > edges[idx]) or np.any((idx > 0) & (v <= edges[idx - 1])):
        idx = np.searchsorted(edges, v, side="left")  # pragma: no cover
    return idx


def _collect_block(values_fn, args, cols, lower, upper, block):
    V, w = values_fn(*args, block)
    keep = w > 0
    V, w = V[keep], w[keep]
    out = []
    for t, col in enumerate(cols):
        v = V[:, col]
        inside = (v > lower[t]) & (v <= upper[t])
        values, inverse = np.unique(v[inside], return_inverse=True)
        out.append((values, np.bincount(inverse, w[inside], minlength=len(values))))
    return out


def blockwise_weighted_quantile(values_fn, args, blocks, quantiles, keys=None):
    """Exact weighted quantiles of every column of a blockwise matrix.

    The same numbers as :func:`~skml.utils.weighted_quantile` (inverted CDF,
    no interpolation, zero-weight rows ignored) without holding the rows:
    one pass finds each column's range, histogram passes narrow every
    quantile to one bin, and a last pass collects that bin's distinct
    values. Each pass reads every block once.

    Parameters
    ----------
    values_fn : callable
        ``values_fn(*args, block) -> (V, w)``: the block's values, an array of
        shape (n_block, n_columns), and weights of shape (n_block,).
    args : tuple
        Its leading arguments (sent once per task).
    blocks : RowBlocks
    quantiles : array-like of shape (n_quantiles,)
        Levels in [0, 1].
    keys : list of str, default=None
        The block entries ``values_fn`` reads (all when None).

    Returns
    -------
    ndarray of shape (n_quantiles, n_columns)
    """
    q = np.atleast_1d(np.asarray(quantiles, dtype=np.float64))
    ranges = compute_blocks(_range_block, blocks, values_fn, args, keys=keys)
    lo = np.min([r[0] for r in ranges], axis=0)
    hi = np.max([r[1] for r in ranges], axis=0)
    total = float(sum(r[2] for r in ranges))
    if total <= 0:
        raise ValueError("sample_weight must have at least one positive entry.")
    k = len(lo)
    # One target per (quantile, column); the answer lies in (lower, upper]
    # and weight_below is the weight of the values <= lower.
    cols = np.tile(np.arange(k), len(q))
    target = np.maximum(np.repeat(q, k) * total, np.finfo(np.float64).tiny)
    lower = np.nextafter(lo[cols], -np.inf)
    upper = hi[cols].copy()
    weight_below = np.zeros(len(cols))
    rows_inside = np.full(len(cols), np.inf)
    done = lo[cols] == hi[cols]
    for _ in range(8):
        if np.all(done):
            break
        frac = np.arange(1, _QUANTILE_BINS + 1) / _QUANTILE_BINS
        edges = lower[:, None] + (upper - lower)[:, None] * frac[None, :]
        edges[:, -1] = upper
        parts = compute_blocks(
            _hist_block, blocks, values_fn, args, cols, lower, upper, edges, keys=keys
        )
        hist_w = sum_blocks([p[0] for p in parts])
        hist_c = sum_blocks([p[1] for p in parts])
        for t in np.flatnonzero(~done):
            cum = weight_below[t] + np.cumsum(hist_w[t])
            j = min(int(np.searchsorted(cum, target[t], side="left")), len(cum) - 1)
            if j > 0:
                weight_below[t] = cum[j - 1]
                lower[t] = edges[t, j - 1]
            upper[t] = edges[t, j]
            # Few rows left, or as many as before: ties, which the
            # collection pass collapses to one value each.
            done[t] |= hist_c[t, j] <= _COLLECT_ROWS or hist_c[t, j] == rows_inside[t]
            rows_inside[t] = hist_c[t, j]
    parts = compute_blocks(
        _collect_block, blocks, values_fn, args, cols, lower, upper, keys=keys
    )
    out = np.empty(len(cols))
    for t in range(len(cols)):
        values = np.concatenate([p[t][0] for p in parts])
        weights = np.concatenate([p[t][1] for p in parts])
        values, inverse = np.unique(values, return_inverse=True)
        mass = np.bincount(inverse, weights, minlength=len(values))
        cum = weight_below[t] + np.cumsum(mass)
        j = min(int(np.searchsorted(cum, target[t], side="left")), len(values) - 1)
        out[t] = values[j]
    return out.reshape(len(q), k)


def check_block_count(n_rows, name="X"):
    """An out-of-core fit needs rows: raise for an empty collection."""
    if not isinstance(n_rows, Integral) or n_rows < 2:
        raise ValueError(f"{name} has {n_rows} rows; at least 2 are needed to fit.")
