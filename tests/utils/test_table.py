from skml.utils import format_table, progress


def test_format_table_aligns_and_formats():
    text = format_table([{"a": "x", "b": 1.23456789}, {"a": "long", "b": 1e-9, "c": 3}])
    lines = text.splitlines()
    assert lines[0].split() == ["a", "b", "c"]
    assert "1.2346" in lines[2]
    assert "1.000e-09" in lines[3]
    # columns line up: every row starts its second column at the same offset
    offset = lines[0].index("b")
    assert all(line[offset - 2 : offset] == "  " for line in lines[2:])


def test_format_table_column_order():
    text = format_table([{"a": 1, "b": 2}], columns=["b", "a"])
    assert text.splitlines()[0].split() == ["b", "a"]


def test_progress_is_transparent():
    assert list(progress(range(3), disable=True)) == [0, 1, 2]
