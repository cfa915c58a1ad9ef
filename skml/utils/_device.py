"""Device resolution and numpy <-> torch conversion shared by every estimator."""

import re
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state

ACCEPTED_DEVICES = ("cpu", "cuda", "cuda:N", "auto")
_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def resolve_device(device):
    """Turn a ``device`` parameter into a :class:`torch.device`.

    Estimators call this in ``fit`` (never in ``__init__``) and store the
    result in ``device_``; the ``device`` parameter itself is left untouched.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (GPU number N) or ``"auto"``
        (``"cuda"`` when torch sees a GPU, otherwise ``"cpu"``).

    Returns
    -------
    torch.device
        The resolved device.

    Raises
    ------
    TypeError
        If ``device`` is neither a string nor a :class:`torch.device`.
    ValueError
        If the string is not one of the accepted values, or names a CUDA
        device that this machine does not have.

    Examples
    --------
    >>> from skml.utils import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("gpu")
    Traceback (most recent call last):
    ...
    ValueError: Unknown device 'gpu'. Accepted values are 'cpu', 'cuda', 'cuda:N'...
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(
            "device must be a string such as 'cpu' or 'cuda', or a torch.device; got "
            f"{type(device).__name__}: {device!r}."
        )
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA_INDEX.match(name)
    if name == "cuda" or match:
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on "
                "this machine (torch.cuda.is_available() is False). Use "
                "device='cpu', or device='auto' to fall back to the CPU."
            )
        if match:
            index = int(match.group(1))
            count = torch.cuda.device_count()
            if index >= count:
                raise ValueError(
                    f"device={device!r} was requested but this machine has "
                    f"{count} CUDA device(s) (valid indices 0..{count - 1})."
                )
            return torch.device("cuda", index)
        return torch.device("cuda")
    accepted = ", ".join(repr(d) for d in ACCEPTED_DEVICES)
    raise ValueError(
        f"Unknown device {device!r}. Accepted values are {accepted} "
        "(N a GPU index, e.g. 'cuda:0')."
    )


def resolve_dtype(device, dtype=None):
    """Torch dtype for computations on ``device``.

    float64 everywhere unless ``dtype`` says otherwise: the scikit-learn
    checks compare outputs to 1e-9, and CPU/GPU agreement tests need the same
    precision on both sides. Estimators that want float32 speed on a GPU pass
    ``dtype="float32"`` explicitly.

    Parameters
    ----------
    device : torch.device
        The resolved device (unused today; kept so the policy can depend on it).
    dtype : {None, "float64", "float32"} or torch.dtype, default=None
        Requested dtype; ``None`` means float64.

    Returns
    -------
    torch.dtype
    """
    if dtype is None or dtype in ("float64", np.float64, torch.float64):
        return torch.float64
    if dtype in ("float32", np.float32, torch.float32):
        return torch.float32
    raise ValueError(f"dtype must be None, 'float64' or 'float32', got {dtype!r}.")


def to_tensor(array, device, dtype=torch.float64):
    """Copy a numpy array (or array-like) to a torch tensor on ``device``.

    Parameters
    ----------
    array : array-like
        Data to convert; ``None`` is returned unchanged.
    device : torch.device or str
        Target device.
    dtype : torch.dtype, default=torch.float64
        Target dtype for floating data. Integer and boolean arrays keep
        their kind (int64 / bool).

    Returns
    -------
    torch.Tensor or None

    Examples
    --------
    >>> import numpy as np
    >>> from skml.utils import to_tensor
    >>> to_tensor(np.arange(3.0), "cpu")
    tensor([0., 1., 2.], dtype=torch.float64)
    """
    if array is None:
        return None
    if isinstance(array, torch.Tensor):
        tensor = array
    else:
        # np.array(copy) handles read-only memmaps that torch.from_numpy rejects.
        tensor = torch.from_numpy(np.array(array, copy=True))
    if tensor.dtype == torch.bool:
        return tensor.to(device=device)
    if not tensor.is_floating_point() and not tensor.is_complex():
        return tensor.to(device=device, dtype=torch.int64)
    return tensor.to(device=device, dtype=dtype)


def to_numpy(obj):
    """Move tensors (possibly nested in dicts, lists or tuples) to CPU numpy.

    Used at the end of ``fit`` so fitted state pickles without torch devices
    and a model fitted on a GPU unpickles on a machine without one.

    Parameters
    ----------
    obj : torch.Tensor, dict, list, tuple or any object
        Tensors are detached and converted; containers are converted
        recursively; other objects are returned as they are.

    Returns
    -------
    object
        The same structure with every tensor replaced by a numpy array.

    Examples
    --------
    >>> import torch
    >>> from skml.utils import to_numpy
    >>> to_numpy({"w": torch.ones(2, dtype=torch.float64)})
    {'w': array([1., 1.])}
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return {key: to_numpy(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_numpy(value) for value in obj)
    return obj


def make_generator(random_state, device="cpu"):
    """A :class:`torch.Generator` on ``device`` seeded from ``random_state``.

    Call it at the start of every ``fit`` so two fits with the same
    ``random_state`` draw the same numbers (``check_fit_idempotent``).

    Parameters
    ----------
    random_state : int, RandomState instance or None
        Seed source, as in scikit-learn. ``None`` draws a fresh seed.
    device : torch.device or str, default="cpu"
        Device the generator lives on (CUDA generators are per device).

    Returns
    -------
    torch.Generator

    Examples
    --------
    >>> import torch
    >>> from skml.utils import make_generator
    >>> a = torch.rand(2, generator=make_generator(0))
    >>> b = torch.rand(2, generator=make_generator(0))
    >>> bool(torch.equal(a, b))
    True
    """
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        seed = int(random_state) % (2**63)
    else:
        seed = int(check_random_state(random_state).randint(0, 2**31 - 1))
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(seed)
    return generator
