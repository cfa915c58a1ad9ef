"""Scaling out: out-of-core MCBoost on a dask cluster, and searches on dask.

``python -m skml bench scale`` (needs ``pip install "skml[dask]"``):

- ``mcboost``: ``MCBoostRegressor(auditor="ridge", early_stopping=False,
  max_iter=ROUNDS)`` on 10^5, 10^6 and 10^7 synthetic rows x 20 features
  (plus a 4-level group label and a base model's predictions), generated
  block by block on the workers (``CHUNK_ROWS`` rows a block, never held
  whole), on a fresh ``LocalCluster`` of 2 single-threaded worker processes
  with a memory limit of ``WORKER_MEMORY`` each, below the data size at
  10^7 rows. Reported: wall time, rounds, each worker's peak RSS (the
  process's high-water mark, ``ru_maxrss``) against the limit, and, on the
  sizes up to ``NUMPY_MAX`` rows, the in-memory fit of the same rows in a
  fresh process (wall time, peak RSS, largest coefficient difference to the
  dask fit). The rounds are fixed, so both paths do the same work; the
  default holdout rule would pick a different number of rounds per size.
- ``search``: ``GridSearchCV`` (2 candidates x 3 folds + refit) over
  ``NWAttentionRegressor`` on scikit-learn's diabetes table and over
  ``SROTransport`` on scikit-learn's digits (PCA to 16 dimensions, digits
  0-4 to 5-9), with ``n_jobs=1``, with joblib's loky backend and 2 jobs, and
  with the dask backend on a 2-worker ``LocalCluster`` (started before the
  clock; its start time is reported apart), same grid, same run.
"""

import multiprocessing
import resource
import time
import warnings

import numpy as np

from ..utils import format_table
from ._common import Benchmark, Part, data_rows

N_FEATURES = 20
ROUNDS = 10
CHUNK_ROWS = 50_000
WORKER_MEMORY = 2**30  # 1 GiB
NUMPY_MAX = 1_000_000
SEED = 0


# --------------------------------------------------------------------- data
def scale_block(seed, index, rows, d=N_FEATURES):
    """One block of the synthetic audit set: ``(X, y, groups, base)``.

    The base model sees the features' main effects but not the group
    effects, which the audit has to find.
    """
    rng = np.random.default_rng([seed, index])
    X = rng.normal(size=(rows, d))
    groups = rng.integers(0, 4, rows).astype(np.float64)
    signal = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + X[:, 2] + 0.3 * X[:, 3:8].sum(1)
    f = signal + (groups == 1) * (0.5 + X[:, 4]) - 0.4 * (groups == 3)
    y = f + 0.5 * rng.normal(size=rows)
    base = signal + 0.1 * rng.normal(size=rows)
    return X, y, groups, base


def _chunks(n, chunk_rows):
    sizes = [chunk_rows] * (n // chunk_rows)
    if n % chunk_rows:
        sizes.append(n % chunk_rows)
    return sizes


def dask_scale_data(n, chunk_rows=CHUNK_ROWS, seed=SEED):
    """The audit set as lazy dask arrays: each block is generated where it
    is read (and again at every pass), so the rows are never held whole."""
    import dask
    import dask.array as da

    make = dask.delayed(scale_block, pure=True, nout=4)
    X, y, g, base = [], [], [], []
    for i, rows in enumerate(_chunks(n, chunk_rows)):
        bx, by, bg, bb = make(seed, i, rows)
        X.append(da.from_delayed(bx, (rows, N_FEATURES), np.float64))
        y.append(da.from_delayed(by, (rows,), np.float64))
        g.append(da.from_delayed(bg, (rows,), np.float64))
        base.append(da.from_delayed(bb, (rows,), np.float64))
    return tuple(da.concatenate(parts) for parts in (X, y, g, base))


def numpy_scale_data(n, chunk_rows=CHUNK_ROWS, seed=SEED):
    """The same rows, in memory."""
    blocks = [
        scale_block(seed, i, rows) for i, rows in enumerate(_chunks(n, chunk_rows))
    ]
    return tuple(np.concatenate(parts) for parts in zip(*blocks))


def _mcboost(rounds):
    from skml.calibration import MCBoostRegressor

    return MCBoostRegressor(auditor="ridge", early_stopping=False, max_iter=rounds)


def _numpy_fit(n, rounds, chunk_rows):
    """In a fresh process: the in-memory fit's time, peak RSS and rounds."""
    X, y, g, base = numpy_scale_data(n, chunk_rows)
    start = time.perf_counter()
    model = _mcboost(rounds).fit(X, y, groups=g, base_predictions=base)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return seconds, peak, [r["coef"] for r in model.rounds_]


def _peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_mcboost(
    sizes=(100_000, 1_000_000, 10_000_000),
    rounds=ROUNDS,
    chunk_rows=CHUNK_ROWS,
    worker_memory=WORKER_MEMORY,
    numpy_max=NUMPY_MAX,
):
    """Out-of-core MCBoost rows; see the module docstring."""
    from distributed import Client, LocalCluster

    rows = []
    for n in sizes:
        data_bytes = n * (N_FEATURES + 3) * 8
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                memory_limit=worker_memory,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):
            X, y, g, base = dask_scale_data(n, chunk_rows)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = _mcboost(rounds).fit(X, y, groups=g, base_predictions=base)
            seconds = time.perf_counter() - start
            peaks = client.run(_peak_rss)
        peak = max(peaks.values())
        row = {
            "part": "mcboost",
            "path": "dask",
            "rows": n,
            "features": N_FEATURES,
            "data_gb": data_bytes / 1e9,
            "worker_limit_gb": worker_memory / 1e9,
            "peak_worker_gb": peak / 1e9,
            "below_limit": bool(peak < worker_memory),
            "limit_below_data": bool(worker_memory < data_bytes),
            "rounds": model.n_iter_,
            "seconds": seconds,
            "coef_diff": np.nan,
        }
        rows.append(row)
        if n <= numpy_max:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(1) as pool:
                secs, rss, coefs = pool.apply(_numpy_fit, (n, rounds, chunk_rows))
            diff = max(
                float(np.max(np.abs(a - b["coef"])))
                for a, b in zip(coefs, model.rounds_)
            )
            row["coef_diff"] = diff
            rows.append(
                {
                    "part": "mcboost",
                    "path": "numpy",
                    "rows": n,
                    "features": N_FEATURES,
                    "data_gb": data_bytes / 1e9,
                    "worker_limit_gb": np.nan,
                    "peak_worker_gb": rss / 1e9,
                    "below_limit": None,
                    "limit_below_data": None,
                    "rounds": len(coefs),
                    "seconds": secs,
                    "coef_diff": diff,
                }
            )
    return rows


# ------------------------------------------------------------------- search
def _search_cases(quick):
    from sklearn.datasets import load_diabetes, load_digits
    from sklearn.decomposition import PCA

    from skml.attention import NWAttentionRegressor
    from skml.transport import SROTransport

    X, y = load_diabetes(return_X_y=True)
    digits, labels = load_digits(return_X_y=True)
    Z = PCA(16, random_state=0).fit_transform(digits)
    Z = Z / Z.std()
    source, target = Z[labels < 5], Z[labels >= 5]
    if quick:
        X, y, source, target = X[:200], y[:200], source[:200], target[:200]
    return [
        (
            "NWAttentionRegressor",
            NWAttentionRegressor(random_state=0),
            {"n_heads": [1, 2]},
            (X, y),
            {},
        ),
        (
            "SROTransport",
            SROTransport(random_state=0),
            {"reg": [0.05, 0.1]},
            (source,),
            {"X_target": target},
        ),
    ]


def run_search(quick=False):
    """GridSearchCV wall times per backend; see the module docstring."""
    import joblib
    from distributed import Client, LocalCluster
    from sklearn.model_selection import GridSearchCV

    rows = []
    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    cluster_seconds = time.perf_counter() - start
    try:
        for name, estimator, grid, args, params in _search_cases(quick):
            scores = {}
            for backend, n_jobs in (("sequential", 1), ("loky", 2), ("dask", 2)):
                search = GridSearchCV(
                    estimator, grid, cv=3, n_jobs=n_jobs, error_score="raise"
                )
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with joblib.parallel_backend(backend if n_jobs > 1 else "loky"):
                        search.fit(*args, **params)
                seconds = time.perf_counter() - start
                scores[backend] = search.cv_results_["mean_test_score"]
                rows.append(
                    {
                        "part": "search",
                        "estimator": name,
                        "backend": backend,
                        "n_jobs": n_jobs,
                        "fits": 1 + 3 * len(next(iter(grid.values()))),
                        "seconds": seconds,
                        "cluster_start_s": cluster_seconds if backend == "dask" else 0,
                        "same_scores": bool(
                            np.allclose(scores[backend], scores["sequential"])
                        ),
                    }
                )
    finally:
        client.close()
        cluster.close()
    return rows


BENCHMARK = Benchmark(
    "scale",
    [
        Part(
            "mcboost",
            lambda ctx, **config: run_mcboost(**config),
            quick={"sizes": (20_000, 100_000), "rounds": 3, "numpy_max": 100_000},
            help="out-of-core MCBoost, 1e5-1e7 rows x 20, capped workers",
        ),
        Part(
            "search",
            lambda ctx, **config: run_search(quick=ctx.quick, **config),
            help="GridSearchCV: n_jobs=1, loky x2, dask x2 (NW, SROT)",
        ),
    ],
    description="dask: out-of-core MCBoost and searches on a local cluster",
)
PARTS = BENCHMARK.part_names


def run(quick=False, device="cpu", parts=None):
    """Run the parts of the benchmark (all by default).

    Parameters
    ----------
    quick : bool, default=False
        MCBoost on 2e4 and 1e5 rows, 3 rounds; the searches on 200 rows.
    device : str or torch.device, default="cpu"
        Recorded in the meta row; the workers use the estimators' default
        device (the CPU).
    parts : list of str, default=None
        A subset of ``PARTS``.

    Returns
    -------
    list of dict
    """
    return BENCHMARK.run(quick=quick, device=device, parts=parts)


def report(rows):
    """The MCBoost and search tables, and the acceptance lines."""
    rows = data_rows(rows)
    out = []
    mc = [r for r in rows if r["part"] == "mcboost"]
    if mc:
        cols = [
            "path",
            "rows",
            "data_gb",
            "worker_limit_gb",
            "peak_worker_gb",
            "rounds",
            "seconds",
            "coef_diff",
        ]
        out.append(format_table([{c: r[c] for c in cols} for r in mc]))
        big = [r for r in mc if r["path"] == "dask" and r["limit_below_data"]]
        for r in big:
            verdict = "PASS" if r["below_limit"] else "FAIL"
            out.append(
                f"{r['rows']:.0e} rows x {r['features']}: data {r['data_gb']:.2f} GB, "
                f"worker limit {r['worker_limit_gb']:.2f} GB, peak worker RSS "
                f"{r['peak_worker_gb']:.2f} GB ({verdict}), {r['rounds']} rounds "
                f"in {r['seconds']:.0f} s"
            )
    search = [r for r in rows if r["part"] == "search"]
    if search:
        out.append(format_table(search))
    return "\n\n".join(out)
