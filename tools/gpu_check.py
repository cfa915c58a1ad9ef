"""Check skml's CUDA paths in one short run on a machine with a GPU.

For every estimator of :func:`skml.utils.all_estimators` that takes a
``device`` parameter, the script

1. fits it on ``"cpu"`` and on ``"cuda"`` (same ``random_state``, float64 on
   both sides) and compares the predictions: the largest absolute difference
   divided by the largest absolute CPU output must be at most ``--tol``;
2. pickles the CUDA-fitted model, unpickles it in a subprocess that sees no
   GPU (``CUDA_VISIBLE_DEVICES=""``) and checks that exactly one
   :class:`skml.utils.DeviceFallbackWarning` is emitted and that the
   predictions there equal the CPU model's;
3. unless ``--quick``, times one fit of a larger problem on each device, each
   in a subprocess with a time limit, so that the whole run stays within a
   few minutes.

Without CUDA it prints ``SKIPPED: CUDA is not available on this machine``
and exits 0. It exits 1 when an agreement or pickle check fails or errors.

Usage::

    python tools/gpu_check.py [--quick] [--out rows.json] [--only NAME ...]
"""

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = "SKIPPED: CUDA is not available on this machine"
TOL = 1e-6
# Seconds shared by the large CPU fits, and the cap of one large CUDA fit.
LARGE_CPU_BUDGET = 90.0
LARGE_CUDA_TIMEOUT = 30.0
# Time a subprocess gets on top of its timed fit (imports, CUDA warm-up).
CHILD_STARTUP = 45.0


def _import_skml():
    # ``python tools/gpu_check.py`` puts tools/, not the repository, on the path.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import skml.utils

    return skml.utils


# --------------------------------------------------------------- problems
def _regression_problem(large=False):
    from sklearn.datasets import make_regression

    n = 20_000 if large else 2_000
    X, y = make_regression(
        n_samples=n + 500, n_features=10, n_informative=5, noise=5.0, random_state=0
    )
    return (X[:n], y[:n]), {}, "predict", (X[n:],)


def _attention_problem(large=False):
    # A default fit trains on every pair of rows: 800 rows keep the CPU side
    # of the check short, the large problem shows the GPU's reach.
    (X, y), kwargs, method, (X_new,) = _regression_problem(large)
    n = 8_000 if large else 800
    return (X[:n], y[:n]), kwargs, method, (X_new,)


def _classification_problem(large=False):
    from sklearn.datasets import make_classification

    n = 20_000 if large else 2_000
    X, y = make_classification(
        n_samples=n + 500, n_features=10, n_informative=5, random_state=0
    )
    return (X[:n], y[:n]), {}, "predict_proba", (X[n:],)


def _transport_problem(large=False):
    from skml.datasets import make_gaussian_mixtures

    n = 4_000 if large else 1_000
    # The mixtures are drawn before the points, so the extra rows come from
    # the same source distribution as the fitted ones.
    Xs, Xt = make_gaussian_mixtures(n + 250, 5, random_state=0)
    # Fitted rows take the barycentric map, new rows the out-of-sample map.
    X_new = np.vstack([Xs[:250], Xs[n:]])
    return (Xs[:n],), {"X_target": Xt[:n]}, "transform", (X_new,)


def _feature_map_problem(large=False):
    # A single-index target, so the one step has a direction to find.
    rng = np.random.default_rng(0)
    n = 20_000 if large else 2_000
    X = rng.standard_normal((n + 500, 50))
    y = np.tanh(2 * X[:, 0]) + 0.1 * rng.standard_normal(n + 500)
    return (X[:n], y[:n]), {}, "transform", (X[n:],)


def _factor_problem(large=False):
    from skml.datasets import make_nonlinear_factor_matrix

    n, p = (2000, 2000) if large else (400, 300)
    data = make_nonlinear_factor_matrix(
        n + 100,
        p,
        rank=3,
        link="tanh",
        missing=0.8 if large else 0.5,
        random_state=0,
    )
    # New rows are folded in with their own missing entries, then completed.
    return (data.data[:n],), {}, "complete", (data.data[n:],)


def _stream_problem(large=False, classify=False):
    # A half-space per row: the constrained path of the online learners.
    rng = np.random.default_rng(0)
    n, d = (100_000, 20) if large else (5_000, 10)
    X = rng.normal(size=(n + 500, d))
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n + 500)
    if classify:
        y = (y > 0).astype(int)
    A = rng.uniform(-1, 1, (n, d))
    kwargs = {"constraint_A": A, "constraint_b": np.full(n, 0.1)}
    method = "predict_proba" if classify else "predict"
    return (X[:n], y[:n]), kwargs, method, (X[n:],)


def _stream_classification_problem(large=False):
    return _stream_problem(large, classify=True)


def _finetune_problem(large=False):
    from skml.datasets import make_persona_drift

    data = make_persona_drift(12_000 if large else 3_000, random_state=0)
    kwargs = {"X_reference": data.X_reference}
    return (data.X, data.y), kwargs, "predict_proba", (data.X_test,)


def _finetune_regression_problem(large=False):
    # The persona organism's logits as regression targets.
    from skml.datasets import make_persona_drift

    data = make_persona_drift(12_000 if large else 3_000, random_state=0)
    import torch

    with torch.no_grad():
        y = data.module(torch.as_tensor(data.X)).numpy()
    kwargs = {"X_reference": data.X_reference}
    return (data.X, y), kwargs, "predict", (data.X_test,)


# name -> callable(large=False) returning (fit_args, fit_kwargs, method_name,
# method_args). tests/test_gpu_check.py fails when an estimator with a
# ``device`` parameter has no entry here.
REGISTRY = {
    "GRASPFineTuner": _finetune_problem,
    "GRASPRegressor": _finetune_regression_problem,
    "COCOClassifier": _stream_classification_problem,
    "COCOLearner": _stream_problem,
    "MCBoostClassifier": _classification_problem,
    "MCBoostRegressor": _regression_problem,
    "NonlinearFactorImputer": _factor_problem,
    "NonlinearFactorModel": _factor_problem,
    "NWAttentionRegressor": _attention_problem,
    "OneStepFeatureMap": _feature_map_problem,
    "SpikedRandomFeatures": _feature_map_problem,
    "SROTransport": _transport_problem,
}


def device_estimators():
    """``(name, class)`` of the skml estimators that take a ``device``."""
    utils = _import_skml()
    return [
        (name, cls)
        for name, cls in utils.all_estimators()
        if "device" in inspect.signature(cls.__init__).parameters
    ]


def make_estimator(cls, device):
    """An instance on ``device``, seeded when the class takes a seed."""
    params = {"device": device}
    if "random_state" in inspect.signature(cls.__init__).parameters:
        params["random_state"] = 0
    return cls(**params)


# ------------------------------------------------------------ comparisons
def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed_fit(estimator, fit_args, fit_kwargs):
    """Fit in place and return the wall-clock seconds (GPU work included)."""
    start = time.perf_counter()
    estimator.fit(*fit_args, **fit_kwargs)
    _sync(estimator.device)
    return time.perf_counter() - start


def rel_diff(reference, other):
    """Max absolute difference over the largest absolute reference output."""
    reference = np.asarray(reference, dtype=np.float64)
    other = np.asarray(other, dtype=np.float64)
    if reference.shape != other.shape:
        return float("inf")
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(other))):
        return float("inf")
    if reference.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(reference))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(reference - other))) / scale


def _child_env(hide_gpu=False):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _last_line(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


_PREDICT_CHILD = r"""
import json, pickle, sys, traceback, warnings
from pathlib import Path
import numpy as np
tmp = Path(sys.argv[1])
out = {"n_fallback": 0, "other_warnings": [], "error": None}
try:
    import torch
    from skml.utils import DeviceFallbackWarning
    out["cuda_available"] = torch.cuda.is_available()
    call = json.loads((tmp / "call.json").read_text())
    args = [np.load(tmp / f"arg{i}.npy") for i in range(call["n_args"])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open(tmp / "model.pkl", "rb") as f:
            model = pickle.load(f)
        pred = getattr(model, call["method"])(*args)
    np.save(tmp / "pred.npy", np.asarray(pred))
    fallback = [w for w in caught if issubclass(w.category, DeviceFallbackWarning)]
    out["n_fallback"] = len(fallback)
    out["other_warnings"] = [
        f"{w.category.__name__}: {w.message}" for w in caught if w not in fallback
    ]
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
    traceback.print_exc()
(tmp / "result.json").write_text(json.dumps(out))
"""


def pickle_check(model, method, method_args, reference, tol=TOL, timeout=120.0):
    """Unpickle ``model`` where no GPU is visible and compare its predictions.

    Parameters
    ----------
    model : fitted estimator
        Pickled here, loaded in a subprocess with ``CUDA_VISIBLE_DEVICES=""``.
    method : str
        Prediction method called there on ``method_args``.
    method_args : tuple of ndarray
    reference : ndarray
        What the predictions must equal (the CPU model's), up to ``tol``.

    Returns
    -------
    dict
        ``pickle_status`` (PASS/FAIL/ERROR), ``pickle_warnings`` (the number
        of DeviceFallbackWarning), ``pickle_rel_diff`` and ``pickle_reason``.
    """
    import pickle

    row = {"pickle_warnings": None, "pickle_rel_diff": None, "pickle_reason": ""}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = Path(tmp)
        with open(tmp / "model.pkl", "wb") as f:
            pickle.dump(model, f)
        for i, arg in enumerate(method_args):
            np.save(tmp / f"arg{i}.npy", np.asarray(arg))
        call = {"method": method, "n_args": len(method_args)}
        (tmp / "call.json").write_text(json.dumps(call))
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _PREDICT_CHILD, str(tmp)],
                env=_child_env(hide_gpu=True),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {**row, "pickle_status": "ERROR", "pickle_reason": "timed out"}
        if not (tmp / "result.json").exists():
            reason = _last_line(proc.stderr)
            return {**row, "pickle_status": "ERROR", "pickle_reason": reason}
        result = json.loads((tmp / "result.json").read_text())
        row["pickle_warnings"] = result["n_fallback"]
        if result["error"] is not None:
            return {**row, "pickle_status": "ERROR", "pickle_reason": result["error"]}
        row["pickle_rel_diff"] = rel_diff(reference, np.load(tmp / "pred.npy"))
    reasons = []
    if result.get("cuda_available"):
        reasons.append("the subprocess still saw a GPU")
    if result["n_fallback"] != 1:
        reasons.append(f"{result['n_fallback']} DeviceFallbackWarning (want 1)")
    if not row["pickle_rel_diff"] <= tol:
        reasons.append("predictions differ from the CPU model's")
    row["pickle_status"] = "FAIL" if reasons else "PASS"
    row["pickle_reason"] = "; ".join(reasons)
    return row


_FIT_CHILD = r"""
import json, pickle, signal, sys, time
from pathlib import Path
import torch
tmp = Path(sys.argv[1])
with open(tmp / "fit.pkl", "rb") as f:
    spec = pickle.load(f)
est = spec["estimator"]
cuda = str(est.device).startswith("cuda")

def fit(args, kwargs):
    start = time.perf_counter()
    est.fit(*args, **kwargs)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start

class Over(BaseException):  # not an Exception: a fit's handlers let it through
    pass

def over(signum, frame):
    raise Over

if spec["warmup"] is not None:
    fit(*spec["warmup"])
# The limit counts the timed fit only, not the imports or the warm-up.
signal.signal(signal.SIGALRM, over)
signal.setitimer(signal.ITIMER_REAL, spec["timeout"])
try:
    result = {"seconds": fit(*spec["fit"])}
except Over:
    result = {"over": True}
signal.setitimer(signal.ITIMER_REAL, 0)
(tmp / "fit.json").write_text(json.dumps(result))
"""


def fit_in_subprocess(estimator, fit_args, fit_kwargs, timeout, warmup=None):
    """Seconds of one fit run in a subprocess, or ``(None, reason)``.

    The timed fit is interrupted (SIGALRM, between Python steps) after
    ``timeout`` seconds, and the subprocess killed if it still runs
    ``CHILD_STARTUP`` seconds later, so a slow device cannot overrun the
    run's budget.
    ``warmup`` is an untimed ``(fit_args, fit_kwargs)`` fitted first, so that
    CUDA's one-off initialisation is not counted.
    """
    import pickle

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        tmp = Path(tmp)
        spec = {
            "estimator": estimator,
            "warmup": warmup,
            "fit": (fit_args, fit_kwargs),
            "timeout": timeout,
        }
        with open(tmp / "fit.pkl", "wb") as f:
            pickle.dump(spec, f)
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _FIT_CHILD, str(tmp)],
                env=_child_env(),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout + CHILD_STARTUP,
            )
        except subprocess.TimeoutExpired:
            return None, f"over {timeout:.0f}s"
        if proc.returncode != 0 or not (tmp / "fit.json").exists():
            return None, _last_line(proc.stderr)
        result = json.loads((tmp / "fit.json").read_text())
    if result.get("over"):
        return None, f"over {timeout:.0f}s"
    return result["seconds"], ""


# ------------------------------------------------------------- one estimator
def _speedup(slow, fast):
    if slow is None or not fast:
        return None
    return slow / fast


def check_estimator(name, cls, problem, devices=("cpu", "cuda"), tol=TOL):
    """Agreement and pickle checks of one estimator.

    Parameters
    ----------
    name : str
    cls : type
    problem : callable
        A :data:`REGISTRY` entry.
    devices : (str, str), default=("cpu", "cuda")
        Reference device and device under test.
    tol : float, default=1e-6
        Largest accepted relative difference.

    Returns
    -------
    row : dict
        ``status`` (PASS/FAIL/ERROR), ``rel_diff``, ``fit_cpu_s``,
        ``fit_cuda_s``, ``speedup`` and the pickle fields.
    """
    row = {"name": name, "status": "ERROR", "reason": ""}
    stage = "problem"
    try:
        fit_args, fit_kwargs, method, method_args = problem()
        stage = f"fit on {devices[0]}"
        ref = make_estimator(cls, devices[0])
        row["fit_cpu_s"] = timed_fit(ref, fit_args, fit_kwargs)
        stage = f"fit on {devices[1]}"
        test = make_estimator(cls, devices[1])
        row["fit_cuda_s"] = timed_fit(test, fit_args, fit_kwargs)
        row["speedup"] = _speedup(row["fit_cpu_s"], row["fit_cuda_s"])
        stage = method
        expected = np.asarray(getattr(ref, method)(*method_args))
        row["rel_diff"] = rel_diff(expected, getattr(test, method)(*method_args))
        row["status"] = "PASS" if row["rel_diff"] <= tol else "FAIL"
        stage = "pickle"
        row.update(pickle_check(test, method, method_args, expected, tol=tol))
    except Exception as exc:  # report and go on with the other estimators
        row["reason"] = f"{stage}: {type(exc).__name__}: {exc}"
        if row.get("rel_diff") is not None:
            row["pickle_status"] = "ERROR"
    return row


def large_step(cls, problem, cpu_timeout, devices=("cpu", "cuda")):
    """Time one fit of the large problem on each device, in subprocesses.

    A fit that overruns its limit is stopped; its time is then reported as a
    lower bound (``large_*_over`` is True), and so is the speed-up.
    """
    fit_args, fit_kwargs, _, _ = problem(large=True)
    small_args, small_kwargs, _, _ = problem()
    row = {
        "large_shape": " to ".join(
            "x".join(map(str, np.shape(X)))
            for X in (fit_args[0], fit_kwargs.get("X_target"))
            if X is not None
        ),
        "large_reason": "",
    }
    for side, device, timeout in (
        ("cuda", devices[1], LARGE_CUDA_TIMEOUT),
        ("cpu", devices[0], cpu_timeout),
    ):
        warmup = (small_args, small_kwargs) if device.startswith("cuda") else None
        seconds, reason = fit_in_subprocess(
            make_estimator(cls, device), fit_args, fit_kwargs, timeout, warmup
        )
        over = reason.startswith("over")
        row[f"large_fit_{side}_s"] = timeout if over else seconds
        row[f"large_{side}_over"] = over
        if reason:
            row["large_reason"] += f"{side}: {reason}; "
    row["large_reason"] = row["large_reason"].rstrip("; ")
    row["large_speedup"] = None
    if not row["large_cuda_over"]:
        row["large_speedup"] = _speedup(row["large_fit_cpu_s"], row["large_fit_cuda_s"])
    return row


# ------------------------------------------------------------------ output
def _seconds(value, over=False):
    if value is None:
        return "-"
    return f">{value:.0f}s" if over else f"{value:.2f}s"


def _times(value, over=False):
    if value is None:
        return "-"
    return f"{'>=' if over else ''}x{value:.1f}"


def format_row(row):
    """The compact lines printed for one estimator."""
    name = f"{row['name']:<22}"
    if row["status"] == "SKIP":
        return f"{name} SKIP   {row['reason']}"
    diff = row.get("rel_diff")
    diff = "-" if diff is None else f"{diff:.1e}"
    lines = [
        f"{name} {row['status']:<5} rel_diff {diff:>7}  fit cpu "
        f"{_seconds(row.get('fit_cpu_s'))} cuda {_seconds(row.get('fit_cuda_s'))} "
        f"{_times(row.get('speedup'))}"
        + (f"  [{row['reason']}]" if row["reason"] else "")
    ]
    if "pickle_status" in row:
        warned = row.get("pickle_warnings")
        pdiff = row.get("pickle_rel_diff")
        pdiff = "-" if pdiff is None else f"{pdiff:.1e}"
        lines.append(
            f"{'':<22} {row['pickle_status']:<5} pickle->no GPU: "
            f"{'-' if warned is None else warned} fallback warning(s), "
            f"rel_diff {pdiff}"
            + (f"  [{row['pickle_reason']}]" if row.get("pickle_reason") else "")
        )
    if "large_shape" in row:
        lines.append(
            f"{'':<22} large {row['large_shape']}: fit cpu "
            f"{_seconds(row['large_fit_cpu_s'], row['large_cpu_over'])} cuda "
            f"{_seconds(row['large_fit_cuda_s'], row['large_cuda_over'])} "
            f"{_times(row['large_speedup'], row['large_cpu_over'])}"
            + (f"  [{row['large_reason']}]" if row["large_reason"] else "")
        )
    if "large_error" in row:
        lines.append(f"{'':<22} large: {row['large_error']}")
    return "\n".join(lines)


def failed(row):
    """Whether a row fails the run (agreement or pickle check)."""
    if row["status"] == "SKIP":
        return False
    return row["status"] != "PASS" or row.get("pickle_status") != "PASS"


def _warm_up_cuda():
    # CUDA context, cuBLAS and cuSOLVER start on first use: keep that out of
    # the first estimator's fit time.
    a = torch.randn(256, 256, dtype=torch.float64, device="cuda")
    spd = a @ a.T + 256 * torch.eye(256, dtype=torch.float64, device="cuda")
    torch.linalg.cholesky(spd)
    torch.linalg.solve(spd, a)
    torch.logsumexp(a, dim=1)
    torch.cuda.synchronize()


def device_info():
    """torch, CUDA and GPU of this run, for the header and the JSON."""
    props = torch.cuda.get_device_properties(0)
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": props.name,
        "memory_gib": round(props.total_memory / 2**30),
        "tol": TOL,
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python tools/gpu_check.py",
        description="Compare skml's CUDA and CPU paths in one short run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="skip the large-problem timings"
    )
    parser.add_argument("--out", metavar="F.json", help="write the rows as JSON")
    parser.add_argument(
        "--only",
        metavar="NAME",
        action="append",
        help="check only this estimator (repeatable)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=LARGE_CPU_BUDGET,
        help="seconds shared by the large CPU fits (default %(default)s)",
    )
    return parser.parse_args(argv)


def _write(path, payload):
    if path:
        Path(path).write_text(json.dumps(payload, indent=1, default=str) + "\n")


def main(argv=None):
    """Run the checks; return the exit code (0 pass or skipped, 1 failure)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not torch.cuda.is_available():
        print(SKIPPED, flush=True)
        _write(args.out, {"skipped": SKIPPED, "rows": []})
        return 0
    _warm_up_cuda()
    info = device_info()
    print(
        "gpu_check: torch {torch}, CUDA {cuda}, {device} ({memory_gib} GiB), "
        "tol {tol:g}".format(**info),
        flush=True,
    )
    estimators = device_estimators()
    if args.only:
        unknown = set(args.only) - {name for name, _ in estimators}
        if unknown:
            print(f"unknown estimator(s): {', '.join(sorted(unknown))}")
            return 1
        estimators = [(n, c) for n, c in estimators if n in args.only]
    rows = []
    cpu_left = args.budget
    to_time = sum(name in REGISTRY for name, _ in estimators)
    for name, cls in estimators:
        problem = REGISTRY.get(name)
        if problem is None:
            row = {
                "name": name,
                "status": "SKIP",
                "reason": "no REGISTRY entry in tools/gpu_check.py",
            }
        else:
            row = check_estimator(name, cls, problem)
            if not args.quick and row["status"] != "ERROR":
                # an even share of what is left of the CPU budget
                share = max(5.0, cpu_left / to_time)
                try:
                    row.update(large_step(cls, problem, share))
                    cpu_left -= row["large_fit_cpu_s"] or 0.0
                except Exception as exc:  # timings are informative only
                    row["large_error"] = f"{type(exc).__name__}: {exc}"
            to_time -= 1
        rows.append(row)
        print(format_row(row), flush=True)
    failures = [row["name"] for row in rows if failed(row)]
    skipped = sum(row["status"] == "SKIP" for row in rows)
    verdict = f"FAIL ({', '.join(failures)})" if failures else "PASS"
    print(f"RESULT: {verdict}; {len(rows) - skipped} checked, {skipped} skipped")
    _write(args.out, {**info, "rows": rows})
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
