"""Fast test settings and expected check failures, in one place.

``INSTANCE_PARAMS[Class]`` holds parameters that keep ``check_estimator``
fast (few iterations); ``EXPECTED_FAILED[Class]`` maps a check name to the
written reason why it fails.
"""

from sklearn.base import is_classifier

from skml.attention import NWAttentionRegressor
from skml.calibration import MCBoostClassifier, MCBoostRegressor
from skml.decomposition import NonlinearFactorModel
from skml.finetune import GRASPFineTuner
from skml.impute import NonlinearFactorImputer
from skml.online import COCOClassifier, COCOLearner
from skml.transport import SROTransport

# The common checks fit on matrices with two columns (rank 1 fits them),
# often pure noise, where 20 iterations show the contract as well as 200.
INSTANCE_PARAMS = {
    NonlinearFactorModel: {"n_components": 1, "max_iter": 20},
    NonlinearFactorImputer: {"n_components": 1, "max_iter": 20},
}

_ONLINE_WEIGHTS = (
    "An online learner plays one round per row: a row repeated twice is "
    "two rounds (two steps, the step counter advances twice) while a "
    "weight of 2 is one round with twice the gradient, and a zero-weight "
    "row is still a round. Weights equal to one are tested against no "
    "weights, and a weight's effect on the gradient in "
    "tests/online/test_coco.py."
)

_TREE_WEIGHTS = (
    "The default tree auditor's min_samples_leaf counts rows and its bins are "
    "quantiles of rows, as in HistGradientBoostingRegressor (which fails this "
    "check for the same reason); the holdout/CV splits draw rows, not weight. "
    "Zero weights equal dropped rows (tests/calibration/test_mcboost.py)."
)

EXPECTED_FAILED = {
    MCBoostRegressor: {"check_sample_weight_equivalence_on_dense_data": _TREE_WEIGHTS},
    MCBoostClassifier: {"check_sample_weight_equivalence_on_dense_data": _TREE_WEIGHTS},
    COCOLearner: {"check_sample_weight_equivalence_on_dense_data": _ONLINE_WEIGHTS},
    COCOClassifier: {"check_sample_weight_equivalence_on_dense_data": _ONLINE_WEIGHTS},
    NWAttentionRegressor: {
        "check_sample_weight_equivalence_on_dense_data": (
            "Choices made before training count rows, not weight: the "
            "gradient init's leave-one-out slopes, which also set the spectral "
            "allocation's number of heads, let a repeated row see its copies "
            "(and the scaling law's head dimension grows with the number of "
            "rows). With fixed n_heads/head_dim and an array init, "
            "integer weights equal repeated rows and zero weights equal "
            "dropped rows (tests/attention/test_nw.py)."
        ),
    },
    SROTransport: {
        "check_sample_weight_equivalence_on_dense_data": (
            "Without X_target the target is a standard normal sample of X's "
            "shape, so fitting on repeated rows draws a different target; "
            "zero and integer weights are tested against dropped and repeated "
            "rows with a fixed target in tests/transport/test_srot.py."
        ),
    },
}


# Non-default configurations that must pass the checks too (issue 17: the
# estimators trained by skml.optim's symmetry-compatible optimizer).
EXTRA_INSTANCES = [
    NWAttentionRegressor(optimizer="symmetry"),
    GRASPFineTuner(optimizer="symmetry"),
]


def make_instance(cls):
    return cls(**INSTANCE_PARAMS.get(cls, {}))


def small_data(estimator, rng, n_samples=60):
    """Three normal columns and a target that ``estimator`` can learn.

    A classifier gets the sign of the first column, anything else the first
    column plus a little noise.
    """
    X = rng.normal(size=(n_samples, 3))
    if is_classifier(estimator):
        y = (X[:, 0] > 0).astype(int)
    else:
        y = X[:, 0] + 0.1 * rng.normal(size=n_samples)
    return X, y


def expected_failed_checks(estimator):
    return EXPECTED_FAILED.get(type(estimator), {})
