"""Equivariance of every update map under its block's group."""

import zlib

import pytest
import torch

from skml.optim import (
    center_rows,
    centered_left_spectral,
    centered_row_norm,
    col_norm,
    hybrid,
    left_spectral,
    polar,
    right_spectral,
    row_norm,
)

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
SHAPES = [(7, 5), (5, 7), (6, 6), (3, 4, 6)]


def _orthogonal(n, gen, dtype):
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


def _permutation(n, gen, dtype):
    return torch.eye(n, dtype=dtype)[torch.randperm(n, generator=gen)]


def _inputs(shape, dtype, gen):
    """Full-rank, rank-deficient and zero-row matrices of one shape."""
    *batch, A, B = shape
    full = torch.randn(shape, generator=gen, dtype=torch.float64)
    low = torch.randn(*batch, A, 2, generator=gen, dtype=torch.float64) @ torch.randn(
        *batch, 2, B, generator=gen, dtype=torch.float64
    )
    zero_rows = torch.randn(shape, generator=gen, dtype=torch.float64)
    zero_rows[..., [0, A - 1], :] = 0.0
    return {
        "full": full.to(dtype),
        "rank2": low.to(dtype),
        "zero_rows": zero_rows.to(dtype),
    }


# map, left group, right group, whether it ignores a shared row shift
MAPS = {
    "polar": (polar, "orthogonal", "orthogonal", False),
    "polar_ns": (
        lambda M: polar(M, method="newton_schulz"),
        "orthogonal",
        "orthogonal",
        False,
    ),
    "right_spectral": (right_spectral, "orthogonal", "orthogonal", False),
    "left_spectral": (left_spectral, "orthogonal", "orthogonal", False),
    "row_norm": (row_norm, "permutation", "orthogonal", False),
    "row_norm_threshold": (
        lambda M: row_norm(M, threshold=0.5),
        "permutation",
        "orthogonal",
        False,
    ),
    "col_norm": (col_norm, "orthogonal", "permutation", False),
    "centered_row_norm": (centered_row_norm, "permutation", "orthogonal", True),
    "centered_left_spectral": (
        centered_left_spectral,
        "permutation",
        "orthogonal",
        True,
    ),
    "hybrid": (hybrid, "permutation", "orthogonal", False),
    "hybrid_col": (
        lambda M: hybrid(M, orientation="col"),
        "orthogonal",
        "permutation",
        False,
    ),
    "hybrid_centered": (
        lambda M: hybrid(M, center=True),
        "permutation",
        "orthogonal",
        True,
    ),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(MAPS))
def test_equivariance(name, shape, dtype):
    fn, left, right, shift_invariant = MAPS[name]
    gen = torch.Generator().manual_seed(zlib.crc32(f"{name}{shape}".encode()))
    *_, A, B = shape
    make = {"orthogonal": _orthogonal, "permutation": _permutation}
    for kind, M in _inputs(shape, dtype, gen).items():
        if name == "polar_ns" and dtype == torch.float32 and kind != "full":
            # Newton-Schulz has no rank cut: the float32 rounding of L M R in
            # M's null space grows by a^5 ~ 490 (the SVD polar cuts it off)
            continue
        L, R = make[left](A, gen, dtype), make[right](B, gen, dtype)
        out = fn(M)
        assert out.shape == M.shape and out.dtype == dtype
        assert torch.all(torch.isfinite(out)), kind
        torch.testing.assert_close(
            fn(L @ M @ R), L @ out @ R, atol=TOL[dtype], rtol=0, msg=kind
        )
        if shift_invariant:
            c = torch.randn(B, generator=gen, dtype=torch.float64).to(dtype)
            torch.testing.assert_close(fn(M + c), out, atol=TOL[dtype], rtol=0)
            # the columns of the update sum to zero: no shared logit drift
            torch.testing.assert_close(
                out.sum(-2), torch.zeros_like(out.sum(-2)), atol=TOL[dtype], rtol=0
            )


@pytest.mark.parametrize("name", ["polar", "right_spectral", "left_spectral"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_spectral_maps_equal_the_svd_polar_factor(name, shape):
    gen = torch.Generator().manual_seed(3)
    for kind, M in _inputs(shape, torch.float64, gen).items():
        U, s, Vh = torch.linalg.svd(M, full_matrices=False)
        keep = (s > 1e-8 * s[..., :1]).to(M.dtype)
        expected = (U * keep[..., None, :]) @ Vh
        torch.testing.assert_close(
            MAPS[name][0](M), expected, atol=1e-10, rtol=0, msg=kind
        )


def test_newton_schulz_is_close_to_the_polar_factor():
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(50, 16, generator=gen, dtype=torch.float64)
    s = torch.linalg.svdvals(polar(M, method="newton_schulz"))
    # Muon's quintic iteration: singular values in a band around 1, not 1
    assert 0.6 < float(s.min()) and float(s.max()) < 1.25


def test_row_norm_units_and_zero_rows():
    M = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, 1e-3]], dtype=torch.float64)
    out = row_norm(M)
    torch.testing.assert_close(out[0], torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert torch.all(out[1] == 0)
    # a small row is a unit row too (up to eps): the authors' rule
    assert abs(float(out[2, 1]) - 1.0) < 1e-4


def test_row_threshold_moves_stale_rows_in_proportion():
    M = torch.tensor([[3.0, 4.0], [0.0, 1e-3], [0.0, 2.0]], dtype=torch.float64)
    out = row_norm(M, eps=0.0, threshold=0.1)
    # rows below 0.1 x the largest norm (5) are divided by 0.5, not their norm
    torch.testing.assert_close(out[1], M[1] / 0.5)
    torch.testing.assert_close(out[2], torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_centring_removes_a_shared_shift():
    M = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(center_rows(M + 5.0), center_rows(M))
    # one row: no shift symmetry, the centred update is zero
    assert torch.all(centered_row_norm(M[:1]) == 0)


def test_polar_of_zero_is_zero():
    for method in ("svd", "newton_schulz"):
        assert torch.all(polar(torch.zeros(3, 4), method=method) == 0)
    assert torch.all(right_spectral(torch.zeros(3, 4)) == 0)
    assert torch.all(left_spectral(torch.zeros(3, 4)) == 0)


def test_unknown_polar_method():
    with pytest.raises(ValueError, match="polar method"):
        polar(torch.eye(2), method="qr")
