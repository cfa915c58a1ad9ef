"""Fast test settings and expected check failures, in one place.

``INSTANCE_PARAMS[Class]`` holds parameters that keep ``check_estimator``
fast (few iterations); ``EXPECTED_FAILED[Class]`` maps a check name to the
written reason why it fails.
"""

INSTANCE_PARAMS = {}

EXPECTED_FAILED = {}


def make_instance(cls):
    return cls(**INSTANCE_PARAMS.get(cls, {}))


def expected_failed_checks(estimator):
    return EXPECTED_FAILED.get(type(estimator), {})
