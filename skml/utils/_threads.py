"""How many torch intra-op threads a computation gets.

Measured on a 2-core machine (``shared/research/threads.md`` and the
``threads`` part of ``python -m skml bench threads``): two threads make a
large operation 1.5-2.5x faster on a quiet machine, but when another process
keeps a core busy every parallel region waits for the thread that shares
that core, and a matrix product with two threads ran 2-3x slower than with
one (a tiny operation up to 5x slower). So the policy is:

1. The budget is what the process was given: ``torch.get_num_threads()``
   (which follows ``torch.set_num_threads``, ``OMP_NUM_THREADS``, a joblib
   worker's share of the cores and ``threadpoolctl.threadpool_limits``),
   capped by the cores the process may run on.
2. An operation below ``PARALLEL_WORK`` runs single-threaded.
3. A larger one uses the budget, capped by the cores that other processes
   left idle since the previous decision (``/proc/stat`` minus this
   process's own CPU time, no waiting), so a busy core is not waited on.
4. ``SKML_NUM_THREADS=N`` in the environment pins the count: exactly N
   threads for every operation, no sampling.

Only the main thread changes the count: torch has one setting per process,
so code running in other Python threads leaves it as it is.
"""

import contextlib
import math
import os
import threading
import time

import torch

# Work (elements touched, or flops for products) of one operation below which
# a second thread costs more than it gives: at 1e4 elements two threads were
# 0.77x on a quiet core and 4.7x under contention.
PARALLEL_WORK = 2e5
# Shortest window of /proc/stat readings (5 ticks of USER_HZ=100: CPU times
# are counted in ticks, so shorter windows misread a core's use by 20% or more).
_SAMPLE_SECONDS = 0.05

_local = threading.local()
_sample_lock = threading.Lock()
_sample = {"reading": None, "idle": None}


def _pinned():
    value = os.environ.get("SKML_NUM_THREADS", "").strip()
    if not value:
        return None
    try:
        count = int(value)
    except ValueError:
        raise ValueError(
            f"SKML_NUM_THREADS must be a positive integer, got {value!r}."
        ) from None
    if count < 1:
        raise ValueError(f"SKML_NUM_THREADS must be a positive integer, got {count}.")
    return count


def _allowed_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_budget():
    """The most torch threads skml may use in this process now.

    Returns
    -------
    int
        ``SKML_NUM_THREADS`` when set; otherwise ``torch.get_num_threads()``
        (as set by the user, ``OMP_NUM_THREADS``, joblib or threadpoolctl),
        capped by the cores this process may run on. Inside
        :func:`torch_threads` it is the budget found on entry.

    Examples
    --------
    >>> from skml.utils import thread_budget
    >>> thread_budget() >= 1
    True
    """
    pinned = _pinned()
    if pinned is not None:
        return pinned
    outer = getattr(_local, "budget", None)
    if outer is not None:
        return outer
    return max(1, min(torch.get_num_threads(), _allowed_cores()))


def _read_cpu_times(cpus):
    times = {}
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("cpu") and line[3:4].isdigit():
                parts = line.split()
                cpu = int(parts[0][3:])
                if cpu in cpus:
                    values = [int(v) for v in parts[1:9]]
                    # idle + iowait, total
                    times[cpu] = (values[3] + values[4], sum(values))
    return times


def _own_cpu_seconds():
    times = os.times()
    return times.user + times.system


def _reading():
    cpus = os.sched_getaffinity(0)
    return time.monotonic(), _read_cpu_times(cpus), _own_cpu_seconds(), len(cpus)


def _idle_between(before, after):
    """Cores not used by other processes between two readings."""
    _, cpu0, own0, n_cpus = before
    elapsed, cpu1, own1, _ = (after[0] - before[0]), after[1], after[2], after[3]
    total = busy = 0
    for cpu, (idle_a, total_a) in cpu0.items():
        idle_b, total_b = cpu1.get(cpu, (idle_a, total_a))
        total += total_b - total_a
        busy += (total_b - total_a) - (idle_b - idle_a)
    if total <= 0 or not cpu0:
        return float(n_cpus)
    busy_cores = busy * len(cpu0) / total
    own_cores = max(0.0, own1 - own0) / max(elapsed, 1e-9)
    others = min(max(busy_cores - own_cores, 0.0), float(n_cpus))
    return n_cpus - others


def idle_cores():
    """Cores of this process's affinity set that other processes left idle.

    The CPU time of the allowed cores (``/proc/stat``) minus this process's
    own (``os.times``), since the previous call: no waiting, except on the
    first call of a process that imported this module less than 50 ms ago.
    A window shorter than 50 ms (five clock ticks) reuses the last answer.
    Where ``/proc/stat`` is missing (not Linux) every allowed core counts as
    idle.

    Returns
    -------
    float
        E.g. 1.0 when another process keeps one of two cores busy.
    """
    with _sample_lock:
        try:
            now = _reading()
        except (AttributeError, OSError, ValueError):
            return float(_allowed_cores())
        last = _sample["reading"]
        if last is None:
            last = now
        if now[0] - last[0] < _SAMPLE_SECONDS:
            if _sample["idle"] is not None and last is _sample["reading"]:
                return _sample["idle"]
            # no answer yet: wait until the window is long enough to measure
            time.sleep(_SAMPLE_SECONDS - (now[0] - last[0]))
            now = _reading()
        _sample["idle"] = _idle_between(last, now)
        _sample["reading"] = now
        return _sample["idle"]


def threads_for(work):
    """Threads for one operation of ``work`` (see the module's policy).

    Parameters
    ----------
    work : float or None
        Elements touched (or flops) by the operation; ``None`` means large.

    Returns
    -------
    int

    Examples
    --------
    >>> from skml.utils import threads_for
    >>> threads_for(100)
    1
    """
    pinned = _pinned()
    if pinned is not None:
        return pinned
    budget = thread_budget()
    if budget == 1 or (work is not None and work < PARALLEL_WORK):
        return 1
    # A core that other processes keep busy half the time or more is not
    # free; below that, tick rounding and our own spinning threads blur the
    # reading.
    free = int(math.floor(idle_cores() + 0.5))
    return max(1, min(budget, free))


@contextlib.contextmanager
def torch_threads(work=None):
    """Run a block with the torch thread count :func:`threads_for` chooses.

    The count is restored on exit. Nested blocks choose within the budget
    found by the outermost one, so an estimator can run single-threaded and
    open a parallel block around its one large product.

    Parameters
    ----------
    work : float or None, default=None
        The size of the block's typical operation.

    Yields
    ------
    int
        The thread count in force.

    Examples
    --------
    >>> import torch
    >>> from skml.utils import torch_threads
    >>> with torch_threads(work=10) as n:
    ...     n, torch.get_num_threads()
    (1, 1)
    """
    if threading.current_thread() is not threading.main_thread():
        # torch's thread count is one setting for the whole process: from a
        # worker thread (joblib's threading backend, dask) changing it would
        # race with the other threads, so the count stays as it is.
        yield torch.get_num_threads()
        return
    outer = getattr(_local, "budget", None)
    if outer is None:
        _local.budget = thread_budget()
    previous = torch.get_num_threads()
    count = threads_for(work)
    try:
        if count != previous:
            torch.set_num_threads(count)
        yield count
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
        if outer is None:
            _local.budget = None


try:  # the first window starts at import, so the first fit need not wait
    _sample["reading"] = _reading()
except (AttributeError, OSError, ValueError):
    pass
