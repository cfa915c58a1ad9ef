"""Unsupervised identification of spurious directions from LoRA weights.

The naive fine-tune's update of each adapted map is ``dW = s * B @ A``. Its
top singular direction on the side that lives in the representation (what
the map writes, or what it reads) is taken as the spurious latent factor
(research note ``grasp.md`` §1.2, a reconstruction of Gilligan-Lee et al.
2026). Everything is computed from the rank-``r`` factors, so the dense
``out x in`` matrix is never formed. All results are float64 numpy arrays.
"""

import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import Bunch

__all__ = [
    "IdentificationWarning",
    "identify_spurious_directions",
    "lora_factors_svd",
    "projector",
]

_SIDES = ("output", "input", "both")
_IDENTIFY = ("svd", "cov_weighted")
_POOL = ("per_module", "global")


class IdentificationWarning(UserWarning):
    """The top singular directions explain little of a LoRA update.

    Raised as a warning by ``identify_spurious_directions`` when the explained
    ratio of a layer is below ``min_explained``: the update is not dominated by
    a few directions, so the assumption that the spurious factor is its top
    direction is doubtful.

    Examples
    --------
    >>> from skml.finetune._identify import IdentificationWarning
    >>> issubclass(IdentificationWarning, UserWarning)
    True
    """


def _as_float64(a, name):
    if isinstance(a, torch.Tensor):
        a = a.detach().to(device="cpu", dtype=torch.float64).numpy()
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def lora_factors_svd(A, B, scaling):
    """SVD of ``scaling * B @ A`` from the LoRA factors, without forming it.

    With ``B = Q_B R_B`` and ``A.T = Q_A R_A`` (thin QR), ``B @ A =
    Q_B (R_B R_A.T) Q_A.T``, so the SVD of the small ``r x r`` core gives that
    of the update in ``O((out + in) r^2)`` time.

    Parameters
    ----------
    A : array-like or torch.Tensor of shape (r, in_features)
        The ``lora_A`` weight.
    B : array-like or torch.Tensor of shape (out_features, r)
        The ``lora_B`` weight.
    scaling : float
        The LoRA scaling ``s``.

    Returns
    -------
    U : ndarray of shape (out_features, k)
        Left singular vectors (what the update writes), ``k = min(r,
        out_features, in_features)`` (``k = r`` in the usual case).
    S : ndarray of shape (k,)
        Singular values, descending.
    V : ndarray of shape (in_features, k)
        Right singular vectors (what the update reads), so that
        ``scaling * B @ A == U @ diag(S) @ V.T``.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.finetune._identify import lora_factors_svd
    >>> rng = np.random.default_rng(0)
    >>> A, B = rng.normal(size=(2, 6)), rng.normal(size=(5, 2))
    >>> U, S, V = lora_factors_svd(A, B, scaling=0.5)
    >>> U.shape, S.shape, V.shape
    ((5, 2), (2,), (6, 2))
    >>> bool(np.allclose(U @ np.diag(S) @ V.T, 0.5 * B @ A))
    True
    """
    A = _as_float64(A, "A")
    B = _as_float64(B, "B")
    if A.ndim != 2 or B.ndim != 2 or B.shape[1] != A.shape[0]:
        raise ValueError(
            f"A must be (r, in) and B (out, r) with the same r; got A of shape "
            f"{A.shape} and B of shape {B.shape}"
        )
    try:
        scaling = float(scaling)
    except (TypeError, ValueError):
        scaling = math.nan
    if not math.isfinite(scaling):
        raise ValueError(f"scaling must be a finite number, got {scaling!r}")
    Q_B, R_B = np.linalg.qr(B)
    Q_A, R_A = np.linalg.qr(A.T)
    U_core, S, Vt_core = np.linalg.svd(R_B @ R_A.T, full_matrices=False)
    U = Q_B @ U_core
    V = Q_A @ Vt_core.T
    S = abs(scaling) * S
    if scaling < 0:
        U = -U
    return U, S, V


def projector(directions):
    """The orthogonal projector ``I - V.T @ V`` that removes ``directions``.

    Parameters
    ----------
    directions : array-like of shape (k, d) or (d,)
        Directions to remove, one per row. They need not be orthonormal: the
        rows are orthonormalised by QR first (linearly dependent rows are
        allowed; their span is removed). At least one must be non-zero.

    Returns
    -------
    ndarray of shape (d, d)
        float64 projector onto the orthogonal complement of the rows' span.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.finetune._identify import projector
    >>> P = projector([[2.0, 0.0, 0.0]])
    >>> P @ np.array([3.0, 1.0, 1.0])
    array([0., 1., 1.])
    """
    V = _orthonormal_rows(directions)
    return np.eye(V.shape[1]) - V.T @ V


def _orthonormal_rows(directions):
    """An orthonormal basis (rows) of the span of the rows of ``directions``."""
    D = _as_float64(directions, "directions")
    if D.ndim == 1:
        D = D[None, :]
    if D.ndim != 2 or D.shape[0] == 0 or D.shape[1] == 0:
        raise ValueError(
            f"directions must be of shape (k, d) or (d,), got {np.shape(directions)}"
        )
    Q, R = np.linalg.qr(D.T)
    diag = np.abs(np.diag(R))
    if diag.size and diag.max() > 0 and diag.min() > 1e-10 * diag.max():
        return Q.T
    # Linearly dependent rows: a plain QR would add arbitrary columns, so
    # take the row space from the SVD instead.
    _, s, Vt = np.linalg.svd(D, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        raise ValueError("directions are all zero; nothing to project out")
    return Vt[s > 1e-10 * s[0]]


def _factors(name, layer):
    """``(A, B, scaling)`` as float64 numpy arrays from a layer or a tuple."""
    if isinstance(layer, tuple) and len(layer) == 3:
        A, B, scaling = layer
    elif hasattr(layer, "lora_A") and hasattr(layer, "lora_B"):
        A, B, scaling = layer.lora_A.weight, layer.lora_B.weight, layer.scaling
    else:
        raise ValueError(
            f"layers[{name!r}] must be a LoRALinear or an (A, B, scaling) tuple, "
            f"got {type(layer).__name__}"
        )
    return _as_float64(A, f"A of {name!r}"), _as_float64(B, f"B of {name!r}"), scaling


def _cov_sqrt_times(X, M):
    """``Sigma^{1/2} @ M`` for the centred covariance ``Sigma`` of the rows of X.

    ``Sigma^{1/2}`` is the symmetric PSD square root. With fewer rows than
    columns it is ``V diag(s) V.T`` from the thin SVD of the centred,
    ``1/sqrt(n - 1)``-scaled ``X`` (no ``d x d`` matrix); otherwise it comes
    from ``eigh`` of ``Sigma`` with the eigenvalues clipped at 0. Both give the
    same matrix. Also returns ``||Sigma^{1/2}||_2``.
    """
    n, d = X.shape
    Xc = (X - X.mean(axis=0)) / math.sqrt(n - 1)
    if n < d:
        _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
        return Vt.T @ (s[:, None] * (Vt @ M)), float(s.max())
    w, Q = np.linalg.eigh(Xc.T @ Xc)
    root = np.sqrt(np.clip(w, 0.0, None))
    return Q @ (root[:, None] * (Q.T @ M)), float(root.max())


def _check_side(side, names):
    if isinstance(side, str):
        sides = dict.fromkeys(names, side)
    elif isinstance(side, dict):
        missing = [n for n in names if n not in side]
        if missing:
            raise ValueError(f"side has no entry for layers {missing}")
        sides = {n: side[n] for n in names}
    else:
        raise ValueError(f"side must be a str or a dict, got {side!r}")
    for name, s in sides.items():
        if s not in _SIDES:
            raise ValueError(
                f"side of layer {name!r} must be one of {_SIDES}, got {s!r}"
            )
    return sides


def _reference(reference, name, width, side):
    if reference is None or name not in reference:
        raise ValueError(
            f"identify='cov_weighted' needs reference activations for layer "
            f"{name!r} (its {side} side, width {width}); got none"
        )
    X = _as_float64(reference[name], f"reference[{name!r}]")
    if X.ndim != 2 or X.shape[1] != width:
        raise ValueError(
            f"reference[{name!r}] must have shape (n_ref, {width}) for the "
            f"{side} side of that layer, got {X.shape}"
        )
    if X.shape[0] < 2:
        raise ValueError(
            f"reference[{name!r}] needs at least 2 rows for a covariance, got "
            f"{X.shape[0]}"
        )
    return X


def identify_spurious_directions(
    layers,
    n_directions=1,
    identify="svd",
    side="output",
    reference=None,
    pool="per_module",
    min_explained=0.3,
):
    """Read the spurious directions off the weights of a naive LoRA fine-tune.

    For each adapted map, the directions are the top singular vectors of its
    update ``dW = s * B @ A`` on the chosen side: left (``"output"``, what the
    update writes) or right (``"input"``, what it newly reads). With
    ``identify="cov_weighted"`` the update is first weighted by the square
    root of the covariance of pretrained activations on reference inputs:
    ``Sigma^{1/2} dW`` on the output side, ``dW Sigma^{1/2}`` on the input
    side, so that directions along which the pretrained representation varies
    (a latent factor) rank above writes into directions it does not use.

    Parameters
    ----------
    layers : dict of str to LoRALinear or (A, B, scaling) tuple
        The naive fine-tune's adapted layers (``lora_A`` weight ``A`` of shape
        ``(r, in)``, ``lora_B`` weight ``B`` of shape ``(out, r)``).
    n_directions : int, default=1
        Number of directions ``k`` per layer, ``1 <= k <= r``.
    identify : {"svd", "cov_weighted"}, default="svd"
        Raw SVD of the update, or SVD of the covariance-weighted update.
    side : {"output", "input", "both"} or dict of str to str, default="output"
        Representation side per layer (one value for all, or by name).
        ``"both"`` is for a square map whose input and output are the same
        space: the output-side directions are used and the projection is meant
        to apply on both sides.
    reference : dict of str to array-like of shape (n_ref, d), default=None
        For ``identify="cov_weighted"`` only: per layer, the pretrained
        activations at its side (the base layer's outputs, or the
        representation it writes into, for ``"output"``/``"both"``; its inputs
        for ``"input"``). Ignored by ``"svd"``.
    pool : {"per_module", "global"}, default="per_module"
        ``"global"`` gives every layer the same directions: the top-``k``
        right singular vectors of the stack of all layers' sigma-weighted top
        ``k`` vectors (all layers must share the side width).
    min_explained : float in [0, 1], default=0.3
        Warn (``IdentificationWarning``) for a layer whose explained ratio is
        below this.

    Returns
    -------
    sklearn.utils.Bunch
        With, per layer name:

        - ``directions``: ndarray of shape (k, d), orthonormal rows;
        - ``singular_values``: ndarray of shape (r,), of the (weighted) update;
        - ``explained_ratio``: float, the share of the (weighted) update's
          squared Frobenius norm along the directions (``sum_{i<=k} s_i^2 /
          sum_i s_i^2`` per module);
        - ``side``: the side string.

    Raises
    ------
    ValueError
        For an invalid parameter, a layer whose update is exactly zero (the
        naive fine-tune did not change it), missing or mis-shaped reference
        activations, or widths that differ under ``pool="global"``.

    Examples
    --------
    >>> import numpy as np
    >>> from skml.finetune._identify import identify_spurious_directions
    >>> rng = np.random.default_rng(0)
    >>> u, v = np.eye(6)[0], np.eye(5)[1]
    >>> B = np.column_stack([3 * u, 0.1 * rng.normal(size=6)])  # (out=6, r=2)
    >>> A = np.vstack([v, 0.1 * rng.normal(size=5)])  # (r=2, in=5)
    >>> res = identify_spurious_directions({"fc": (A, B, 1.0)})
    >>> round(abs(float(res.directions["fc"][0] @ u)), 3)
    1.0
    >>> res.side["fc"], bool(res.explained_ratio["fc"] > 0.99)
    ('output', True)
    """
    if not isinstance(layers, dict) or not layers:
        raise ValueError("layers must be a non-empty dict of name -> LoRA layer")
    if identify not in _IDENTIFY:
        raise ValueError(f"identify must be one of {_IDENTIFY}, got {identify!r}")
    if pool not in _POOL:
        raise ValueError(f"pool must be one of {_POOL}, got {pool!r}")
    if (
        isinstance(n_directions, bool)
        or not isinstance(n_directions, Integral)
        or n_directions < 1
    ):
        raise ValueError(
            f"n_directions must be an int >= 1 (and <= the LoRA rank r), got "
            f"{n_directions!r}"
        )
    if (
        isinstance(min_explained, bool)
        or not isinstance(min_explained, Real)
        or not 0 <= min_explained <= 1
    ):
        raise ValueError(f"min_explained must be in [0, 1], got {min_explained!r}")
    k = int(n_directions)
    names = list(layers)
    sides = _check_side(side, names)

    # Per layer: side vectors (d, m) and singular values (m,) of the
    # (weighted) update.
    spectra = {}
    for name in names:
        A, B, scaling = _factors(name, layers[name])
        s_side = sides[name]
        r = A.shape[0]
        if s_side == "both" and A.shape[1] != B.shape[0]:
            raise ValueError(
                f"side='both' needs a square map, but layer {name!r} maps "
                f"{A.shape[1]} -> {B.shape[0]} features"
            )
        if k > min(r, A.shape[1], B.shape[0]):
            raise ValueError(
                f"n_directions={k} exceeds the rank of layer {name!r} "
                f"(r={r}, {A.shape[1]} -> {B.shape[0]} features)"
            )
        U, S, V = lora_factors_svd(A, B, scaling)
        if S[0] == 0:
            raise ValueError(
                f"the naive fine-tune did not change layer {name!r}: its LoRA "
                f"update scaling * B @ A is exactly zero (did it train?)"
            )
        if identify == "cov_weighted":
            if s_side == "input":
                X = _reference(reference, name, A.shape[1], s_side)
                # dW Sigma^{1/2} = s B (A Sigma^{1/2}); Sigma^{1/2} is symmetric.
                A_w, root_norm = _cov_sqrt_times(X, A.T)
                A = A_w.T
            else:
                X = _reference(reference, name, B.shape[0], s_side)
                B, root_norm = _cov_sqrt_times(X, B)
            S_raw = S[0]
            U, S, V = lora_factors_svd(A, B, scaling)
            # ||Sigma^{1/2} dW|| <= ||Sigma^{1/2}|| ||dW||; far below that
            # bound the weighted spectrum is round-off, not signal.
            if not S[0] > 1e-6 * root_norm * S_raw:
                raise ValueError(
                    f"the reference activations of layer {name!r} have no "
                    f"variance along its update, so the covariance-weighted "
                    f"update is zero"
                )
        spectra[name] = (V if s_side == "input" else U, S)

    if pool == "global":
        widths = {name: vecs.shape[0] for name, (vecs, _) in spectra.items()}
        if len(set(widths.values())) > 1:
            raise ValueError(
                f"pool='global' needs layers of one side width, got {widths}"
            )
        stack = np.vstack([(vecs[:, :k] * S[:k]).T for vecs, S in spectra.values()])
        _, _, Vt = np.linalg.svd(stack, full_matrices=False)
        shared = Vt[:k]

    directions, singular_values, explained, side_out = {}, {}, {}, {}
    for name, (vecs, S) in spectra.items():
        energy = S**2
        if pool == "global":
            D = shared.copy()
            # Share of this layer's energy that the shared directions carry.
            ratio = float(energy @ ((D @ vecs) ** 2).sum(axis=0) / energy.sum())
        else:
            D = vecs[:, :k].T.copy()
            ratio = float(energy[:k].sum() / energy.sum())
        directions[name] = D
        singular_values[name] = S
        explained[name] = ratio
        side_out[name] = sides[name]
        if ratio < min_explained:
            warnings.warn(
                f"layer {name!r}: the top {k} direction(s) explain only "
                f"{ratio:.3f} of its update (min_explained={min_explained}); "
                f"identification assumptions likely violated; pass X_reference "
                f"with identify='cov_weighted' or spurious_directions=",
                IdentificationWarning,
                stacklevel=2,
            )
    return Bunch(
        directions=directions,
        singular_values=singular_values,
        explained_ratio=explained,
        side=side_out,
    )
