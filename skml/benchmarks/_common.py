"""The small framework every benchmark module runs on.

A module declares its parts once::

    BENCHMARK = Benchmark(
        "srot",
        [
            Part("grid", _grid, full={"dims": DIMS}, quick={"dims": (2,)}),
            Part("scale", _scale, quick=False, help="one fit at n = 10,000"),
        ],
    )

    def run(quick=False, device="cpu", parts=None):
        return BENCHMARK.run(quick=quick, device=device, parts=parts)

and :meth:`Benchmark.run` does the rest: it resolves the device (``"auto"``,
``"cuda:1"``, a :class:`torch.device`), runs the chosen parts in their
declared order with the quick or full keyword arguments, counts the warnings
each part raises instead of letting them reach the console, prints one
progress line per part on stderr (flushed, so it shows in a redirected log)
and returns the part's rows framed by rows of its own:

- the ``meta`` row (``part="meta"``): machine, resolved device, load average
  before and after, peak memory;
- one status row per part: ``{"part": P, "status": "done", "seconds": ...,
  "rows": ..., "warnings": {"ConvergenceWarning": 3}, "peak_rss_gb": ...}``,
  or ``status="skipped"`` with the reason (a part the quick run leaves out);
- one row per peer that a part could not run: ``{"part": P, "status":
  "skipped", "peer": "MCGrad", "skipped": "not installed: pip install ..."}``.

Benchmark rows must not use the keys ``status`` or ``part="meta"``:
:func:`data_rows` drops the framework's rows by them.
"""

import contextlib
import importlib
import os
import sys
import time
import warnings
from collections import Counter

from ..utils import resolve_device


def peak_rss_gb():
    """Peak resident set size of this process so far, in GB (Linux ``ru_maxrss``).

    Returns
    -------
    float
        NaN where the ``resource`` module is missing (Windows).
    """
    try:
        import resource
    except ImportError:  # not on Windows
        return float("nan")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def device_name(device):
    """The resolved form of a benchmark's ``device`` argument, as a string.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a torch device.

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: what estimators, solvers and
        ``torch.as_tensor`` all accept.

    Examples
    --------
    >>> from skml.benchmarks._common import device_name
    >>> device_name("CPU")
    'cpu'
    """
    return str(resolve_device(device))


def machine_meta(device):
    """The ``meta`` row: device, CPU count, torch threads, load average.

    Parameters
    ----------
    device : str or torch.device
        The benchmark's (resolved) device.

    Returns
    -------
    dict
    """
    import torch

    return {
        "part": "meta",
        "device": str(device),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
    }


def meta_line(rows):
    """One line describing the ``meta`` row of ``rows`` (empty list if none).

    Parameters
    ----------
    rows : list of dict

    Returns
    -------
    list of str
    """
    meta = next((r for r in rows if r.get("part") == "meta"), None)
    if meta is None:
        return []
    device = meta["device"]
    requested = meta.get("device_requested", device)
    if requested != device:
        device += f" (requested {requested})"
    return [
        f"device {device}, {meta['cpus']} CPUs, {meta['torch_threads']} "
        f"torch threads, load average {meta['load_avg_1min']:.2f} -> "
        f"{meta.get('load_avg_1min_end', float('nan')):.2f}"
    ]


def is_data_row(row):
    """Whether ``row`` is a benchmark's own row (not meta, status or skipped).

    Parameters
    ----------
    row : dict

    Returns
    -------
    bool
    """
    return row.get("part") != "meta" and "status" not in row


def data_rows(rows):
    """The benchmark's own rows: ``rows`` without the framework's rows.

    Parameters
    ----------
    rows : list of dict

    Returns
    -------
    list of dict

    Examples
    --------
    >>> from skml.benchmarks._common import data_rows
    >>> data_rows([{"part": "meta"}, {"part": "a", "status": "done"}, {"x": 1}])
    [{'x': 1}]
    """
    return [r for r in rows if is_data_row(r)]


def _format_warnings(counts):
    return ", ".join(f"{name} x{k}" for name, k in sorted(counts.items()))


def status_lines(rows):
    """Lines on the parts run, their warnings and the peers skipped.

    Parameters
    ----------
    rows : list of dict
        Rows returned by :meth:`Benchmark.run`.

    Returns
    -------
    list of str
    """
    lines = []
    parts = []
    for r in rows:
        if r.get("status") == "done":
            text = f"{r['part']} {r['seconds']:.1f} s"
            if r.get("warnings"):
                text += f" ({_format_warnings(r['warnings'])})"
            parts.append(text)
        elif r.get("status") == "skipped" and "peer" not in r:
            parts.append(f"{r['part']} skipped ({r['skipped']})")
    if parts:
        lines.append("parts: " + "; ".join(parts))
    for r in rows:
        if r.get("status") == "skipped" and "peer" in r:
            lines.append(f"peer {r['peer']} skipped in {r['part']}: {r['skipped']}")
    return lines


@contextlib.contextmanager
def count_warnings():
    """Record every warning raised in the block instead of showing it.

    Yields
    ------
    collections.Counter
        Filled on exit: warning category name -> number of warnings.

    Examples
    --------
    >>> import warnings
    >>> from skml.benchmarks._common import count_warnings
    >>> with count_warnings() as counts:
    ...     warnings.warn("slow", RuntimeWarning)
    ...     warnings.warn("slow", RuntimeWarning)
    >>> dict(counts)
    {'RuntimeWarning': 2}
    """
    counts = Counter()
    with warnings.catch_warnings(record=True) as caught:
        # "always": count every occurrence, not only the first per location.
        warnings.simplefilter("always")
        try:
            yield counts
        finally:
            counts.update(w.category.__name__ for w in caught)


class Part:
    """One separately runnable part of a benchmark.

    Parameters
    ----------
    name : str
        What ``python -m skml bench NAME --part P`` calls it.
    func : callable
        ``func(context, **config) -> list of dict``, ``context`` a
        :class:`Context`.
    full : dict, default=None
        Keyword arguments of the full run (``None``: none).
    quick : dict, None or False, default=None
        Keyword arguments of the quick run; ``None`` uses ``full``, ``False``
        leaves the part out of the quick run.
    help : str, default=""
        One line for ``python -m skml bench --help``.
    """

    def __init__(self, name, func, full=None, quick=None, help=""):
        self.name = name
        self.func = func
        self.full = {} if full is None else dict(full)
        self.quick = quick
        self.help = help

    def config(self, quick):
        """Keyword arguments for ``func``; ``None`` when the run leaves it out.

        Parameters
        ----------
        quick : bool

        Returns
        -------
        dict or None
        """
        if not quick or self.quick is None:
            return dict(self.full)
        if self.quick is False:
            return None
        return dict(self.quick)

    def __repr__(self):
        return f"Part({self.name!r})"


class Context:
    """What a part sees of its run.

    Attributes
    ----------
    benchmark : str
        The benchmark's name.
    part : str
        The running part.
    quick : bool
        Whether this is the quick run.
    device : str
        The resolved device (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
    params : dict
        The benchmark's own run-level arguments (e.g. SROT's ``options``).
    rows : list of dict
        The data rows of the parts run so far.
    state : dict
        Free for parts to share results; see :meth:`once`.
    """

    def __init__(self, benchmark, quick, device, params):
        self.benchmark = benchmark
        self.part = None
        self.quick = quick
        self.device = device
        self.params = params
        self.rows = []
        self.state = {}
        self._skipped = []

    def once(self, key, func):
        """``func()``, computed by the first part that asks for ``key``.

        Parameters
        ----------
        key : hashable
        func : callable
            Called without arguments.

        Returns
        -------
        object
        """
        if key not in self.state:
            self.state[key] = func()
        return self.state[key]

    def skip_peer(self, peer, reason):
        """Record that ``peer`` does not run in this part, and why.

        Parameters
        ----------
        peer : str
            The peer's name as the report shows it.
        reason : str
            E.g. ``"not installed: pip install geomloss"``.
        """
        row = {"part": self.part, "status": "skipped", "peer": peer, "skipped": reason}
        if row not in self._skipped:
            self._skipped.append(row)
            _say(f"[{self.benchmark}] part {self.part}: {peer} skipped ({reason})")

    def peer(self, peer, modules, install):
        """Whether a peer's modules import; if not, record it as skipped.

        Parameters
        ----------
        peer : str
            The peer's name as the report shows it.
        modules : str or tuple of str
            The modules it needs.
        install : str
            How to install them (``"pip install geomloss"``).

        Returns
        -------
        bool
        """
        modules = (modules,) if isinstance(modules, str) else modules
        try:
            for module in modules:
                importlib.import_module(module)
        except ImportError:
            self.skip_peer(peer, f"not installed: {install}")
            return False
        return True

    def _take_skipped(self):
        out, self._skipped = self._skipped, []
        return out


def _say(line):
    # Progress goes to stderr, flushed: visible in a log file too (no TTY).
    print(line, file=sys.stderr, flush=True)


class Benchmark:
    """A named benchmark made of parts.

    Parameters
    ----------
    name : str
        The module's name (``python -m skml bench NAME``).
    parts : list of Part
        In the order they run (a part may use the rows of the earlier ones).
    description : str, default=""
        One line for ``python -m skml bench --help``.

    Examples
    --------
    >>> from skml.benchmarks._common import Benchmark, Part, data_rows
    >>> def square(ctx, n):
    ...     return [{"part": ctx.part, "n": n, "square": n * n}]
    >>> bench = Benchmark("toy", [Part("sq", square, full={"n": 3}, quick={"n": 2})])
    >>> data_rows(bench.run(quick=True, verbose=False))
    [{'part': 'sq', 'n': 2, 'square': 4}]
    """

    def __init__(self, name, parts, description=""):
        names = [p.name for p in parts]
        if len(set(names)) != len(names) or "meta" in names:
            raise ValueError(f"Part names must be unique and not 'meta': {names}.")
        self.name = name
        self.parts = list(parts)
        self.description = description

    @property
    def part_names(self):
        """Names of the parts, in running order (tuple of str)."""
        return tuple(p.name for p in self.parts)

    def select(self, parts=None):
        """The parts that ``parts`` names, in running order.

        Parameters
        ----------
        parts : str or list of str, default=None
            ``None``: all of them.

        Returns
        -------
        list of Part

        Raises
        ------
        ValueError
            When a name is not one of :attr:`part_names`.
        """
        if parts is None:
            return list(self.parts)
        wanted = [parts] if isinstance(parts, str) else list(parts)
        unknown = [p for p in wanted if p not in self.part_names]
        if unknown:
            raise ValueError(
                f"Unknown part(s) {', '.join(map(repr, unknown))} of benchmark "
                f"{self.name!r}; available parts: {', '.join(self.part_names)}."
            )
        return [p for p in self.parts if p.name in wanted]

    def describe(self):
        """Lines for ``python -m skml bench --help``: name, then one per part.

        Returns
        -------
        list of str
        """
        lines = [f"{self.name}: {self.description}".rstrip(": ")]
        width = max((len(p.name) for p in self.parts), default=0)
        for p in self.parts:
            text = p.help + (" [not in --quick]" if p.quick is False else "")
            lines.append(f"  {p.name:<{width}}  {text}".rstrip())
        return lines

    def run(
        self,
        quick=False,
        device="cpu",
        parts=None,
        params=None,
        meta=None,
        verbose=True,
    ):
        """Run the chosen parts and return their rows and the framework's.

        Parameters
        ----------
        quick : bool, default=False
            Use each part's quick configuration.
        device : str or torch.device, default="cpu"
            Resolved by :func:`skml.utils.resolve_device`; parts see the
            resolved name in ``context.device``.
        parts : str or list of str, default=None
            The parts to run (``None``: all), always in declared order.
        params : dict, default=None
            The benchmark's run-level arguments, as ``context.params``.
        meta : dict, default=None
            Extra entries for the meta row.
        verbose : bool, default=True
            Print one line per part on stderr.

        Returns
        -------
        rows : list of dict
            The meta row first, then per part: its skipped peers, its rows
            and its status row.
        """
        selected = self.select(parts)
        resolved = device_name(device)
        meta_row = machine_meta(resolved)
        meta_row.update(
            benchmark=self.name,
            device_requested=str(device),
            quick=quick,
            parts=[p.name for p in selected],
        )
        meta_row.update(meta or {})
        context = Context(self.name, quick, resolved, dict(params or {}))
        rows = [meta_row]
        start_all = time.perf_counter()
        for i, part in enumerate(selected, 1):
            label = f"[{self.name}] part {part.name} {i}/{len(selected)}"
            config = part.config(quick)
            if config is None:
                reason = "not in the quick configuration"
                rows.append({"part": part.name, "status": "skipped", "skipped": reason})
                if verbose:
                    _say(f"{label} skipped ({reason})")
                continue
            if verbose:
                _say(f"{label} started")
            context.part = part.name
            start = time.perf_counter()
            with count_warnings() as counts:
                out = list(part.func(context, **config))
            seconds = time.perf_counter() - start
            rows += context._take_skipped()
            rows += out
            context.rows += out
            rows.append(
                {
                    "part": part.name,
                    "status": "done",
                    "seconds": seconds,
                    "rows": len(out),
                    "warnings": dict(sorted(counts.items())),
                    "peak_rss_gb": peak_rss_gb(),
                }
            )
            if verbose:
                extra = f" ({_format_warnings(counts)})" if counts else ""
                _say(f"{label} done in {seconds:.1f} s{extra}")
        meta_row.update(
            load_avg_1min_end=os.getloadavg()[0],
            seconds=time.perf_counter() - start_all,
            peak_rss_gb=peak_rss_gb(),
        )
        return rows
