import numpy as np
import pandas as pd
import pytest
import torch

from skml.utils import cell_sums, encode_groups


def test_labels_encode_and_reencode_with_fitted_categories():
    G, cats, names = encode_groups(np.array(["b", "a", "b", "c"]), 4)
    np.testing.assert_array_equal(G.argmax(1), [1, 0, 1, 2])
    assert G.sum(1).tolist() == [1, 1, 1, 1] and names == ["a", "b", "c"]
    # a label unseen at fit time belongs to no fitted group
    G2, _, _ = encode_groups(np.array(["c", "z"]), 2, categories=cats)
    assert G2.tolist() == [[0, 0, 1], [0, 0, 0]]


def test_indicator_matrix_keeps_dataframe_names():
    frame = pd.DataFrame({"young": [1, 0, 1], "urban": [1, 1, 0]})
    G, cats, names = encode_groups(frame, 3)
    assert names == ["young", "urban"] and cats == 2
    np.testing.assert_array_equal(G, frame.to_numpy())
    with pytest.raises(ValueError, match="expected 2 as in fit"):
        encode_groups(np.ones((3, 3)), 3, categories=cats)


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        (np.zeros((3, 1)), "empty group"),
        (np.full((3, 1), 0.5), "0/1 indicators"),
        (np.ones((2, 1)), "groups has 2 rows but X has 3"),
        (np.ones((3, 1, 1)), "1-D labels or an"),
    ],
)
def test_bad_groups_are_named(groups, match):
    with pytest.raises(ValueError, match=match):
        encode_groups(groups, 3)


def test_cell_sums_match_a_loop():
    rng = np.random.default_rng(0)
    n, m = 300, 4
    H = (rng.random((n, 3)) < 0.5).astype(float)
    bucket = rng.integers(0, m, n)
    values = rng.normal(size=(n, 2))
    out = cell_sums(*map(torch.as_tensor, (H, bucket)), m, torch.as_tensor(values))
    assert out.shape == (2, 3, m)
    for k in range(2):
        for g in range(3):
            for j in range(m):
                rows = (H[:, g] == 1) & (bucket == j)
                np.testing.assert_allclose(out[k, g, j].item(), values[rows, k].sum())
