"""skml: scikit-learn estimators for ten 2026 machine-learning papers.

Every estimator is a plain scikit-learn estimator (``fit``/``predict``/
``transform``, ``get_params``, ``clone``, pickle) with a ``device`` parameter
that moves its torch computations to a GPU when one is available.
"""

import importlib

__version__ = "0.1.0.dev0"

# Public estimators, exported lazily so ``import skml`` stays cheap.
# name -> subpackage that defines it.
_ESTIMATORS: dict[str, str] = {
    "COCOClassifier": "online",
    "COCOLearner": "online",
    "GRASPFineTuner": "finetune",
    "GRASPRegressor": "finetune",
    "MCBoostClassifier": "calibration",
    "MCBoostRegressor": "calibration",
    "NonlinearFactorImputer": "impute",
    "NonlinearFactorModel": "decomposition",
    "NWAttentionRegressor": "attention",
    "OneStepFeatureMap": "kernel_approximation",
    "SROTransport": "transport",
    "SpikedRandomFeatures": "kernel_approximation",
}

__all__ = ["__version__", *_ESTIMATORS]


def __getattr__(name):
    if name in _ESTIMATORS:
        module = importlib.import_module(f"skml.{_ESTIMATORS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'skml' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
