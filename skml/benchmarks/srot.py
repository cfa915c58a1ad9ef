"""SROT against entropic OT, the sliced reference plan and exact OT.

Data: :func:`skml.datasets.make_gaussian_mixtures` (two different random
mixtures of 5 Gaussians, means in [-5, 5]^d, random SPD covariances), n
source and n target points with uniform weights; cost ``ot.dist``
(squared Euclidean); ground truth ``ot.emd``. ``reg`` is relative to the
median cost: every method gets the same absolute ``eps = reg * median(C)``.

Methods at each (n, d, reg):

- ``EOT (POT sinkhorn_log)``: ``ot.sinkhorn(..., method="sinkhorn_log")``,
  the peer, on torch tensors of the benchmark's device (on numpy arrays POT
  uses scipy's logsumexp and was 3-15x slower on a 2-core CPU at n = 2000).
  Same threshold ``TOL``, check every 10 iterations and cap ``MAX_ITER`` as
  ours; POT measures the column violation in L2, ours in L1, so at the same
  threshold POT stops no later (this favours POT's time).
- ``EOT (skml)``: ``srot_plan(reference="independent")``, our solver.
- ``sliced reference``: ``sliced_reference_plan`` alone (the SOT plan).
- ``SROT``: ``srot_plan`` on that reference, with the reference options of
  ``SROTransport()``'s defaults; its time includes building the reference.
- GeomLoss: only when importable (otherwise recorded as a skipped peer).

Metrics: plan L1 error ``||P - P*||_1`` (at most 2), relative cost gap
``(<C, P> - <C, P*>) / <C, P*>``, wall time, Sinkhorn iterations, and the L1
marginal violation of the returned plan (``conv`` flags SROT plans whose
violation exceeds ``10 * TOL``: the iteration cap was hit).

Grid. Full: n in {500, 2000, 5000}, d in {2, 10, 50}, reg in {0.003, 0.01,
0.03, 0.1, 0.3, 1.0}. ``ot.emd`` takes about 9 s at n = 5000 on a 2-core CPU,
so n = 5000 stays, but log-domain Sinkhorn at small reg does not fit a
15-minute budget on 2 cores (about 40 s per solve at n = 2000, reg = 0.003;
at n = 5000, reg = 0.03, POT alone took 146 s in d = 2, and SROT needs more
iterations than EOT at small reg). On the CPU the grid is therefore cut by
cost: n = 500 runs every reg, n = 2000 reg >= 0.01 and n = 5000 only the
larger half, reg >= 0.1, which the report's cost-gap check uses (the full
CPU run takes about 11 minutes). With a GPU ``device`` the whole grid runs.
Quick: n in {500, 1000}, d in {2, 10}, reg in {0.03, 0.1, 0.3, 1.0} at
n = 500 and {0.1, 0.3, 1.0} at n = 1000.

Also run (each a ``part`` of the rows):

- ``lazy``: ``coupling="lazy"`` against ``"dense"`` at n = 2,000, d = 10
  (tol 1e-9; largest difference of ``transform`` on fitted and new points),
  then one lazy default fit plus ``transform`` at n = m = 50,000, d = 10,
  with the process's peak resident memory (run first for that reason).
- ``real``: ``SROTransport(reg)`` with its defaults on the real pairs of
  :func:`skml.datasets.load_point_cloud_pairs` (reg 0.01, 0.05, 0.2, 1), its
  time, iterations, convergence and the reference "auto" chose, against
  POT's ``sinkhorn_log`` at the same eps; both scored against ``ot.emd``.
- ``speed``: milliseconds per iteration, setup included, over 50 fixed
  iterations at n = 2,000 and 10,000, d = 10: SROT with one fixed reference
  against POT's plain and log-domain ``ot.sinkhorn`` on torch tensors.

- ``options``: the reference options, ``reference_smoothing`` x ``beta`` x
  ``n_projections``, at n = 1000, d in {2, 10, 50}, reg in {0.03, 0.1, 0.3,
  1.0}; ranked by the geometric mean over the larger half (reg >= 0.1) of
  SROT's cost gap over EOT's, among the options whose plan is closer (L1) to
  the exact plan than their own reference at every point.
- ``moons``: 2-D moons -> circles (n = 500) at reg 0.001 ... 1, with the
  default and the best options, against EOT.
- ``refine``: ``n_refinements`` 0..5 at n = 2000, d = 10, reg in {0.03, 0.1}
  (each refinement re-solves with ``(1 - s) P + s a b'`` as the reference,
  ``s = reference_smoothing``, as ``SROTransport(n_refinements=k)`` does;
  cumulative time).
- ``front``: POT ``sinkhorn_log``, POT ``sinkhorn_epsilon_scaling``, GeomLoss
  ``SamplesLoss("sinkhorn")`` and ``SROTransport(reg)`` defaults over a
  decreasing reg grid, on the refinements' mixtures and on the digits pair:
  plan L1 error, cost gap and plan entropy against seconds, read at equal
  time (Pareto dominance) and at equal entropy (interpolated).
- ``scale``: one ``SROTransport()`` fit at n = m = 10,000, d = 10 (target
  on a CPU: under 5 minutes and 12 GB), with its peak resident memory;
  run it alone with ``python -m skml bench srot --part scale``.
- ``meta``: CPU count, torch threads and the load average before and after
  (timings on a shared machine are only comparable within one run).

Warnings (Sinkhorn's ConvergenceWarning at the iteration cap, POT's
"Sinkhorn did not converge") are counted per part in the status rows.
"""

import itertools
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ..datasets._transport import load_point_cloud_pairs, make_gaussian_mixtures
from ..transport import SROTransport, sliced_reference_plan, srot_plan
from ..transport._srot_fit import AUTO_PAIRS, AUTO_SHARPNESS, median_cost
from ..utils import format_table, progress
from ._common import (
    Benchmark,
    Part,
    count_warnings,
    data_rows,
    device_name,
    meta_line,
    peak_rss_gb,
    status_lines,
)

REGS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
# The larger half of the reg grid: the points of the report's cost-gap check.
LARGE_REGS = (0.1, 0.3, 1.0)
DIMS = (2, 10, 50)
GRID = {500: REGS, 2000: REGS[1:], 5000: LARGE_REGS}
DEVICE_GRID = {500: REGS, 2000: REGS, 5000: REGS}
QUICK_GRID = {500: (0.03, 0.1, 0.3, 1.0), 1000: (0.1, 0.3, 1.0)}
QUICK_DIMS = (2, 10)
# Sinkhorn stopping rule shared by every solver: marginal error below TOL,
# checked every 10 iterations, at most MAX_ITER iterations.
TOL = 1e-6
MAX_ITER = 3000
# Options comparison.
SMOOTHINGS = (1e-3, 1e-2, 1e-1)
BETAS = (0.0, 1.0, 10.0, 30.0, 100.0)
PROJECTIONS = (16, 64, 256)
OPTION_REGS = (0.03,) + LARGE_REGS
QUICK_OPTIONS = {
    "smoothings": (1e-2,),
    "betas": (0.0, 10.0, 100.0),
    "projections": (64, 256),
}
MOONS_REGS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
REFINE_REGS = (0.03, 0.1)
N_REFINEMENTS = 5
FRONT_REGS = (1.0, 0.3, 0.1, 0.03, 0.01)

EOT_POT = "EOT (POT sinkhorn_log)"
EOT = "EOT (skml)"
REF = "sliced reference"
SROT = "SROT"
SROT_FIXED = "SROT (fixed options)"
SROT_RANK = "SROT (soft-rank reference)"
EOT_SCALING = "EOT (POT sinkhorn_epsilon_scaling)"
SCALING = "sinkhorn_epsilon_scaling"
SCALING_STAGES = 20
GEOMLOSS = "EOT (GeomLoss)"


def default_options():
    """Fixed reference options of the parts that study one reference.

    ``SROTransport()`` chooses its reference per fit (``beta="auto"``); the
    grid's ``SROT (defaults)`` row runs it. The options, refinement and front
    parts study one fixed reference: the middle candidate of "auto", on
    uniform directions (:func:`~skml.transport.sliced_reference_plan`; the
    estimator draws its directions from the clouds' covariance).

    Returns
    -------
    dict
        ``n_projections``, ``beta`` and ``reference_smoothing``.
    """
    beta, smoothing = AUTO_PAIRS[1]
    return {
        "n_projections": SROTransport().get_params()["n_projections"],
        "beta": beta,
        "reference_smoothing": smoothing,
    }


def _srot_defaults(prob, reg, seed=0, device="cpu"):
    """``SROTransport(reg)`` with its defaults, timed (fit included)."""
    start = time.perf_counter()
    model = SROTransport(reg=reg, random_state=seed, device=device)
    model.fit(prob["Xs"], X_target=prob["Xt"])
    seconds = time.perf_counter() - start
    return model.coupling_, seconds, model.n_iter_, model


def _problem(Xs, Xt):
    """Cost, exact plan and its cost for two uniform clouds."""
    import ot

    n, m = len(Xs), len(Xt)
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    C = ot.dist(Xs, Xt)
    start = time.perf_counter()
    P0 = ot.emd(a, b, C, numItermax=10_000_000)
    emd_s = time.perf_counter() - start
    c0 = float(np.sum(C * P0))
    # the median SROTransport(random_state=0) uses: the same eps everywhere
    median = median_cost(
        torch.as_tensor(Xs), torch.as_tensor(Xt), "sqeuclidean", check_random_state(0)
    )
    return {
        "Xs": Xs,
        "Xt": Xt,
        "a": a,
        "b": b,
        "C": C,
        "median": median,
        "P0": P0,
        "c0": c0,
        "emd_s": emd_s,
    }


def _score(prob, P):
    P = np.asarray(P, dtype=np.float64)
    marg = np.abs(P.sum(1) - prob["a"]).sum() + np.abs(P.sum(0) - prob["b"]).sum()
    positive = P[P > 0]
    return {
        "l1": float(np.abs(P - prob["P0"]).sum()),
        "gap": float((np.sum(prob["C"] * P) - prob["c0"]) / prob["c0"]),
        "marginal_err": float(marg),
        # the plan's entropy, for comparisons at equal blur
        "entropy": float(-np.sum(positive * np.log(positive))),
    }


def _eot_pot(prob, eps, device="cpu", method="sinkhorn_log"):
    import ot

    a, b, C = (torch.as_tensor(prob[k], device=device) for k in ("a", "b", "C"))
    start = time.perf_counter()
    # Non-convergence warnings are counted by the benchmark framework.
    # sinkhorn_epsilon_scaling's numItermax counts outer (eps) stages of
    # numInnerItermax=100 stabilised iterations each; its schedule reaches
    # eps within 20 stages, and 100 (POT's default) took over 7 minutes at
    # n = 2000 on 2 cores.
    cap = SCALING_STAGES if method == SCALING else MAX_ITER
    P, log = ot.sinkhorn(
        a,
        b,
        C,
        eps,
        method=method,
        stopThr=TOL,
        numItermax=cap,
        log=True,
    )
    P = P.cpu().numpy()
    seconds = time.perf_counter() - start
    return P, seconds, int(log["niter"]) + 1


def _eot_skml(prob, eps, device="cpu"):
    """Our solver with the independent reference: entropic OT."""
    return _srot(prob, eps, "independent", device)


def _reference(prob, options, seed, device="cpu"):
    start = time.perf_counter()
    R = sliced_reference_plan(
        prob["Xs"],
        prob["Xt"],
        prob["a"],
        prob["b"],
        random_state=seed,
        device=device,
        **options,
    )
    return R, time.perf_counter() - start


def _srot(prob, eps, R, device="cpu"):
    """``srot_plan`` on reference R under the shared stopping rule, timed."""
    start = time.perf_counter()
    P, log = srot_plan(
        prob["a"],
        prob["b"],
        prob["C"],
        R,
        eps,
        max_iter=MAX_ITER,
        tol=TOL,
        device=device,
        log=True,
    )
    return P, time.perf_counter() - start, log["n_iter"]


def _geomloss_available():
    try:
        import geomloss  # noqa: F401
    except ImportError:
        return False
    return True


def _geomloss_plan(prob, eps, device="cpu"):
    """GeomLoss' dual potentials turned into a plan (its p=2 cost is |x-y|^2/2)."""
    import torch
    from geomloss import SamplesLoss

    x = torch.as_tensor(prob["Xs"], device=device)
    y = torch.as_tensor(prob["Xt"], device=device)
    a = torch.as_tensor(prob["a"], device=device)
    b = torch.as_tensor(prob["b"], device=device)
    # eps in GeomLoss' units (half the squared distance) is eps / 2.
    blur = (eps / 2.0) ** 0.5
    loss = SamplesLoss(
        "sinkhorn", p=2, blur=blur, scaling=0.9, debias=False, potentials=True
    )
    start = time.perf_counter()
    f, g = (p.reshape(-1) for p in loss(a, x, b, y))
    C = torch.as_tensor(prob["C"], device=device) / 2.0
    logP = (f[:, None] + g[None, :] - C) / (eps / 2.0)
    P = (a[:, None] * b[None, :] * torch.exp(logP)).cpu().numpy()
    return P, time.perf_counter() - start, None


def _row(part, n, d, reg, method, score, seconds, n_iter, **extra):
    row = {"part": part, "n": n, "d": d, "reg": reg, "method": method}
    row.update(score)
    row.update(seconds=seconds, n_iter=n_iter)
    row.update(extra)
    return row


def _warm_up(device):
    """First calls (imports, torch kernels) outside the timings."""
    rng = np.random.RandomState(0)
    prob = _problem(rng.normal(size=(20, 2)), rng.normal(size=(20, 2)))
    _eot_pot(prob, prob["median"], device)
    _eot_skml(prob, prob["median"], device)
    R, _ = _reference(prob, default_options(), 0, device)
    _srot(prob, prob["median"], R, device)


def run_grid(grid, dims, device="cpu", seed=0, options=None, pot=True, geomloss=None):
    """The main comparison: rows with ``part="grid"``.

    Parameters
    ----------
    grid : dict
        ``{n: regs}``.
    dims : tuple of int
        Dimensions.
    device : str or torch.device, default="cpu"
        Device of skml's solvers and of POT's torch tensors (``"auto"``: a
        GPU when there is one).
    seed : int, default=0
        Data and projection seed.
    options : dict, default=None
        SROT reference options; default :func:`default_options`.
    pot : bool, default=True
        Also run POT's ``sinkhorn_log``.
    geomloss : bool, default=None
        Also run GeomLoss; ``None``: when it is installed.

    Returns
    -------
    rows : list of dict
    """
    device = device_name(device)
    options = default_options() if options is None else options
    if geomloss is None:
        geomloss = _geomloss_available()
    _warm_up(device)
    rows = []
    jobs = [(n, d) for n in grid for d in dims]
    for n, d in progress(jobs, desc="srot grid"):
        prob = _problem(*make_gaussian_mixtures(n, d, random_state=seed))
        R, ref_s = _reference(prob, options, seed, device)
        ref_score = _score(prob, R)
        for reg in grid[n]:
            eps = reg * prob["median"]
            common = {"emd_s": prob["emd_s"]}
            if pot:
                P, s, it = _eot_pot(prob, eps, device)
                score = _score(prob, P)
                rows.append(_row("grid", n, d, reg, EOT_POT, score, s, it))
            P, s, it = _eot_skml(prob, eps, device)
            rows.append(_row("grid", n, d, reg, EOT, _score(prob, P), s, it))
            rows.append(_row("grid", n, d, reg, REF, ref_score, ref_s, None, **common))
            P, s, it = _srot(prob, eps, R, device)
            rows.append(
                _row("grid", n, d, reg, SROT_FIXED, _score(prob, P), ref_s + s, it)
            )
            P, s, it, model = _srot_defaults(prob, reg, device=device)
            rows.append(
                _row(
                    "grid",
                    n,
                    d,
                    reg,
                    SROT,
                    _score(prob, P),
                    s,
                    it,
                    choice=_choice(model),
                )
            )
            if geomloss:
                P, s, it = _geomloss_plan(prob, eps, device)
                rows.append(
                    _row("grid", n, d, reg, "EOT (GeomLoss)", _score(prob, P), s, it)
                )
    return rows


def _option_grid(smoothings=SMOOTHINGS, betas=BETAS, projections=PROJECTIONS):
    return [
        {"reference_smoothing": s, "beta": b, "n_projections": L}
        for s, b, L in itertools.product(smoothings, betas, projections)
    ]


def _option_name(opt):
    return (
        f"s={opt['reference_smoothing']:g} beta={opt['beta']:g} "
        f"L={opt['n_projections']}"
    )


def run_options(n=1000, dims=DIMS, regs=OPTION_REGS, device="cpu", seed=0, grid=None):
    """Every reference option against EOT: rows with ``part="options"``.

    ``grid`` maps ``smoothings``, ``betas`` and ``projections`` to the values
    tried (default: ``SMOOTHINGS`` x ``BETAS`` x ``PROJECTIONS``).
    """
    device = device_name(device)
    rows = []
    configs = _option_grid(**(grid or {}))
    for d in progress(dims, desc="srot options"):
        prob = _problem(*make_gaussian_mixtures(n, d, random_state=seed))
        eot = {}
        for reg in regs:
            P, s, it = _eot_skml(prob, reg * prob["median"], device)
            eot[reg] = _score(prob, P)
            rows.append(_row("options", n, d, reg, EOT, eot[reg], s, it))
        for opt in configs:
            R, ref_s = _reference(prob, opt, seed, device)
            ref = _score(prob, R)
            for reg in regs:
                P, s, it = _srot(prob, reg * prob["median"], R, device)
                score = _score(prob, P)
                rows.append(
                    _row(
                        "options",
                        n,
                        d,
                        reg,
                        _option_name(opt),
                        score,
                        ref_s + s,
                        it,
                        ratio=score["gap"] / eot[reg]["gap"],
                        ref_l1=ref["l1"],
                        ref_gap=ref["gap"],
                        **opt,
                    )
                )
    return rows


def rank_options(rows):
    """Options ranked by their geometric-mean cost-gap ratio to EOT.

    The ranking uses the points with ``reg`` in ``LARGE_REGS``; only options
    whose plan beats their reference in L1 at every one of them are eligible
    (the others are listed after them). The smaller regs are summarised
    alongside, per d, so that the harm at small reg stays visible.

    Returns
    -------
    list of dict
        One summary per option, best first: ``option``, ``geo_ratio``,
        ``max_ratio``, ``share_lt1`` and ``share_07`` (shares of points with
        ratio < 1 and <= 0.7), ``l1_vs_ref_fails``, ``geo_d{d}`` (per d),
        ``small_reg`` (geometric-mean ratio at the smaller regs), ``n_iter``
        and ``seconds`` (means over the larger half).
    """

    def geo(values):
        values = np.maximum(np.asarray(values, dtype=float), 1e-12)
        return float(np.exp(np.mean(np.log(values))))

    by = {}
    for r in rows:
        if r["part"] == "options" and "ratio" in r:
            by.setdefault(r["method"], []).append(r)
    out = []
    for name, rs in by.items():
        large = [r for r in rs if r["reg"] in LARGE_REGS]
        small = [r for r in rs if r["reg"] not in LARGE_REGS]
        ratios = np.array([r["ratio"] for r in large])
        summary = {
            "option": name,
            "geo_ratio": geo(ratios),
            "max_ratio": float(ratios.max()),
            "share_lt1": float(np.mean(ratios < 1)),
            "share_07": float(np.mean(ratios <= 0.7)),
            "l1_vs_ref_fails": int(sum(r["l1"] >= r["ref_l1"] for r in large)),
        }
        for d in sorted({r["d"] for r in large}):
            summary[f"geo_d{d}"] = geo([r["ratio"] for r in large if r["d"] == d])
        if small:
            summary["small_reg"] = geo([r["ratio"] for r in small])
        summary["n_iter"] = float(np.mean([r["n_iter"] for r in large]))
        summary["seconds"] = float(np.mean([r["seconds"] for r in large]))
        out.append(summary)
    out.sort(key=lambda o: (o["l1_vs_ref_fails"] > 0, o["geo_ratio"]))
    return out


def run_moons(options_list, n=500, regs=MOONS_REGS, device="cpu", seed=0):
    """2-D moons -> circles: rows with ``part="moons"``."""
    from sklearn.datasets import make_circles, make_moons

    device = device_name(device)
    Xs, _ = make_moons(n, noise=0.05, random_state=seed)
    Xt, _ = make_circles(n, noise=0.05, factor=0.5, random_state=seed + 1)
    prob = _problem(Xs, Xt)
    rows = []
    refs = [
        (name, opt, *_reference(prob, opt, seed, device)) for name, opt in options_list
    ]
    for reg in progress(regs, desc="srot moons"):
        eps = reg * prob["median"]
        P, s, it = _eot_skml(prob, eps, device)
        eot = _score(prob, P)
        rows.append(_row("moons", n, 2, reg, EOT, eot, s, it))
        for name, _, R, ref_s in refs:
            P, s, it = _srot(prob, eps, R, device)
            score = _score(prob, P)
            rows.append(
                _row(
                    "moons",
                    n,
                    2,
                    reg,
                    f"SROT {name}",
                    score,
                    ref_s + s,
                    it,
                    ratio=score["gap"] / eot["gap"],
                    ref_l1=_score(prob, R)["l1"],
                )
            )
    return rows


def run_refinements(
    n=2000,
    d=10,
    regs=REFINE_REGS,
    k_max=N_REFINEMENTS,
    device="cpu",
    seed=0,
    options=None,
):
    """Error after 0..k_max refinements: rows with ``part="refine"``."""
    device = device_name(device)
    options = default_options() if options is None else options
    prob = _problem(*make_gaussian_mixtures(n, d, random_state=seed))
    alpha = options["reference_smoothing"]
    product = prob["a"][:, None] * prob["b"][None, :]
    rows = []
    for reg in progress(regs, desc="srot refinements"):
        eps = reg * prob["median"]
        R, elapsed = _reference(prob, options, seed, device)
        total_iter = 0
        for k in range(k_max + 1):
            P, s, it = _srot(prob, eps, R, device)
            elapsed += s
            total_iter += it
            rows.append(
                _row(
                    "refine",
                    n,
                    d,
                    reg,
                    f"SROT k={k}",
                    _score(prob, P),
                    elapsed,
                    total_iter,
                    k=k,
                )
            )
            start = time.perf_counter()
            R = (1 - alpha) * P + alpha * product
            elapsed += time.perf_counter() - start
    return rows, prob


def run_front(prob, regs=FRONT_REGS, device="cpu", geomloss=False, srot_min_reg=0.0):
    """Entropic OT (POT ``sinkhorn_log``, POT ``sinkhorn_epsilon_scaling``,
    GeomLoss) and ``SROTransport(reg)`` defaults over a decreasing reg grid:
    rows with ``part="front"`` (plan L1 error, cost gap, plan entropy,
    seconds), from which the error-versus-time and error-versus-entropy
    fronts are read.
    """
    device = device_name(device)
    n, d = prob["Xs"].shape
    name = prob.get("name", "mixtures")
    rows = []
    for reg in progress(regs, desc="srot front"):
        eps = reg * prob["median"]
        runs = [(EOT_POT, _eot_pot, (prob, eps, device))]
        runs.append((EOT_SCALING, _eot_pot, (prob, eps, device, SCALING)))
        if geomloss:
            runs.append((GEOMLOSS, _geomloss_plan, (prob, eps, device)))
        if reg >= srot_min_reg:
            runs.append((SROT, _srot_defaults, (prob, reg, 0, device)))
        for method, func, args in runs:
            P, s, it = func(*args)[:3]
            rows.append(
                _row("front", n, d, reg, method, _score(prob, P), s, it, pair=name)
            )
    return rows


SCALE_N, SCALE_D = 10_000, 10


def run_scale(n=SCALE_N, d=SCALE_D, device="cpu", seed=0):
    """One default ``SROTransport`` fit at scale: a row with ``part="scale"``.

    ``peak_rss_gb`` is the process's peak resident set size so far (Linux
    ``ru_maxrss``), an upper bound on the fit's own peak.
    """
    device = device_name(device)
    Xs, Xt = make_gaussian_mixtures(n, d, random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = SROTransport(random_state=seed, device=device).fit(Xs, X_target=Xt)
    seconds = time.perf_counter() - start
    # Raised again, so that the benchmark framework counts them too.
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    P = model.coupling_
    return [
        {
            "part": "scale",
            "n": n,
            "d": d,
            "method": SROT,
            "seconds": seconds,
            "n_iter": model.n_iter_,
            "marginal_err": float(
                np.abs(P.sum(1) - model.a_).sum() + np.abs(P.sum(0) - model.b_).sum()
            ),
            "converged": not any(
                issubclass(w.category, ConvergenceWarning) for w in caught
            ),
            "peak_rss_gb": peak_rss_gb(),
        }
    ]


def _choice(model):
    if model.reference_ == "independent":
        return "entropic"
    if model.reference_ == "rank":
        return f"rank={model.rank_sharpness_:g}"
    return f"beta={model.beta_:g}/s={model.reference_smoothing_:g}"


REAL_REGS = (0.01, 0.05, 0.2, 1.0)


def run_real(regs=REAL_REGS, max_samples=2000, device="cpu"):
    """Default fits on real point-cloud pairs: rows with ``part="real"``.

    For each pair of :func:`~skml.datasets.load_point_cloud_pairs` and reg:
    ``SROTransport(reg)`` (time, iterations, whether it converged, the
    reference "auto" chose) and POT's ``sinkhorn_log`` at the same eps,
    both scored against ``ot.emd``.
    """
    rows = []
    pairs = load_point_cloud_pairs(max_samples=max_samples)
    for name, pair in progress(list(pairs.items()), desc="srot real"):
        prob = _problem(pair.Xs, pair.Xt)
        for reg in regs:
            eps = reg * prob["median"]
            P, s, it = _eot_pot(prob, eps, device)
            base = {"pair": name, "n": len(pair.Xs), "m": len(pair.Xt)}
            rows.append(
                {
                    **base,
                    **_row(
                        "real",
                        len(pair.Xs),
                        pair.Xs.shape[1],
                        reg,
                        EOT_POT,
                        _score(prob, P),
                        s,
                        it,
                    ),
                }
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                P, s, it, model = _srot_defaults(prob, reg, device=device)
            converged = not any(
                issubclass(w.category, ConvergenceWarning) for w in caught
            )
            rows.append(
                {
                    **base,
                    **_row(
                        "real",
                        len(pair.Xs),
                        pair.Xs.shape[1],
                        reg,
                        SROT,
                        _score(prob, P),
                        s,
                        it,
                        choice=_choice(model),
                        converged=converged,
                    ),
                }
            )
    return rows


SPEED_NS = (2000, 10000)


def _time_pot(Xs, Xt, a, eps, method, n_iter):
    """Seconds of POT's solver on torch tensors, the cost matrix included."""
    import ot

    start = time.perf_counter()
    x, y = torch.as_tensor(Xs), torch.as_tensor(Xt)
    M = ot.dist(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ot.sinkhorn(a, a, M, eps, method=method, numItermax=n_iter, stopThr=0)
    return time.perf_counter() - start


def _time_srot(Xs, Xt, reg, n_iter, device, reference):
    """Seconds and iterations of one fixed-reference SROT fit (``reference``:
    the estimator's keywords that fix it, so that one solve runs)."""
    model = SROTransport(
        reg=reg,
        **reference,
        max_iter=n_iter,
        tol=0.0,
        random_state=0,
        device=device,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Xs, X_target=Xt)
    return time.perf_counter() - start, model.n_iter_


def run_speed(ns=SPEED_NS, d=10, n_iter=50, reg=0.05, device="cpu", repeats=5):
    """Seconds per iteration, setup included, over ``n_iter`` fixed iterations.

    ``SROTransport`` with one fixed reference (the middle mixture candidate
    of "auto", and the sharper soft-rank one, so that one solve runs) and
    ``max_iter=n_iter, tol=0``, against POT's
    ``ot.sinkhorn(..., method="sinkhorn")`` (plain matrix scaling) and
    ``method="sinkhorn_log"`` on torch tensors from the points (cost
    included), ``numItermax=n_iter, stopThr=0``. SROT and POT's plain
    scaling run ``repeats`` times, alternating, and report their medians: a
    single run of a few tenths of a second gave n = 2,000 ratios of 1.75 and
    2.03 in two runs on the same code. POT's log domain runs once.
    """

    beta, smoothing = AUTO_PAIRS[1]
    mixture = {"reference": "sliced", "beta": beta, "reference_smoothing": smoothing}
    rank = {"reference": "rank", "rank_sharpness": AUTO_SHARPNESS[-1]}
    rows = []
    for n in ns:
        Xs, Xt = make_gaussian_mixtures(n, d, random_state=0)
        eps = reg * median_cost(
            torch.as_tensor(Xs),
            torch.as_tensor(Xt),
            "sqeuclidean",
            check_random_state(0),
        )
        a = torch.full((n,), 1.0 / n, dtype=torch.float64)

        plain, ours, ranked = [], [], []
        for _ in range(repeats):
            plain.append(_time_pot(Xs, Xt, a, eps, "sinkhorn", n_iter))
            seconds, iters = _time_srot(Xs, Xt, reg, n_iter, device, mixture)
            ours.append(seconds)
            seconds, rank_iters = _time_srot(Xs, Xt, reg, n_iter, device, rank)
            ranked.append(seconds)
        log_seconds = _time_pot(Xs, Xt, a, eps, "sinkhorn_log", n_iter)
        timed = [
            ("POT torch sinkhorn", float(np.median(plain)), n_iter, repeats),
            ("POT torch sinkhorn_log", log_seconds, n_iter, 1),
            (SROT_FIXED, float(np.median(ours)), iters, repeats),
            (SROT_RANK, float(np.median(ranked)), rank_iters, repeats),
        ]
        for method, seconds, iters, runs in timed:
            rows.append(
                {
                    "part": "speed",
                    "n": n,
                    "d": d,
                    "method": method,
                    "ms_per_iter": 1e3 * seconds / iters,
                    "n_iter": iters,
                    "runs": runs,
                }
            )
    return rows


LAZY_N = 50_000


def run_lazy(n=LAZY_N, d=10, agree_n=2000, device="cpu"):
    """Lazy mode: dense = lazy at ``agree_n``, then one lazy default fit
    plus ``transform`` at n = m = ``n`` with the process's peak memory."""
    rows = []
    Xs, Xt = make_gaussian_mixtures(agree_n, d, random_state=1)
    fits = {}
    for mode in ("dense", "lazy"):
        fits[mode] = SROTransport(
            coupling=mode, tol=1e-9, max_iter=20_000, random_state=0, device=device
        ).fit(Xs, X_target=Xt)
    new = np.random.default_rng(0).normal(size=(500, d))
    diff = max(
        float(np.abs(fits["dense"].transform(Xs) - fits["lazy"].transform(Xs)).max()),
        float(np.abs(fits["dense"].transform(new) - fits["lazy"].transform(new)).max()),
    )
    rows.append(
        {
            "part": "lazy",
            "n": agree_n,
            "d": d,
            "method": "lazy vs dense",
            "max_abs_diff": diff,
        }
    )
    Xs, Xt = make_gaussian_mixtures(n, d, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = SROTransport(coupling="lazy", random_state=0, device=device)
        model.fit(Xs, X_target=Xt)
    fit_s = time.perf_counter() - start
    model.transform(Xs)
    total = time.perf_counter() - start
    rows.append(
        {
            "part": "lazy",
            "n": n,
            "d": d,
            "method": SROT,
            "fit_s": fit_s,
            "fit_transform_s": total,
            "n_iter": model.n_iter_,
            "choice": _choice(model),
            "converged": not any(
                issubclass(w.category, ConvergenceWarning) for w in caught
            ),
            "peak_rss_gb": peak_rss_gb(),
        }
    )
    return rows


# ------------------------------------------------------------------- parts
# Each part's adapter: the framework's context and the part's configuration
# in, rows out. ``ctx.params["options"]`` is ``run``'s ``options``.
def _part_scale(ctx):
    return run_scale(device=ctx.device)


def _part_grid(ctx, grid, dims, gpu_grid=None):
    if gpu_grid is not None and ctx.device != "cpu":
        grid = gpu_grid
    geomloss = ctx.peer("GeomLoss", "geomloss", "pip install geomloss")
    return run_grid(
        grid, dims, ctx.device, options=ctx.params["options"], geomloss=geomloss
    )


def _part_options(ctx, **config):
    return run_options(device=ctx.device, **config)


def _part_moons(ctx, **config):
    options = ctx.params["options"]
    chosen = default_options() if options is None else options
    named = [("default" if options is None else "chosen", chosen)]
    if any(r["part"] == "options" for r in ctx.rows):
        best = _parse_option(rank_options(ctx.rows)[0]["option"])
        if best != chosen:
            named.append(("best", best))
    return run_moons(named, device=ctx.device, **config)


def _refinements(ctx, config):
    """``run_refinements`` once per run: "refine" and "front" share it."""
    return ctx.once(
        "refinements",
        lambda: run_refinements(
            device=ctx.device, options=ctx.params["options"], **config
        ),
    )


def _part_refine(ctx, **config):
    rows, _ = _refinements(ctx, config)
    return rows


def _part_front(ctx, regs, refine, real=True):
    _, prob = _refinements(ctx, refine)
    geomloss = ctx.peer("GeomLoss", "geomloss", "pip install geomloss")
    rows = run_front(prob, regs=regs, device=ctx.device, geomloss=geomloss)
    if real:
        pair = load_point_cloud_pairs()["digits"]
        digits = {**_problem(pair.Xs, pair.Xt), "name": "digits"}
        rows += run_front(digits, regs=regs, device=ctx.device, geomloss=geomloss)
    return rows


QUICK_REFINE = {"n": 500, "regs": (0.1,), "k_max": 3}


def _part_real(ctx, **config):
    return run_real(device=ctx.device, **config)


def _part_speed(ctx, **config):
    return run_speed(device=ctx.device, **config)


def _part_lazy(ctx, **config):
    return run_lazy(device=ctx.device, **config)


BENCHMARK = Benchmark(
    "srot",
    [
        # first, so that the process's peak memory is the fit's own
        Part(
            "lazy",
            _part_lazy,
            quick={"n": 3000, "agree_n": 300},
            help=f"lazy = dense at n = 2,000; a lazy fit + transform at n = {LAZY_N:,}",
        ),
        Part(
            "scale",
            _part_scale,
            quick=False,
            help=f"one SROTransport() fit at n = m = {SCALE_N:,}, d = {SCALE_D}",
        ),
        Part(
            "real",
            _part_real,
            quick={"regs": (0.05,), "max_samples": 400},
            help="SROTransport() on real point-cloud pairs against POT sinkhorn_log",
        ),
        Part(
            "speed",
            _part_speed,
            quick={"ns": (500,)},
            help="ms per iteration (setup included) against POT torch Sinkhorn",
        ),
        Part(
            "grid",
            _part_grid,
            full={"grid": GRID, "dims": DIMS, "gpu_grid": DEVICE_GRID},
            quick={"grid": QUICK_GRID, "dims": QUICK_DIMS},
            help="SROT, EOT (POT and skml), sliced reference over (n, d, reg)",
        ),
        Part(
            "options",
            _part_options,
            quick={
                "n": 500,
                "dims": (2, 10),
                "regs": (0.1, 1.0),
                "grid": QUICK_OPTIONS,
            },
            help="reference options ranked by cost-gap ratio to EOT",
        ),
        Part(
            "moons",
            _part_moons,
            quick={"n": 300, "regs": (0.003, 0.03, 0.3)},
            help="moons -> circles, default (and best) options against EOT",
        ),
        Part(
            "refine",
            _part_refine,
            quick=QUICK_REFINE,
            help="plan error over n_refinements",
        ),
        Part(
            "front",
            _part_front,
            full={"regs": FRONT_REGS + (0.003,), "refine": {}},
            quick={"regs": (1.0, 0.3, 0.1), "refine": QUICK_REFINE, "real": False},
            help="error-versus-time front: POT, GeomLoss and SROT over reg",
        ),
    ],
    description="SROT against entropic OT, the sliced reference plan and exact OT",
)
PARTS = BENCHMARK.part_names


def run(quick=False, device="cpu", options=None, parts=None):
    """Run the parts of the benchmark (all by default).

    Parameters
    ----------
    quick : bool, default=False
        Small grids (well under a minute on 2 cores).
    device : str or torch.device, default="cpu"
        Device of skml's solvers and of POT's torch tensors (``"auto"``: a
        GPU when there is one); a GPU device runs the whole (n, d, reg) grid.
    options : dict, default=None
        SROT reference options (``n_projections``, ``beta``,
        ``reference_smoothing``) of the grid, refinement and front parts;
        default: those of ``SROTransport()``.
    parts : list of str, default=None
        A subset of ``PARTS`` ("scale", "grid", "options", "moons", "refine",
        "front"); ``None`` runs them all ("front" reuses the refinements'
        problem, and "moons" compares with the best option only when
        "options" runs). The quick run skips "scale".

    Returns
    -------
    rows : list of dict
        The framework's rows (see :mod:`skml.benchmarks._common`; the meta
        row also names the SROT ``options``), then the parts' rows, each
        with a ``part`` ("grid", "options", "moons", "refine", "front",
        "scale"); the grid-like ones have ``n``, ``d``, ``reg``, ``method``,
        ``l1``, ``gap``, ``marginal_err``, ``seconds`` and ``n_iter``.
    """
    chosen = default_options() if options is None else options
    return BENCHMARK.run(
        quick=quick,
        device=device,
        parts=parts,
        params={"options": options},
        meta={"options": _option_name(chosen)},
    )


def _parse_option(name):
    parts = dict(token.split("=") for token in name.split())
    return {
        "reference_smoothing": float(parts["s"]),
        "beta": float(parts["beta"]),
        "n_projections": int(parts["L"]),
    }


# ------------------------------------------------------------------ report
def _pivot(rows, part="grid"):
    """One line per (n, d, reg) with the methods side by side."""
    cells = {}
    for r in rows:
        if r["part"] != part:
            continue
        cells.setdefault((r["n"], r["d"], r["reg"]), {})[r["method"]] = r
    table = []
    for (n, d, reg), m in sorted(cells.items()):
        eot, srot, ref, pot = m.get(EOT), m.get(SROT), m.get(REF), m.get(EOT_POT)
        line = {"n": n, "d": d, "reg": reg}
        if eot and srot and ref:
            line.update(
                gap_eot=eot["gap"],
                gap_srot=srot["gap"],
                ratio=srot["gap"] / eot["gap"] if eot["gap"] > 0 else np.nan,
                gap_ref=ref["gap"],
                l1_eot=eot["l1"],
                l1_srot=srot["l1"],
                l1_ref=ref["l1"],
                pot_s=pot["seconds"] if pot else None,
                eot_s=eot["seconds"],
                srot_s=srot["seconds"],
                it_pot=pot["n_iter"] if pot else None,
                it_eot=eot["n_iter"],
                it_srot=srot["n_iter"],
            )
            if pot:
                line["gap_pot"] = pot["gap"]
            if "EOT (GeomLoss)" in m:
                line["gap_geomloss"] = m["EOT (GeomLoss)"]["gap"]
            line["helps"] = "yes" if srot["gap"] < eot["gap"] else "NO"
            line["conv"] = "yes" if srot["marginal_err"] <= 10 * TOL else "no"
        table.append(line)
    return table


GRID_COLUMNS = [
    "n",
    "d",
    "reg",
    "gap_pot",
    "gap_eot",
    "gap_srot",
    "ratio",
    "gap_ref",
    "l1_eot",
    "l1_srot",
    "l1_ref",
    "pot_s",
    "eot_s",
    "srot_s",
    "it_pot",
    "it_eot",
    "it_srot",
    "conv",
    "helps",
]
OPTION_COLUMNS = [
    "option",
    "geo_ratio",
    "geo_d2",
    "geo_d10",
    "geo_d50",
    "max_ratio",
    "share_lt1",
    "share_07",
    "l1_vs_ref_fails",
    "small_reg",
    "n_iter",
    "seconds",
]


def acceptance(rows):
    """SROT against EOT on the grid's larger regs: cost gap and plan error.

    Counts the (n, d, reg) points with reg in ``LARGE_REGS`` where SROT's
    cost gap is below EOT's (target: 80% of them), at most 0.7 times EOT's
    (target: 50%), and where SROT's plan is closer (L1) to the exact plan
    than its sliced reference (target: all); then the second pass's target
    over every point of the grid, small reg included: the defaults' cost
    gap below EOT's everywhere and at most 0.7 times it on 60% of the
    points.

    Parameters
    ----------
    rows : list of dict
        The rows of :func:`run`.

    Returns
    -------
    str
    """
    table = _pivot(data_rows(rows))
    large = [t for t in table if t["reg"] in LARGE_REGS and "ratio" in t]
    if not large:
        return "no grid points at the larger half of the reg grid"
    k = len(large)
    below = sum(t["gap_srot"] < t["gap_eot"] for t in large)
    within = sum(t["gap_srot"] <= 0.7 * t["gap_eot"] for t in large)
    l1_large = sum(t["l1_srot"] < t["l1_ref"] for t in large)
    l1_all = sum(t["l1_srot"] < t["l1_ref"] for t in table if "ratio" in t)
    n_all = sum("ratio" in t for t in table)
    regs = sorted({t["reg"] for t in large})
    lines = [
        f"SROT vs EOT over {k} (n, d, reg) points with reg in {regs}:",
        f"  SROT cost gap below EOT's:          {below}/{k} = {below / k:.0%} "
        f"(need >= 80%) -> {'PASS' if below >= 0.8 * k else 'FAIL'}",
        f"  SROT cost gap <= 0.7 x EOT's:       {within}/{k} = {within / k:.0%} "
        f"(need >= 50%) -> {'PASS' if within >= 0.5 * k else 'FAIL'}",
        f"  SROT plan L1 below its reference's: {l1_large}/{k} at reg >= "
        f"{min(regs):g}, {l1_all}/{n_all} over the whole grid (need all) -> "
        f"{'PASS' if l1_large == k else 'FAIL'}",
    ]
    # the second pass's target: the defaults over the whole grid, small reg too
    every = [t for t in table if "ratio" in t]
    n_every = len(every)
    below_all = sum(t["gap_srot"] < t["gap_eot"] for t in every)
    within_all = sum(t["gap_srot"] <= 0.7 * t["gap_eot"] for t in every)
    lines += [
        f"SROT defaults vs EOT over all {n_every} (n, d, reg) points:",
        f"  cost gap below EOT's:               {below_all}/{n_every} = "
        f"{below_all / n_every:.1%} (need 100%) -> "
        f"{'PASS' if below_all == n_every else 'FAIL'}",
        f"  cost gap <= 0.7 x EOT's:            {within_all}/{n_every} = "
        f"{within_all / n_every:.1%} (need >= 60%) -> "
        f"{'PASS' if within_all >= 0.6 * n_every else 'FAIL'}",
    ]
    hurt = [t for t in every if t["gap_srot"] >= t["gap_eot"]]
    if hurt:
        where = ", ".join(f"(n={t['n']}, d={t['d']}, reg={t['reg']:g})" for t in hurt)
        lines.append(f"  SROT does not beat EOT's cost gap at: {where}")
    return "\n".join(lines)


def _refine_table(rows):
    out = []
    for r in rows:
        if r["part"] == "refine":
            out.append(
                {
                    "reg": r["reg"],
                    "refinements": r["k"],
                    "l1": r["l1"],
                    "gap": r["gap"],
                    "seconds": r["seconds"],
                    "n_iter": r["n_iter"],
                }
            )
    return out


def _simple(rows, part, columns):
    return format_table([r for r in rows if r["part"] == part], columns=columns)


def _front_summary(rows):
    """Each refinement's last stage against POT's front at the same L1 error.

    POT's time to that error is interpolated (log time, linear in L1)
    between the two reg of its front that bracket it.
    """
    pot = sorted(
        (r for r in rows if r["part"] == "front" and r["method"] == EOT_POT),
        key=lambda r: -r["l1"],
    )
    refine = [r for r in rows if r["part"] == "refine"]
    lines = []
    for reg in sorted({r["reg"] for r in refine}):
        last = max((r for r in refine if r["reg"] == reg), key=lambda r: r["k"])
        target = last["l1"]
        peer = f"POT's front does not reach L1 {target:.3f}"
        for hi, lo in zip(pot, pot[1:]):
            if lo["l1"] <= target <= hi["l1"]:
                w = (hi["l1"] - target) / max(hi["l1"] - lo["l1"], 1e-300)
                log_t = (1 - w) * np.log(hi["seconds"]) + w * np.log(lo["seconds"])
                peer = (
                    f"POT reaches it in about {np.exp(log_t):.2f} s (between reg "
                    f"{hi['reg']:g} and {lo['reg']:g})"
                )
                break
        lines.append(
            f"SROT reg {reg:g}, {last['k']} refinements: L1 {target:.3f} in "
            f"{last['seconds']:.2f} s; {peer}"
        )
    return "\n".join(lines)


def _front_comparison(rows):
    """SROT's fronts against each entropic solver's: at equal time (Pareto
    dominance) and at equal plan entropy (the peer's L1 error interpolated
    between the two front points that bracket SROT's entropy)."""
    front = [r for r in rows if r["part"] == "front"]
    lines = []
    for pair in sorted({r["pair"] for r in front}):
        mine = [r for r in front if r["pair"] == pair and r["method"] == SROT]
        for peer in (EOT_POT, EOT_SCALING, GEOMLOSS):
            theirs = [r for r in front if r["pair"] == pair and r["method"] == peer]
            if not theirs or not mine:
                continue
            # time: Pareto dominance (a peer run at most as long with a lower
            # L1 error); entropy: the peer's L1 interpolated at SROT's entropy
            ahead = sum(
                not any(
                    p["seconds"] <= r["seconds"] and p["l1"] <= r["l1"] for p in theirs
                )
                for r in mine
            )
            lines.append(
                f"front {pair}, time: {ahead} of {len(mine)} SROT runs are not "
                f"dominated by {peer} (no run of it at most as long with a lower "
                "plan L1 error)"
            )
            below = above = unknown = 0
            for r in mine:
                peer_l1 = _interpolate(theirs, "entropy", r["entropy"])
                if peer_l1 is None:
                    unknown += 1
                elif r["l1"] < peer_l1:
                    below += 1
                else:
                    above += 1
            lines.append(
                f"front {pair}, equal entropy: SROT's L1 below {peer}'s in {below}, "
                f"above in {above}, outside its entropy range in {unknown} of "
                f"{len(mine)} regs"
            )
    return lines


def _interpolate(points, axis, value):
    pts = sorted(points, key=lambda r: r[axis])
    for lo, hi in zip(pts, pts[1:]):
        if lo[axis] <= value <= hi[axis]:
            x0, x1, x = lo[axis], hi[axis], value
            w = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
            return (1 - w) * lo["l1"] + w * hi["l1"]
    return None


def _new_parts_report(rows):
    out = []
    lazy = [r for r in rows if r["part"] == "lazy"]
    for r in lazy:
        if r["method"] == "lazy vs dense":
            ok = r["max_abs_diff"] <= 1e-6
            out.append(
                f"lazy vs dense (n = {r['n']:,}, tol 1e-9): max |transform diff| "
                f"{r['max_abs_diff']:.2e} <= 1e-6: {'PASS' if ok else 'FAIL'}"
            )
        else:
            ok = r["fit_transform_s"] < 600 and r["peak_rss_gb"] < 4
            out.append(
                f"lazy fit + transform at n = m = {r['n']:,}, d = {r['d']}: "
                f"{r['fit_transform_s']:.0f} s (fit {r['fit_s']:.0f} s, "
                f"{r['n_iter']} iterations, converged {r['converged']}, "
                f"{r['choice']}), peak RSS {r['peak_rss_gb']:.2f} GB; under 600 s "
                f"and 4 GB: {'PASS' if ok else 'FAIL'}"
            )
    real = [r for r in rows if r["part"] == "real"]
    if real:
        out.append(
            "== real pairs: SROTransport(reg) defaults against POT sinkhorn_log at "
            "the same eps (gap: relative cost gap to ot.emd)"
        )
        table = []
        for r in real:
            if r["method"] != SROT:
                continue
            pot = next(
                p
                for p in real
                if p["pair"] == r["pair"] and p["reg"] == r["reg"] and p is not r
            )
            table.append(
                {
                    "pair": r["pair"],
                    "n": r["n"],
                    "m": r["m"],
                    "d": r["d"],
                    "reg": r["reg"],
                    "gap_eot": pot["gap"],
                    "gap_srot": r["gap"],
                    "ratio": r["gap"] / pot["gap"] if pot["gap"] > 0 else np.nan,
                    "choice": r["choice"],
                    "seconds": r["seconds"],
                    "n_iter": r["n_iter"],
                    "converged": r["converged"],
                }
            )
        out.append(format_table(table, digits=3))
        slow = [t for t in table if not (t["converged"] and t["seconds"] < 10)]
        ratios = np.array([t["ratio"] for t in table])
        out.append(
            f"real pairs: converged in under 10 s in {len(table) - len(slow)} of "
            f"{len(table)} fits; gap ratio < 1 in {int(np.sum(ratios < 1 - 1e-9))}, "
            f"= 1 (entropic fallback) in "
            f"{sum(t['choice'] == 'entropic' for t in table)}, <= 0.7 in "
            f"{int(np.sum(ratios <= 0.7))} of {len(table)}"
        )
    speed = [r for r in rows if r["part"] == "speed"]
    if speed:
        out.append(
            "== speed: ms per iteration, setup (cost, reference) included, "
            f"{speed[0]['n_iter']} fixed iterations, d = {speed[0]['d']}"
        )
        out.append(format_table(speed, columns=["n", "method", "ms_per_iter"]))
        for n in sorted({r["n"] for r in speed}):
            by = {r["method"]: r["ms_per_iter"] for r in speed if r["n"] == n}
            for method in (SROT_FIXED, SROT_RANK):
                if method not in by:
                    continue
                ratio = by[method] / by["POT torch sinkhorn"]
                out.append(
                    f"speed n = {n:,}, {method}: SROT / POT plain = {ratio:.2f} "
                    f"(target <= 1.5): {'PASS' if ratio <= 1.5 else 'FAIL'}; "
                    f"SROT / POT log = {by[method] / by['POT torch sinkhorn_log']:.2f}"
                )
    return out


def report(rows):
    """The run's status, all tables, then SROT's cost-gap check."""
    out = []
    opts = default_options()
    meta = next((r for r in rows if r["part"] == "meta"), None)
    out += meta_line(rows) + status_lines(rows)
    rows = data_rows(rows)
    out += _new_parts_report(rows)
    scale = [r for r in rows if r["part"] == "scale"]
    if scale:
        out.append(
            "== scale: SROTransport() fit, target on a CPU under 300 s and 12 GB "
            "(peak_rss_gb: the process's peak so far)"
        )
        columns = ["n", "d", "seconds", "n_iter", "converged", "marginal_err"]
        out.append(format_table(scale, columns=columns + ["peak_rss_gb"]))
        for r in scale:
            ok = r["seconds"] < 300 and r["peak_rss_gb"] < 12
            out.append(
                f"scale: fit at n = {r['n']:,} under 300 s and 12 GB: "
                f"{'PASS' if ok else 'FAIL'}"
            )
    if any(r["part"] == "grid" for r in rows):
        out.append(
            "== main grid: cost gap and plan L1 error to ot.emd, time (s); SROT: "
            "SROTransport(reg) with its defaults (the JSON also holds "
            f"{SROT_FIXED!r}: {meta['options'] if meta else _option_name(opts)}; "
            "ratio = gap_srot / gap_eot)"
        )
        out.append(format_table(_pivot(rows), columns=GRID_COLUMNS))
    ranked = rank_options(rows)
    if ranked:
        first = next(r for r in rows if r["part"] == "options")
        out.append(
            f"\n== reference options (n={first['n']}): cost-gap ratio to EOT, "
            f"geometric mean over reg in {list(LARGE_REGS)} (per d: geo_d*), "
            "small_reg = same at the smaller regs; best first"
        )
        out.append(format_table(ranked, columns=OPTION_COLUMNS, digits=3))
        best = ranked[0]
        chosen = meta["options"] if meta else _option_name(opts)
        default = [o for o in ranked if o["option"] == chosen]
        line = f"best option: {best['option']} (geo ratio {best['geo_ratio']:.3f})"
        if default:
            line += f"; benchmarked {chosen}: {default[0]['geo_ratio']:.3f}"
        out.append(line)
    moons = [r for r in rows if r["part"] == "moons"]
    if moons:
        out.append(f"\n== moons -> circles (n={moons[0]['n']}, d=2)")
        columns = ["reg", "method", "gap", "ratio", "l1", "ref_l1", "seconds", "n_iter"]
        out.append(format_table(moons, columns=columns))
    if any(r["part"] == "refine" for r in rows):
        first = next(r for r in rows if r["part"] == "refine")
        out.append(
            f"\n== refinements (n={first['n']}, d={first['d']}): plan L1 error over "
            "n_refinements (cumulative time)"
        )
        table = _refine_table(rows)
        out.append(format_table(table))
        mono = []
        for reg in sorted({t["reg"] for t in table}):
            l1 = [t["l1"] for t in table if t["reg"] == reg]
            word = "monotone" if np.all(np.diff(l1) < 0) else "NOT monotone"
            mono.append(f"reg {reg:g}: {word}")
        out.append("L1 over refinements: " + "; ".join(mono))
    if any(r["part"] == "front" for r in rows):
        out.append(
            "\n== fronts: plan L1 error and cost gap to ot.emd against seconds and "
            "against the plan's entropy (mixtures: same n, d as the refinements)"
        )
        out.append(
            _simple(
                rows,
                "front",
                ["pair", "reg", "method", "l1", "gap", "entropy", "seconds", "n_iter"],
            )
        )
        out += _front_comparison(rows)
        if any(r["part"] == "refine" for r in rows):
            out.append(_front_summary(rows))
    if any(r["part"] == "grid" for r in rows):
        out.append("\n" + acceptance(rows))
    return "\n".join(out)


def demo():
    """One row for ``python -m skml demo``: ``SROTransport()`` with its
    defaults against POT's entropic OT (``ot.sinkhorn``, log domain) at the
    same absolute regularisation, on Gaussian mixtures (n=500, d=2)."""
    from ..transport import SROTransport

    start = time.perf_counter()
    Xs, Xt = make_gaussian_mixtures(500, 2, random_state=0)
    prob = _problem(Xs, Xt)
    with count_warnings():
        model = SROTransport(random_state=0).fit(Xs, X_target=Xt)
        P_pot, _, _ = _eot_pot(prob, model.eps_)
    return {
        "estimator": "SROTransport",
        "task": "OT plan, Gaussian mixtures (n=500, d=2, default reg)",
        "metric": "relative cost gap to exact OT (lower is better; baseline: "
        "POT entropic OT)",
        "skml": _score(prob, model.coupling_)["gap"],
        "baseline": _score(prob, P_pot)["gap"],
        "seconds": time.perf_counter() - start,
    }
