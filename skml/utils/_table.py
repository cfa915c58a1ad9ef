"""Plain-text tables for the CLI and benchmark output."""

import math
import sys


def _cell(value, digits):
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        magnitude = abs(value)
        if magnitude != 0 and (magnitude >= 1e5 or magnitude < 10 ** (-digits)):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if magnitude >= 1e3 else f"{value:.{digits}f}"
    return str(value)


def format_table(rows, columns=None, digits=4):
    """Render a list of dicts as an aligned plain-text table.

    Parameters
    ----------
    rows : list of dict
        One dict per row; missing keys print as empty cells.
    columns : list of str, default=None
        Column order; default is the keys in order of first appearance.
    digits : int, default=4
        Digits after the decimal point for floats.

    Returns
    -------
    str

    Examples
    --------
    >>> from skml.utils import format_table
    >>> print(format_table([{"model": "base", "mse": 0.5}]))
    model  mse
    -----  ------
    base   0.5000
    """
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
    cells = [[_cell(row.get(col, ""), digits) for col in columns] for row in rows]
    widths = [
        max([len(col)] + [len(line[i]) for line in cells])
        for i, col in enumerate(columns)
    ]
    lines = [
        "  ".join(col.ljust(w) for col, w in zip(columns, widths)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells
    ]
    return "\n".join(lines)


def progress(iterable, desc=None, total=None, disable=None):
    """Wrap ``iterable`` in a tqdm progress bar on stderr.

    The bar is hidden when stderr is not a terminal (CI logs, pytest), unless
    ``disable`` is given explicitly.

    Parameters
    ----------
    iterable : iterable
        What to iterate over.
    desc : str, default=None
        Label shown left of the bar.
    total : int, default=None
        Length, when ``iterable`` has none.
    disable : bool, default=None
        ``None`` hides the bar when stderr is not a terminal.

    Returns
    -------
    iterable
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=disable, file=sys.stderr)
