import numpy as np
import pytest
import sklearn
from scipy.integrate import quad
from sklearn.linear_model import LinearRegression
from sklearn.metrics import make_scorer
from sklearn.model_selection import KFold, cross_val_score

from skml.metrics import ecce, multicalibration_error, worst_group_bucket_residual
from skml.metrics._multicalibration import _brownian_range_sf


def test_ecce_hand_computed_with_tie():
    # Stable sort by prediction: rows 1 (0.1), 2 (0.3), 3 (0.3), 0 (0.5).
    # Residuals y - f in that order: -0.1, 0.7, -0.3, 0.5; W = 4.
    # C = 0, -0.025, 0.15, 0.075, 0.2  ->  ECCE = 0.2 - (-0.025) = 0.225.
    # (Breaking the tie the other way would give 0.3.)
    # diff(r) = 0.8, -1.0, 0.8; sum diff^2 * (1 + 1)^2 = 4 * 2.28 = 9.12;
    # denominator 4 * W * (w1 + w4 + 2 * (w2 + w3)) = 4 * 4 * 6 = 96.
    value, sigma = ecce([1.0, 0.0, 1.0, 0.0], [0.5, 0.1, 0.3, 0.3])
    assert value == pytest.approx(0.225)
    assert sigma == pytest.approx(np.sqrt(9.12 / 96))


def test_ecce_hand_computed_weighted():
    # f = 0.2, 0.4, 0.6; y = 0, 1, 0; w = 1, 2, 1; r = -0.2, 0.6, -0.6; W = 4.
    # C = 0, -0.05, 0.25, 0.1  ->  ECCE = 0.30.
    # diff(r) = 0.8, -1.2: 0.64 * 3^2 + 1.44 * 3^2 = 18.72;
    # denominator 4 * 4 * (1 + 1 + 2 * 2) = 96.
    value, sigma = ecce([0, 1, 0], [0.2, 0.4, 0.6], sample_weight=[1, 2, 1])
    assert value == pytest.approx(0.30)
    assert sigma == pytest.approx(np.sqrt(18.72 / 96))


def test_ecce_integer_weights_equal_repeated_rows(rng):
    f = rng.uniform(size=50)
    y = f + rng.normal(scale=0.2, size=50)
    w = rng.integers(1, 4, size=50)
    weighted, _ = ecce(y, f, sample_weight=w)
    repeated, _ = ecce(np.repeat(y, w), np.repeat(f, w))
    assert weighted == pytest.approx(repeated, rel=1e-12)
    # Weights are scale-free in both ECCE and sigma.
    assert ecce(y, f, sample_weight=3.0 * w) == pytest.approx(
        ecce(y, f, sample_weight=w)
    )


def test_ecce_sigma_unit_weights_close_to_residual_variance(rng):
    n = 5000
    f = rng.uniform(size=n)
    y = f + rng.normal(scale=0.5, size=n)
    _, sigma = ecce(y, f)
    assert sigma**2 == pytest.approx(np.var(y - f) / n, rel=0.1)


def test_ecce_ties_keep_input_order(rng):
    # Many tied predictions: the path must follow a stable sort.
    n = 300
    f = rng.integers(0, 3, size=n) / 2
    y = f + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    order = sorted(range(n), key=lambda i: f[i])  # Python's sort is stable
    path = np.concatenate([[0.0], np.cumsum((w * (y - f))[order]) / w.sum()])
    value, _ = ecce(y, f, sample_weight=w)
    assert value == pytest.approx(path.max() - path.min())


def test_ecce_single_row_has_nan_sigma():
    value, sigma = ecce([1.0], [0.25])
    assert value == pytest.approx(0.75)
    assert np.isnan(sigma)


def test_brownian_range_sf_matches_simulation():
    rng = np.random.default_rng(0)
    n_paths, n_steps = 6000, 500
    paths = np.cumsum(rng.standard_normal((n_paths, n_steps)), axis=1)
    paths /= np.sqrt(n_steps)
    ranges = np.maximum(paths.max(1), 0) - np.minimum(paths.min(1), 0)
    # Discrete monitoring misses each extreme by about 0.5826 / sqrt(n_steps)
    # (Broadie, Glasserman & Kou 1997).
    ranges += 2 * 0.5826 / np.sqrt(n_steps)
    for x in (0.8, 1.0, 1.5, 2.0, 2.5, 3.0):
        assert _brownian_range_sf(x) == pytest.approx(np.mean(ranges > x), abs=0.02)


def test_brownian_range_sf_is_a_survival_function():
    x = np.linspace(0.0, 8.0, 400)
    sf = _brownian_range_sf(x)
    assert sf.shape == x.shape
    assert sf[0] == 1.0 and sf[-1] < 1e-12
    assert np.all(np.diff(sf) <= 1e-12)
    # E[R] = 2 * sqrt(2 / pi) for the range of Brownian motion on [0, 1].
    mean, _ = quad(_brownian_range_sf, 0, 20, limit=200)
    assert mean == pytest.approx(2 * np.sqrt(2 / np.pi), rel=1e-6)


def _data(rng, n=2000):
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 5, size=n)])
    groups = (rng.uniform(size=(n, 3)) < [0.2, 0.35, 0.5]).astype(int)
    f = rng.uniform(size=n)
    y = f + rng.normal(scale=0.3, size=n)
    return X, groups, f, y


def test_calibrated_predictions_have_small_mce(rng):
    X, groups, f, y = _data(rng)
    details = multicalibration_error(y, f, groups=groups, X=X, return_details=True)
    assert details.mce_sigma < 5
    assert details.p_value > 1e-6
    assert details.mce_sigma < details.mde / details.sigma_global


def test_group_bias_gives_large_mce_and_names_group(rng):
    X, groups, f, y = _data(rng)
    biased = f - 0.3 * groups[:, 1]
    details = multicalibration_error(y, biased, groups=groups, X=X, return_details=True)
    assert details.mce_sigma > 10
    assert "group1=1" in details.worst_segment
    assert details.p_value < 1e-10
    assert multicalibration_error(y, biased, groups=groups, X=X) == pytest.approx(
        details.mce_sigma
    )


def test_label_groups_name_the_biased_label(rng):
    n = 1500
    labels = rng.choice(np.array(["a", "b", "c", "d", "e"]), size=n)
    f = rng.uniform(size=n)
    y = f + 0.4 * (labels == "d") + rng.normal(scale=0.3, size=n)
    details = multicalibration_error(y, f, groups=labels, return_details=True)
    assert details.worst_segment == "group=d"
    # All five labels are kept (no "other"), plus the whole population.
    assert details.n_segments == 6
    assert details.table["groups"] == ["all"] + [f"group={c}" for c in "abcde"]


def test_details_are_consistent_with_ecce(rng):
    X, groups, f, y = _data(rng, n=800)
    w = rng.uniform(0.5, 2.0, size=800)
    details = multicalibration_error(
        y, f, groups=groups, X=X, sample_weight=w, return_details=True
    )
    segments = {s["description"]: s for s in details.segments}
    value, sigma = ecce(y, f, sample_weight=w)
    assert details.segments[0]["description"] == "all"
    assert segments["all"]["ecce"] == pytest.approx(value)
    assert details.sigma_global == pytest.approx(sigma)
    member = groups[:, 2] == 1
    value, sigma = ecce(y[member], f[member], sample_weight=w[member])
    assert segments["group2=1"]["ecce"] == pytest.approx(value)
    assert segments["group2=1"]["sigma"] == pytest.approx(sigma)
    assert segments["group2=1"]["size"] == member.sum()
    scores = [s["ecce_sigma"] for s in details.segments]
    assert details.mce_sigma == pytest.approx(np.nanmax(scores))
    assert details.mce == pytest.approx(details.mce_sigma * details.sigma_global)
    assert details.mde == pytest.approx(5 * details.sigma_global)
    assert details.p_value == pytest.approx(
        min(_brownian_range_sf(s) for s in scores if np.isfinite(s))
    )


def test_segment_enumeration_rules(rng):
    n = 600
    X = np.empty((n, 3), dtype=object)
    X[:, 0] = rng.normal(size=n)
    X[:, 1] = rng.choice(list("pqrstu"), size=n)
    X[:, 2] = rng.integers(0, 3, size=n)  # exactly max_values_per_feature values
    groups = (rng.uniform(size=(n, 2)) < 0.3).astype(int)
    f = rng.uniform(size=n)
    y = f + rng.normal(size=n)
    details = multicalibration_error(
        y,
        f,
        groups=groups,
        X=X,
        min_segment_size=25,
        max_segments=60,
        return_details=True,
    )
    descriptions = [s["description"] for s in details.segments]
    assert details.n_segments == len(descriptions) == 60
    assert all(s["size"] >= 25 for s in details.segments)
    depths = [0] + [d.count(" & ") + 1 for d in descriptions[1:]]
    assert depths == sorted(depths)
    depth_one = [d for d, k in zip(descriptions, depths) if k == 1]
    x0_values = {d.split("=")[1] for d in depth_one if d.startswith("x0=")}
    assert x0_values == {"bin0", "bin1", "bin2"}
    x1_values = [d.split("=")[1] for d in depth_one if d.startswith("x1=")]
    assert len(x1_values) == 4 and x1_values[-1] == "other"
    # The three most frequent letters are kept.
    letters, counts = np.unique(X[:, 1].astype(str), return_counts=True)
    top = set(letters[np.argsort(-counts, kind="stable")[:3]])
    assert set(x1_values[:-1]) == top
    x2_values = [d.split("=")[1] for d in depth_one if d.startswith("x2=")]
    assert x2_values == ["0", "1", "2"]
    only_global = multicalibration_error(
        y, f, groups=groups, X=X, max_depth=0, return_details=True
    )
    assert [s["description"] for s in only_global.segments] == ["all"]


def test_group_bucket_table_matches_numpy(rng):
    n, n_buckets = 3000, 5
    groups = (rng.uniform(size=(n, 2)) < [0.4, 0.03]).astype(int)
    # Rounded predictions, so bucket edges fall on tied values: [e_j, e_j+1).
    f = np.round(rng.uniform(size=n), 2)
    w = rng.uniform(0.5, 2.0, size=n)
    y = f + rng.normal(scale=0.2, size=n) + 3.0 * groups[:, 1]
    details = multicalibration_error(
        y,
        f,
        groups=groups,
        sample_weight=w,
        n_buckets=n_buckets,
        min_cell_fraction=0.01,
        return_details=True,
    )
    table = details.table
    edges = np.quantile(f, np.linspace(0, 1, n_buckets + 1))
    np.testing.assert_allclose(table["bucket_edges"], edges)
    rows = [np.ones(n, bool), groups[:, 0] == 1, groups[:, 1] == 1]
    expected_mean = np.empty((3, n_buckets))
    expected_mass = np.empty((3, n_buckets))
    for i, member in enumerate(rows):
        for j in range(n_buckets):
            upper = f <= edges[j + 1] if j == n_buckets - 1 else f < edges[j + 1]
            cell = member & (f >= edges[j]) & upper
            expected_mass[i, j] = w[cell].sum() / w.sum()
            expected_mean[i, j] = np.average(y[cell] - f[cell], weights=w[cell])
    assert table["groups"] == ["all", "group0", "group1"]
    np.testing.assert_allclose(table["mass"], expected_mass)
    np.testing.assert_allclose(table["mean_residual"], expected_mean)
    heavy = expected_mass >= 0.01
    assert not heavy[2].all()  # group1 has cells below the mass threshold
    expected_worst = np.abs(expected_mean[heavy]).max()
    assert details.worst_cell_residual == pytest.approx(expected_worst)
    assert worst_group_bucket_residual(
        y, f, groups=groups, sample_weight=w, n_buckets=n_buckets
    ) == pytest.approx(expected_worst)
    # With no mass threshold the light, badly calibrated cells count too.
    assert worst_group_bucket_residual(
        y,
        f,
        groups=groups,
        sample_weight=w,
        n_buckets=n_buckets,
        min_cell_fraction=0.0,
    ) == pytest.approx(np.abs(expected_mean).max())


def test_empty_bucket_is_nan():
    f = np.array([0.0] * 8 + [1.0, 2.0])
    y = f + 0.5
    details = multicalibration_error(y, f, n_buckets=4, return_details=True)
    assert np.isnan(details.table["mean_residual"]).any()
    assert np.nansum(details.table["mass"]) == pytest.approx(1.0)
    assert details.worst_cell_residual == pytest.approx(0.5)


def _scorer_data(rng, n=600):
    X = rng.normal(size=(n, 2))
    groups = (rng.uniform(size=(n, 2)) < 0.4).astype(int)
    # Slope on x0 differs by group: a linear model on X alone misses it.
    y = X[:, 0] + 2.0 * groups[:, 0] * X[:, 0] + rng.normal(scale=0.3, size=n)
    return X, y, groups


def test_make_scorer_in_cross_val_score(rng):
    X, y, _ = _scorer_data(rng)
    scorer = make_scorer(multicalibration_error, greater_is_better=False)
    scores = cross_val_score(LinearRegression(), X, y, scoring=scorer, cv=3)
    assert scores.shape == (3,)
    assert np.all(np.isfinite(scores)) and np.all(scores <= 0)


def test_make_scorer_routes_groups(rng):
    X, y, groups = _scorer_data(rng)
    cv = KFold(3, shuffle=True, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        scorer = make_scorer(
            multicalibration_error, greater_is_better=False
        ).set_score_request(groups=True)
        scores = cross_val_score(
            LinearRegression(),
            X,
            y,
            scoring=scorer,
            cv=cv,
            params={"groups": groups},
        )
    expected = []
    for train, test in cv.split(X):
        model = LinearRegression().fit(X[train], y[train])
        expected.append(
            -multicalibration_error(
                y[test], model.predict(X[test]), groups=groups[test]
            )
        )
    np.testing.assert_allclose(scores, expected)
    plain = cross_val_score(
        LinearRegression(),
        X,
        y,
        cv=cv,
        scoring=make_scorer(multicalibration_error, greater_is_better=False),
    )
    assert np.all(scores <= plain)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y_true": [0.0, np.nan, 1.0]}, "y_true"),
        ({"y_pred": [0.1, np.inf, 0.3]}, "y_pred"),
        ({"groups": [[1, 0], [0, 1]]}, "groups has 2 rows"),
        ({"X": np.zeros((4, 2))}, "X has 4 rows"),
        ({"groups": [[1, 0], [1, 0], [0, 0]]}, "empty group"),
        ({"groups": [[2, 0], [1, 1], [0, 1]]}, "0/1 indicator"),
        ({"sample_weight": [1.0, -1.0, 1.0]}, "[Nn]egative"),
        ({"sample_weight": [0.0, 0.0, 0.0]}, "zero"),
        ({"max_depth": -1}, "max_depth"),
    ],
)
def test_invalid_input_raises(kwargs, match):
    args = {"y_true": [0.0, 1.0, 1.0], "y_pred": [0.1, 0.2, 0.3]} | kwargs
    with pytest.raises(ValueError, match=match):
        multicalibration_error(args.pop("y_true"), args.pop("y_pred"), **args)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="inconsistent"):
        ecce([0.0, 1.0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="groups has 2 rows"):
        worst_group_bucket_residual([0.0, 1.0, 1.0], [0.1, 0.2, 0.3], groups=[0, 1])


def test_small_segment_with_tied_outcomes_sets_the_maximum():
    # Twelve rows whose outcomes tie (top-coded at 1) under predictions
    # 0.05 lower: their successive-difference sigma is tiny, so this small
    # bias dominates the default MCE; with min_segment_size=100 the segment
    # is not scored and the calibrated rest reads as calibrated.
    rng = np.random.default_rng(0)
    n = 3000
    f = rng.uniform(size=n)
    y = f + rng.normal(scale=0.3, size=n)
    x = np.zeros(n)
    x[:12] = 1
    y[:12] = 1.0
    f[:12] = 0.95 + rng.normal(scale=0.005, size=12)
    small = multicalibration_error(y, f, X=x[:, None], return_details=True)
    assert small.worst_segment == "x0=1.0"
    assert small.mce_sigma > 20
    large = multicalibration_error(y, f, X=x[:, None], min_segment_size=100)
    assert large < 3
