import os
import re

import numpy as np
import pytest
import torch

# The suite runs under pytest-xdist (``-n auto`` in pyproject.toml). Each
# worker imports torch and builds its own copies of the shared fixtures, so
# more workers than this stop paying for themselves on the small fits that
# make up most of the suite.
MAX_WORKERS = 4


# optionalhook: with ``-p no:xdist`` these hooks have no spec and are skipped.
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    # One core: no workers, the tests run in this process.
    return min(cores, MAX_WORKERS) if cores > 1 else 0


def _modules_with_shared_fixtures(root):
    """Test modules that define a module-, package- or session-scoped fixture.

    Such fixtures are expensive by design (a trained model, a benchmark run):
    all tests of the module go to one worker so each fixture is built once.
    Read from the source because xdist's controller never imports the tests.
    """
    pattern = re.compile(r"scope\s*=\s*[\"'](module|package|session)[\"']")
    return {
        path.relative_to(root).as_posix()
        for path in (root / "tests").rglob("test_*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    }


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # xdist's own "loadgroup" relies on rewriting node ids, which pytest 9.2
    # no longer honours (pytest-xdist issue 1386), so the grouping is done
    # here: a shared-fixture module is one unit, every other test its own.
    if config.getvalue("dist") != "load":
        return None  # the user chose a distribution mode
    from xdist.scheduler import LoadScopeScheduling

    shared = _modules_with_shared_fixtures(config.rootpath)

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            return module if module in shared else nodeid

    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="CUDA is not available on this machine")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
