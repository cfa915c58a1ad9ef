"""Helpers shared by the benchmark modules."""

import os


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


def machine_meta(device):
    """The ``meta`` row: device, CPU count, torch threads, load average.

    Parameters
    ----------
    device : str
        The benchmark's device.

    Returns
    -------
    dict
    """
    import torch

    return {
        "part": "meta",
        "device": device,
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
    meta = next((r for r in rows if r["part"] == "meta"), None)
    if meta is None:
        return []
    return [
        f"device {meta['device']}, {meta['cpus']} CPUs, {meta['torch_threads']} "
        f"torch threads, load average {meta['load_avg_1min']:.2f} -> "
        f"{meta.get('load_avg_1min_end', float('nan')):.2f}"
    ]
