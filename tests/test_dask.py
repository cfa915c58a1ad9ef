"""skml on a dask.distributed cluster: grid searches, threads and devices.

One ``LocalCluster`` of two worker processes (one thread each) serves the
whole module. The worker processes are spawned, so the functions sent to
them live at module level.
"""

import os
import pickle
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skml.kernel_approximation import NoSpikeWarning
from skml.utils import all_estimators, find_tensors, resolve_device

from ._instances import make_instance, small_data

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

pytestmark = pytest.mark.dask

ESTIMATORS = all_estimators()

# One cheap parameter per estimator, with two values that score differently
# on the small data (so a result matched to the wrong candidate shows).
GRIDS = {
    "COCOClassifier": {"step_size": [0.01, 1.0]},
    "COCOLearner": {"alpha": [1e-4, 1e-2]},
    "GRASPFineTuner": {"lr": [1e-2, 3e-2]},
    "GRASPRegressor": {"lr": [1e-2, 3e-2]},
    "MCBoostClassifier": {"min_samples_leaf": [5, 20]},
    "MCBoostRegressor": {"min_samples_leaf": [5, 20]},
    "NWAttentionRegressor": {"max_iter": [5, 50]},
    "NonlinearFactorImputer": {"n_components": [1, 2]},
    "NonlinearFactorModel": {"n_components": [1, 2]},
    "OneStepFeatureMap": {"n_features": [16, 32]},
    "SROTransport": {"reg": [0.05, 0.1]},
    "SpikedRandomFeatures": {"n_features": [16, 32]},
}
# Shorter training where the defaults take seconds on 60 rows.
FAST = {
    "GRASPFineTuner": {"naive_epochs": 20, "grasp_epochs": 20},
    "GRASPRegressor": {"naive_epochs": 20, "grasp_epochs": 20},
}


@pytest.fixture(scope="module")
def client():
    # The nanny writes its pre-spawn variables (OMP_NUM_THREADS=1, ...) into
    # this process's environment before it spawns a worker, and values
    # already there override dask's config: start from dask's defaults and
    # give the rest of the test session its environment back.
    keys = [*dask.config.get("distributed.nanny.pre-spawn-environ"), "PYTHONHASHSEED"]
    saved = {key: os.environ.pop(key, None) for key in keys}
    try:
        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _small_fit(name, cls, **params):
    """A fast instance of ``cls`` with ``params``, and 60 rows that suit it."""
    estimator = make_instance(cls)
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=0)
    estimator.set_params(**FAST.get(name, {}), **params)
    X, y = small_data(estimator, np.random.default_rng(0))
    return estimator, X, y


def _search(name, cls, n_jobs):
    estimator, X, y = _small_fit(name, cls)
    grid = GRIDS[name]
    if not hasattr(estimator, "score"):
        # a feature map without a score of its own is scored by what a ridge
        # regression makes of its features
        estimator = make_pipeline(estimator, Ridge())
        step = estimator.steps[0][0]
        grid = {f"{step}__{key}": values for key, values in grid.items()}
    search = GridSearchCV(estimator, grid, cv=2, n_jobs=n_jobs, error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", NoSpikeWarning)
        search.fit(X, y)
    return search, X


def _executed(dask_worker):
    return dask_worker.state.executed_count


def _threads_here():
    from skml.utils import thread_budget

    return (
        torch.get_num_threads(),
        thread_budget(),
        os.environ.get("OMP_NUM_THREADS"),
    )


@pytest.mark.parametrize("name, cls", ESTIMATORS, ids=[name for name, _ in ESTIMATORS])
def test_grid_search_on_dask_matches_sequential(name, cls, client):
    assert name in GRIDS, f"{name} has no parameter grid in tests/test_dask.py"
    before = sum(client.run(_executed).values())
    with joblib.parallel_backend("dask"):
        on_dask, X = _search(name, cls, n_jobs=2)
    after = sum(client.run(_executed).values())
    # 2 candidates x 2 folds ran on the workers; the refit runs here
    assert after - before >= 4

    sequential, _ = _search(name, cls, n_jobs=1)
    np.testing.assert_allclose(
        on_dask.cv_results_["mean_test_score"],
        sequential.cv_results_["mean_test_score"],
        rtol=1e-6,
    )
    assert on_dask.best_params_ == sequential.best_params_
    best = on_dask.best_estimator_
    method = best.predict if hasattr(best, "predict") else best.transform
    assert np.all(np.isfinite(method(X[:7])))


def test_worker_thread_budget_is_its_share(client):
    workers = client.scheduler_info()["workers"].values()
    assert [info["nthreads"] for info in workers] == [1, 1]
    # the nanny sets these before it spawns a worker process, whatever
    # threads_per_worker is; torch's MKL build takes its count from
    # MKL_NUM_THREADS, the OpenMP code from OMP_NUM_THREADS
    environ = dask.config.get("distributed.nanny.pre-spawn-environ")
    assert str(environ["OMP_NUM_THREADS"]) == "1"
    assert str(environ["MKL_NUM_THREADS"]) == "1"

    # client.run calls the function in the worker's main thread
    for address, found in client.run(_threads_here).items():
        assert found == (1, 1, "1"), address
    # a task (a fit) runs in one of the worker's executor threads
    assert client.submit(_threads_here, pure=False).result() == (1, 1, "1")


@pytest.mark.parametrize("name, cls", ESTIMATORS, ids=[name for name, _ in ESTIMATORS])
def test_fit_on_worker_with_auto_device(name, cls, client):
    estimator, X, y = _small_fit(name, cls, device="auto")
    fitted = client.submit(estimator.fit, X, y, pure=False).result()
    assert fitted is not estimator
    # "auto" resolved on the worker, at fit time: the CPU where, as here,
    # the worker sees no GPU
    on_worker = client.submit(resolve_device, "auto", pure=False).result()
    assert fitted.device_ == on_worker
    if not torch.cuda.is_available():
        assert fitted.device_ == torch.device("cpu")
    assert fitted.device == "auto"
    assert find_tensors(fitted) == []

    method = "predict" if hasattr(fitted, "predict") else "transform"
    expected = getattr(fitted, method)(X[:7])
    loaded = pickle.loads(pickle.dumps(fitted))
    assert loaded.device_ == fitted.device_
    np.testing.assert_array_equal(getattr(loaded, method)(X[:7]), expected)
