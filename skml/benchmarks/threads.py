"""Thread policy benchmark: fits and searches on a quiet and on a busy machine.

``python -m skml bench threads`` times each workload in a fresh Python
process, so that torch's thread pool starts as a user's would:

- ``mcboost``: ``MCBoostRegressor(None, group_features=...)`` on 12,000 x 19
  rows (7 continuous features, 12 two-valued group columns), quiet and with
  one other process spinning on a core, under the policy and with the count
  pinned to 1 and to the full budget (``SKML_NUM_THREADS``, the count torch
  used before the policy);
- ``randhie``: the same settings for ``MCBoostRegressor(Ridge())`` on a real
  table, the RAND Health Insurance Experiment data that statsmodels ships
  (20,190 rows, five audit groups);
- ``fits``: a default fit of every estimator, policy against the count
  pinned to the full budget, alternating in one process (median of 7 each),
  quiet and busy;
- ``search``: ``GridSearchCV(n_jobs=1)`` against ``n_jobs=2`` over every
  estimator (2 candidates x 3 folds + refit, about 10 s with one job),
  quiet; ``n_jobs=2`` runs twice in the same process, first with the start
  of its worker processes (importing torch in each), then with the workers
  joblib keeps.

A workload's source can also run against another checkout of skml
(``tools/compare_threads.py`` does that for the code before the policy).
"""

import contextlib
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

from ._common import Benchmark, Part, data_rows, meta_line, status_lines

_DATA = {
    "mcboost12k": """
        rng = np.random.default_rng(0)
        n = 12000
        Xc = rng.normal(size=(n, 7))
        Xg = (rng.random((n, 12)) < 0.3).astype(float)
        X = np.hstack([Xc, Xg])
        base = np.sin(Xc[:, 0]) + 0.5 * Xc[:, 1] ** 2 + Xc[:, 2]
        f = base + Xg[:, 0] * (1 + Xc[:, 2]) - 0.7 * Xg[:, 3]
        y = f + 0.5 * rng.normal(size=n)
    """,
    "regression": """
        rng = np.random.default_rng(0)
        X = rng.normal(size=(N, 6))
        y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=N)
    """,
    "classification": """
        rng = np.random.default_rng(0)
        X = rng.normal(size=(N, 6))
        p = 1 / (1 + np.exp(-2 * X[:, 0] - X[:, 1] * X[:, 2]))
        y = (rng.random(N) < p).astype(int)
    """,
}

# name -> (import, data, constructor, fit call, rows for a single fit)
# (a search uses SEARCH_ROWS: about 10 s with n_jobs=1 on 2 cores)
_ESTIMATORS = {
    "MCBoostRegressor": (
        "from skml.calibration import MCBoostRegressor",
        "regression",
        "MCBoostRegressor(Ridge(), random_state=0)",
        "est.fit(X, y)",
        4000,
    ),
    "MCBoostClassifier": (
        "from skml.calibration import MCBoostClassifier",
        "classification",
        "MCBoostClassifier(LogisticRegression(), random_state=0)",
        "est.fit(X, y)",
        4000,
    ),
    "NWAttentionRegressor": (
        "from skml.attention import NWAttentionRegressor",
        "regression",
        "NWAttentionRegressor(random_state=0)",
        "est.fit(X, y)",
        800,
    ),
    "SROTransport": (
        "from skml.transport import SROTransport",
        "regression",
        "SROTransport(random_state=0)",
        "est.fit(X)",
        600,
    ),
}

SEARCH_ROWS = {
    "MCBoostRegressor": 30000,
    "MCBoostClassifier": 30000,
    "NWAttentionRegressor": 1500,
    "SROTransport": 2000,
}

_GRIDS = {
    "MCBoostRegressor": '{"learning_rate": [0.3, 0.5]}',
    "MCBoostClassifier": '{"learning_rate": [0.3, 0.5]}',
    "NWAttentionRegressor": '{"n_heads": [1, 2]}',
    "SROTransport": '{"reg": [0.05, 0.1]}',
}

_PRELUDE = """
import sys, time, warnings
sys.path.insert(0, {tree!r}) if {tree!r} else None
import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
warnings.simplefilter("ignore")
"""


def _source(body, tree=None, **values):
    code = textwrap.dedent(_PRELUDE).format(tree=tree or "")
    for name, value in values.items():
        code += f"{name} = {value!r}\n"
    return code + textwrap.dedent(body)


def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@contextlib.contextmanager
def busy_core(busy=True, seconds=3600):
    """Keep one other process spinning on a core inside the block.

    Parameters
    ----------
    busy : bool, default=True
        ``False`` makes the block a no-op (a quiet machine).
    seconds : float, default=3600
        Upper bound on the spinner's life; it is stopped when the block ends.
    """
    if not busy:
        yield
        return
    spinner = multiprocessing.get_context("spawn").Process(
        target=_spin, args=(seconds,), daemon=True
    )
    spinner.start()
    time.sleep(0.5)
    try:
        yield
    finally:
        spinner.terminate()
        spinner.join()


def time_workload(code, *, busy=False, threads=None, timeout=900, values=1):
    """Seconds a workload reports, run in a fresh interpreter.

    Parameters
    ----------
    code : str
        Python source that prints ``SECONDS <float>`` as its last line.
    busy : bool, default=False
        Keep one other process spinning on a core meanwhile.
    threads : int or None, default=None
        Pin ``SKML_NUM_THREADS`` (None: the policy).
    timeout : float, default=900
    values : int, default=1
        How many numbers the ``SECONDS`` line carries.

    Returns
    -------
    float or list of float
    """
    env = dict(os.environ)
    env.pop("SKML_NUM_THREADS", None)
    if threads is not None:
        env["SKML_NUM_THREADS"] = str(threads)
    with busy_core(busy, timeout):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    numbers = [float(v) for v in out.stdout.strip().splitlines()[-1].split()[1:]]
    return numbers[0] if values == 1 else numbers[:values]


def mcboost_code(tree=None):
    """The 12,000-row MCBoost fit as a self-contained script."""
    body = (
        _DATA["mcboost12k"]
        + """
        from skml.calibration import MCBoostRegressor
        est = MCBoostRegressor(
            None, group_features=list(range(7, 19)), random_state=0
        )
        start = time.perf_counter()
        est.fit(X, y, base_predictions=base)
        print("SECONDS", time.perf_counter() - start)
    """
    )
    return _source(body, tree)


def randhie_code(tree=None):
    """MCBoost on a real table: RAND HIE (statsmodels), 20,190 rows, its five
    audit groups, a cross-fitted ridge base model."""
    body = """
        from skml.calibration import MCBoostRegressor
        from skml.datasets import load_randhie
        data = load_randhie()
        est = MCBoostRegressor(Ridge(), random_state=0)
        start = time.perf_counter()
        est.fit(data.data, data.target, groups=data.groups)
        print("SECONDS", time.perf_counter() - start)
    """
    return _source(body, tree)


def _fit_code(name, repeats, tree=None):
    """Fits under the policy and pinned to the full budget, alternating in
    one process (sub-second fits vary more between processes than between
    settings); prints the two medians."""
    imp, data, ctor, call, n = _ESTIMATORS[name]
    body = (
        _DATA[data]
        + f"""
        import os
        {imp}
        est = {ctor}
        {call}  # warm-up
        times = {{"policy": [], "budget": []}}
        for _ in range({repeats}):
            for label in times:
                if label == "budget":
                    os.environ["SKML_NUM_THREADS"] = str(BUDGET)
                else:
                    os.environ.pop("SKML_NUM_THREADS", None)
                est = {ctor}
                start = time.perf_counter()
                {call}
                times[label].append(time.perf_counter() - start)
        print("SECONDS", *(np.median(t) for t in times.values()))
    """
    )
    return _source(body, tree, N=n, BUDGET=os.cpu_count() or 1)


def _search_code(name, tree=None):
    """n_jobs=1, then n_jobs=2 twice: with worker start, then warm workers."""
    imp, data, ctor, call, _ = _ESTIMATORS[name]
    # A transformer without ``score`` gets a scorer: minus the transport cost.
    scoring = (
        "lambda est, X, y=None: -float((est.coupling_ * est.cost_).sum())"
        if name == "SROTransport"
        else "None"
    )
    body = (
        _DATA[data]
        + f"""
        {imp}
        times = []
        for n_jobs in (1, 2, 2):
            search = GridSearchCV(
                {ctor},
                {_GRIDS[name]},
                cv=3,
                n_jobs=n_jobs,
                scoring={scoring},
                error_score="raise",
            )
            start = time.perf_counter()
            search.fit(X, y)
            times.append(time.perf_counter() - start)
        print("SECONDS", *times)
    """
    )
    return _source(body, tree, N=SEARCH_ROWS[name])


def _settings_part(ctx, repeats, code):
    rows = []
    for busy in (False, True):
        for label, threads in (("policy", None), ("1 thread", 1), ("budget", 0)):
            pinned = (os.cpu_count() or 1) if threads == 0 else threads
            seconds = min(
                time_workload(code, busy=busy, threads=pinned) for _ in range(repeats)
            )
            rows.append(
                {
                    "part": ctx.part,
                    "machine": "busy" if busy else "quiet",
                    "threads": label,
                    "seconds": seconds,
                }
            )
    return rows


def _mcboost_part(ctx, repeats):
    return _settings_part(ctx, repeats, mcboost_code())


def _randhie_part(ctx, repeats):
    if not ctx.peer("statsmodels", ["statsmodels"], "pip install statsmodels"):
        return []
    return _settings_part(ctx, repeats, randhie_code())


def _fits_part(ctx, names, repeats):
    rows = []
    for name in names:
        for busy in (False, True):
            policy, budget = time_workload(
                _fit_code(name, repeats), busy=busy, values=2
            )
            rows.append(
                {
                    "part": "fits",
                    "estimator": name,
                    "machine": "busy" if busy else "quiet",
                    "policy_s": policy,
                    "budget_s": budget,
                    "ratio": policy / budget,
                }
            )
    return rows


def _search_part(ctx, names):
    rows = []
    for name in names:
        one, cold, warm = time_workload(_search_code(name), values=3)
        rows.append(
            {
                "part": "search",
                "estimator": name,
                "rows": SEARCH_ROWS[name],
                "n_jobs1_s": one,
                "n_jobs2_cold_s": cold,
                "n_jobs2_warm_s": warm,
                "ratio_cold": cold / one,
                "ratio_warm": warm / one,
            }
        )
    return rows


BENCHMARK = Benchmark(
    "threads",
    [
        Part(
            "mcboost",
            _mcboost_part,
            full={"repeats": 2},
            quick={"repeats": 1},
            help="12,000-row MCBoost fit, quiet and busy, policy vs pinned counts",
        ),
        Part(
            "randhie",
            _randhie_part,
            full={"repeats": 2},
            quick={"repeats": 1},
            help="MCBoost on the RAND HIE table (statsmodels), quiet and busy",
        ),
        Part(
            "fits",
            _fits_part,
            full={"names": list(_ESTIMATORS), "repeats": 7},
            quick={"names": ["NWAttentionRegressor"], "repeats": 2},
            help="default fits per estimator, policy vs the full budget",
        ),
        Part(
            "search",
            _search_part,
            full={"names": list(_ESTIMATORS)},
            quick={"names": ["MCBoostRegressor"]},
            help="GridSearchCV n_jobs=1 vs n_jobs=2 per estimator",
        ),
    ],
    description="torch thread policy on a quiet and a busy machine",
)


def run(quick=False, device="cpu", parts=None):
    """Run the thread benchmark (CPU only; ``device`` is recorded).

    Parameters
    ----------
    quick : bool, default=False
    device : str, default="cpu"
    parts : list of str or None, default=None

    Returns
    -------
    list of dict
    """
    return BENCHMARK.run(quick=quick, device=device, parts=parts)


def report(rows):
    """The three tables and the checks they support."""
    from ..utils import format_table

    data = data_rows(rows)
    lines = [*meta_line(rows), *status_lines(rows)]
    for part, columns in (
        ("mcboost", ["machine", "threads", "seconds"]),
        ("randhie", ["machine", "threads", "seconds"]),
        ("fits", ["estimator", "machine", "policy_s", "budget_s", "ratio"]),
        (
            "search",
            [
                "estimator",
                "rows",
                "n_jobs1_s",
                "n_jobs2_cold_s",
                "n_jobs2_warm_s",
                "ratio_cold",
                "ratio_warm",
            ],
        ),
    ):
        chosen = [r for r in data if r["part"] == part]
        if chosen:
            lines += ["", f"[{part}]", format_table(chosen, columns=columns)]
    search = [r for r in data if r["part"] == "search"]
    if search:
        for key, label in (("ratio_warm", "warm"), ("ratio_cold", "with start")):
            slower = [r["estimator"] for r in search if r[key] > 1.0]
            lines.append(
                f"GridSearchCV n_jobs=2 ({label}) not slower than n_jobs=1: "
                f"{len(search) - len(slower)}/{len(search)}"
                + (f" (slower: {', '.join(slower)})" if slower else "")
            )
    fits = [r for r in data if r["part"] == "fits" and r["machine"] == "quiet"]
    if fits:
        worst = max(fits, key=lambda r: r["ratio"])
        lines.append(
            "single fit, quiet machine, policy / full budget: worst "
            f"{worst['ratio']:.2f} ({worst['estimator']})"
        )
    return "\n".join(lines)
