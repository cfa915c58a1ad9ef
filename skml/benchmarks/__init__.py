"""Benchmarks, one module per estimator, run by ``python -m skml bench NAME``.

Each module exposes

- ``run(quick=False, device="cpu") -> list[dict]``: the benchmark rows; a
  module with separately runnable parts also takes ``parts=None`` (a list of
  names, ``python -m skml bench NAME --part P``);
- ``report(rows) -> str`` (optional): how to print them (default: one table);
- ``demo() -> dict`` (optional): one row for ``python -m skml demo`` with the
  keys ``estimator``, ``task``, ``metric``, ``skml``, ``baseline``, ``seconds``.

Peers are imported lazily inside ``run`` and skipped with a message when they
are not installed.
"""

import importlib
import pkgutil


def available():
    """Names of the benchmark modules.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from skml.benchmarks import available
    >>> isinstance(available(), list)
    True
    """
    return sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    )


def load(name):
    """Import the benchmark module ``name``.

    Parameters
    ----------
    name : str
        One of :func:`available`.

    Returns
    -------
    module
    """
    names = available()
    if name not in names:
        listed = ", ".join(names) if names else "none yet"
        raise ValueError(f"Unknown benchmark {name!r}. Available: {listed}.")
    return importlib.import_module(f"{__name__}.{name}")
