"""Handing freed heap memory back to the operating system."""

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - not a C library we know
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return None


def release_memory():
    """Return the C heap's free pages to the operating system (glibc).

    Iterative fits on large arrays free a few row-sized temporaries every
    round. glibc raises its mmap threshold after the first large free, so
    later temporaries come from the heap, and small long-lived objects
    between them keep the freed pages resident: the process's memory grows
    with the number of rounds although nothing stays alive. ``malloc_trim``
    hands those pages back; it changes no allocator setting. A no-op where
    the C library is not glibc.

    Returns
    -------
    bool
        Whether anything was released.

    Examples
    --------
    >>> from skml.utils import release_memory
    >>> isinstance(release_memory(), bool)
    True
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))
