"""release_memory: glibc's malloc_trim, a no-op elsewhere."""

import numpy as np

from skml.utils import release_memory
from skml.utils._memory import _malloc_trim


def test_release_memory_returns_a_bool_and_is_idempotent():
    for _ in range(3):
        chunks = [np.ones(1 << 20) for _ in range(4)]
        del chunks
        assert isinstance(release_memory(), bool)


def test_no_trim_without_glibc(monkeypatch):
    import skml.utils._memory as memory

    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert memory.release_memory() is False
    _malloc_trim.cache_clear()
