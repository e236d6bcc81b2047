"""Multi-label tables whose labels are 0/1 columns, one per label (`transferkit.data.label_columns`
through `read_text_table(..., label_sets=True)`): named, or found by their contents, with
what is left out said; the `labels` column still wins when there is one."""

from __future__ import annotations

import pandas as pd
import pytest

from transferkit.data.label_columns import infer_target
from transferkit.data.text import read_text_table
from transferkit.errors import DataError

ROWS = [
    ("id", "text", "sports", "politics", "tech"),
    (1, "the match ended in a draw", 1, 0, 0),
    (2, "parliament votes on the tech bill", 0, 1, 1),
    (3, "nothing to see here", 0, 0, 0),
    (4, "new phone chips announced", "false", "no", "TRUE"),
    (5, "a cell that is not a flag", 0, 2, 0),
    (6, "a blank cell", "", 0, 1),
]


def _table(tmp_path, rows=ROWS, name="t.csv"):
    path = tmp_path / name
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def test_named_columns_give_the_names_of_the_columns_set_to_one(tmp_path):
    table = read_text_table(_table(tmp_path), label_column="sports, Politics,tech",
                            label_sets=True)
    assert table.label_column == "sports,politics,tech"  # the table's spelling, read back as is
    assert table.labels == [("sports",), ("politics", "tech"), (), ("tech",)]
    assert table.dropped == {"not_binary": [6], "missing_label": [7]}  # CSV lines
    again = read_text_table(_table(tmp_path), label_column=table.label_column, label_sets=True)
    assert again.labels == table.labels


def test_without_a_labels_column_the_0_1_columns_are_found_and_the_others_named(tmp_path):
    table = read_text_table(_table(tmp_path), label_sets=True)
    # politics holds a 2, so it is not a 0/1 column; id holds 3, 4...: neither is a label.
    assert table.indicators.names == ["sports", "tech"]
    assert set(table.indicators.left_out) == {"id", "politics"}
    line = table.indicators.describe()
    assert "found by their 0/1 contents" in line and "politics (holds '2', not 0/1)" in line
    assert table.labels[2] == ()  # a row of zeros is kept: an example of no label


def test_parquet_booleans_and_integers_are_flags(tmp_path):
    rows = [("text", "a", "b"), ("one", True, False), ("two", False, False), ("three", 1, 1)]
    rows = [rows[0]] + [(t, int(a), int(b)) for t, a, b in rows[1:]]
    table = read_text_table(_table(tmp_path, rows, "t.parquet"), label_sets=True)
    assert table.labels == [("a",), (), ("a", "b")]


def test_a_labels_column_wins_over_0_1_columns(tmp_path):
    rows = [("text", "labels", "a", "b"), ("x", "a;b", 1, 0), ("y", "b", 0, 1)]
    table = read_text_table(_table(tmp_path, rows), label_sets=True)
    assert table.indicators is None and table.labels == ["a;b", "b"]


@pytest.mark.parametrize(("rows", "column", "message"), [
    (ROWS, "sports,nope", "no column named 'nope' among the 0/1 label columns"),
    (ROWS, "sports,text", "not the column of the inputs ('text')"),
    ([("text", "score", "a"), ("x", 3, 1), ("y", 4, 0)], None,
     "found 1 0/1 column(s)"),
])
def test_label_columns_that_cannot_be_used_are_named(tmp_path, rows, column, message):
    with pytest.raises(DataError) as error:
        read_text_table(_table(tmp_path, rows), label_column=column, label_sets=True)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(("columns", "label_column", "target"), [
    (None, None, "single-label"),                       # class folders
    (["text", "label"], None, "single-label"),
    (["text", "Sentiment"], None, "single-label"),
    (["path", "labels"], None, "multi-label"),
    (["text", "target", "id"], None, "regression"),
    (["text", "stars"], None, "single-label"),          # no known column: the default's reader
    (["text", "labels", "target"], "target", "regression"),
    (["text", "a", "b"], "a,b", "multi-label"),
    (["text", "stars"], "stars", "single-label"),
])
def test_the_target_is_read_from_the_column_names(columns, label_column, target):
    assert infer_target(columns, label_column)[0] == target


def test_columns_of_two_targets_are_ambiguous():
    with pytest.raises(DataError, match="more than one target: 'label' \\(single-label\\), "
                                        "'target' \\(regression\\). Choose with --target"):
        infer_target(["text", "label", "target"], None)
