"""Reading text tables (CSV, TSV, JSON Lines, Parquet) and dropping bad rows, with line numbers."""

from __future__ import annotations

import json

import pytest

from transferkit.data.text import read_text_table
from transferkit.errors import DataError, InputError

ROWS = [("a fine film", "pos"), ("a dull film", "neg"), ("great fun", "pos"), ("boring", "neg")]


def write_csv(path, header="text,label", rows=ROWS, delimiter=","):
    lines = [header] + [f"{t}{delimiter}{label}" for t, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet", ".json"])
def test_every_format_reads_the_same_rows(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        write_csv(path)
    elif suffix == ".tsv":
        write_csv(path, header="text\tlabel", delimiter="\t")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"text": t, "label": label}) for t, label in ROWS))
    elif suffix == ".json":  # one JSON array of objects
        path.write_text(json.dumps([{"text": t, "label": label} for t, label in ROWS]))
    else:
        import pandas as pd

        pd.DataFrame(ROWS, columns=["text", "label"]).to_parquet(path)
    table = read_text_table(path)
    assert table.texts == [t for t, _ in ROWS]
    assert table.labels == [label for _, label in ROWS]
    assert table.num_dropped == 0
    assert table.unit == ("row" if suffix == ".parquet" else "line")


def test_columns_are_guessed_case_insensitively(tmp_path):
    path = write_csv(
        tmp_path / "d.csv", header="id,Sentence,Sentiment", rows=[("1,good", "1"), ("2,bad", "0")]
    )
    table = read_text_table(path)
    assert (table.text_column, table.label_column) == ("Sentence", "Sentiment")
    assert table.texts == ["good", "bad"] and table.labels == ["1", "0"]


def test_ambiguous_or_missing_columns_list_the_columns(tmp_path):
    both = write_csv(tmp_path / "both.csv", header="text,review,label", rows=[("a,b", "x")])
    with pytest.raises(
        DataError,
        match=r"several columns could hold the texts \('text', 'review'\)"
        r"\. Choose one with `text_column`\. Columns: 'text', 'review', 'label'",
    ):
        read_text_table(both)
    none = write_csv(tmp_path / "none.csv", header="body,label", rows=[("a", "x")])
    with pytest.raises(
        DataError,
        match=r"no texts column found \(looked for text, sentence, review\)"
        r".*Columns: 'body', 'label'",
    ):
        read_text_table(none)
    with pytest.raises(
        DataError,
        match=r"no column named 'stars' for the labels\. Pass one of the "
        r"columns as `label_column`: 'body', 'label'",
    ):
        read_text_table(none, text_column="body", label_column="stars")
    # naming the column explicitly works where guessing could not
    assert read_text_table(both, text_column="review").texts == ["b"]


def test_bad_rows_are_dropped_with_their_line_numbers(tmp_path):
    path = tmp_path / "messy.csv"
    content = (
        b"text,label\n"  # line 1
        b"good movie,pos\n"  # 2 kept
        b",neg\n"  # 3 empty text
        b"   ,neg\n"  # 4 blank text
        b"no label here,\n"  # 5 missing label
        b"caf\xe9 latin-1,pos\n"  # 6 not UTF-8
        b'"multi\nline",neg\n'  # 7-8 kept (quoted newline)
        b"too,many,fields\n"  # 9 malformed
        b"\n"  # 10 blank line: ignored
        b"bad film,neg\n"  # 11 kept
    )
    path.write_bytes(content)
    table = read_text_table(path)
    assert table.texts == ["good movie", "multi\nline", "bad film"]
    assert table.row_numbers == [2, 7, 11]
    assert table.dropped == {
        "encoding": [6],
        "empty_text": [3, 4],
        "missing_label": [5],
        "malformed": [9],
    }
    assert table.num_dropped == 5
    summary = table.drop_summary()
    assert summary["empty_text"] == {
        "count": 2,
        "description": "empty or missing text",
        "first_lines": [3, 4],
    }
    assert "2 rows dropped: empty or missing text (lines 3, 4)" in table.describe_drops()
    assert ("1 row dropped: not valid UTF-8 (re-save the file as UTF-8) (lines 6)"
            in table.describe_drops())


def test_jsonl_bad_lines_and_missing_values(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        b'{"text": "ok", "label": 1}\n'
        b"not json\n"
        b"[1, 2]\n"
        b'{"text": null, "label": 0}\n'
        b'{"text": "no label"}\n'
        b'{"text": "caf\xe9", "label": 1}\n'
        b'{"text": "fine", "label": 0.0}\n'
    )
    table = read_text_table(path)
    assert table.texts == ["ok", "fine"]
    assert table.labels == ["1", "0"]  # numbers become label strings; 0.0 is "0"
    assert table.dropped == {
        "malformed": [2, 3],
        "empty_text": [4],
        "missing_label": [5],
        "encoding": [6],
    }


def test_texts_only_for_prediction(tmp_path):
    path = write_csv(
        tmp_path / "d.csv", header="text", rows=[("one", ""), ("two", "")], delimiter=""
    )
    table = read_text_table(path, require_labels=False)
    assert table.texts == ["one", "two"] and table.labels is None


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match=r"no such file\. Pass a CSV, TSV, JSON Lines or Parquet"):
        read_text_table(tmp_path / "missing.csv")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(
        InputError, match=r"unknown table format '\.xlsx'\. Use a file ending in one of"
    ):
        read_text_table(tmp_path / "d.xlsx")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"the file is empty\. Expected a header line"):
        read_text_table(tmp_path / "empty.csv")
    only_bad = write_csv(tmp_path / "bad.csv", rows=[("", "x"), ("text", "")])
    with pytest.raises(DataError, match=r"no usable rows\. 1 row dropped: empty or missing text"):
        read_text_table(only_bad)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"not a readable Parquet file"):
        read_text_table(tmp_path / "bad.parquet")
