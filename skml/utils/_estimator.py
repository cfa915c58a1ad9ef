"""The one base of every torch-backed skml estimator.

It owns what used to be copied into each estimator: the ``device``
parameter's constraint, its resolution into ``device_`` at fit time, the
fallback to the CPU for a model fitted on a GPU that is absent where the
model is used, the non-determinism tag on GPUs, and the thread policy of
:mod:`skml.utils._threads`.
"""

import dataclasses
import warnings

import torch

from ._device import resolve_device
from ._threads import torch_threads


class DeviceFallbackWarning(UserWarning):
    """A model fitted on a device that is absent here runs on the CPU."""


def _usable(device):
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        return device.index is None or device.index < torch.cuda.device_count()
    return False


class TorchEstimatorMixin:
    """Device, threads and fitted-state rules shared by skml's torch estimators.

    Subclasses put ``**TorchEstimatorMixin._parameter_constraints`` in their
    own constraints, call :meth:`_fit_device` at the start of ``fit`` and
    :meth:`_predict_device` in prediction methods, run their tensor work
    inside :meth:`_threads`, and keep only numpy arrays in fitted state
    (``tests/test_common.py`` walks every fitted estimator with
    :func:`find_tensors`).

    A model unpickled where its ``device_`` is absent (fitted on ``cuda`` and
    loaded on a machine without a GPU) warns once with
    :class:`DeviceFallbackWarning` and runs on the CPU from then on, as
    skorch's ``get_map_location`` does; the ``device`` parameter itself is
    never changed.
    """

    _parameter_constraints: dict = {"device": [str, torch.device]}

    def _fit_device(self):
        """Resolve ``device`` into ``device_`` (raises for an absent GPU)."""
        self.device_ = resolve_device(self.device)
        return self.device_

    def _predict_device(self):
        """``device_``, or the CPU (with one warning) where it is absent."""
        self._fall_back_if_absent()
        return self.device_

    def _fall_back_if_absent(self):
        device = self.__dict__.get("device_")
        if device is None or _usable(device):
            return
        warnings.warn(
            f"{type(self).__name__} was fitted on device {str(device)!r}, which is "
            "not available here; using the CPU instead (fitted state is stored on "
            "the CPU, so predictions are the same up to rounding).",
            DeviceFallbackWarning,
            stacklevel=3,
        )
        self.device_ = torch.device("cpu")

    def __setstate__(self, state):
        super().__setstate__(state)
        self._fall_back_if_absent()

    def _threads(self, work=None):
        """Context manager: torch threads for a block of typical size ``work``."""
        return torch_threads(work)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            device = resolve_device(self.device)
        except (TypeError, ValueError):
            device = None
        tags.non_deterministic = device is None or device.type != "cpu"
        return tags


def find_tensors(obj, _path="", _seen=None):
    """Paths of the torch tensors reachable from an object's attributes.

    Walks ``__dict__``, dicts, lists, tuples, sets and dataclasses; used by
    the tests to check that no fitted state holds a tensor. A fitted
    :class:`torch.nn.Module` (the product of a fine-tuner) may stay in
    fitted state if it lives on the CPU: only its parameters and buffers on
    another device are reported.

    Parameters
    ----------
    obj : object

    Returns
    -------
    list of str
        Attribute paths such as ``"plans_.directions"``.

    Examples
    --------
    >>> import torch
    >>> from skml.utils import find_tensors
    >>> class Model:
    ...     pass
    >>> m = Model()
    >>> m.coef_ = {"w": torch.zeros(2)}
    >>> find_tensors(m)
    ["coef_['w']"]
    """
    seen = set() if _seen is None else _seen
    if isinstance(obj, torch.Tensor):
        return [_path or "<root>"]
    if isinstance(obj, torch.nn.Module):
        named = [*obj.named_parameters(), *obj.named_buffers()]
        return [
            f"{_path}.{name} (on {t.device})"
            for name, t in named
            if t.device.type != "cpu"
        ]
    if id(obj) in seen or isinstance(obj, str | bytes | int | float | type(None)):
        return []
    seen.add(id(obj))
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += find_tensors(value, f"{_path}[{key!r}]", seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for i, value in enumerate(obj):
            found += find_tensors(value, f"{_path}[{i}]", seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for field in dataclasses.fields(obj):
            name = f"{_path}.{field.name}" if _path else field.name
            found += find_tensors(getattr(obj, field.name), name, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for key, value in vars(obj).items():
            name = f"{_path}.{key}" if _path else key
            found += find_tensors(value, name, seen)
    return found
