"""Benchmarks, one module per estimator, run by ``python -m skml bench NAME``.

Each module exposes

- ``run(quick=False, device="cpu", parts=None) -> list[dict]``: the rows;
  ``parts`` (a list of names, ``python -m skml bench NAME --part P``) picks
  some of the module's parts;
- ``BENCHMARK``: its ``skml.benchmarks._common.Benchmark``, which
  declares the parts with their quick and full configurations and runs
  them (``run`` is usually ``BENCHMARK.run``): it resolves the device, adds
  a ``meta`` row, a status row per part (time, rows, warnings counted by
  category) and a row per skipped peer, and prints one progress line per
  part on stderr;
- ``report(rows) -> str`` (optional): how to print them (default: one table);
- ``demo() -> dict`` (optional): one row for ``python -m skml demo`` with the
  keys ``estimator``, ``task``, ``metric``, ``skml``, ``baseline``, ``seconds``.

Peers are imported lazily inside the parts; one that is not installed is
recorded as a row ``{"part": P, "status": "skipped", "peer": NAME,
"skipped": "not installed: pip install ..."}``.
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
