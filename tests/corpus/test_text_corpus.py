"""A corpus of bad text tables (issue 16): each is read, or dropped row by row with the reason in
`dropped`, or refused with one error that says what was wrong and how to fix it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transferkit.data.text import read_text_table
from transferkit.errors import DataError

ROWS = "text,label\ngood film,pos\nbad film,neg\ncafé au lait,pos\n"
TEXTS = ["good film", "bad film", "café au lait"]
LABELS = ["pos", "neg", "pos"]


# -- encodings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "name"),
    [
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),  # the platform's order, with a byte-order mark
        ("utf-16-be-bom", "utf-16"),
        ("utf-32", "utf-32"),
    ],
)
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_a_byte_order_mark_picks_the_encoding(tmp_path, encoding, name, suffix):
    if suffix == ".jsonl":
        text = "".join(json.dumps({"text": t, "label": y}, ensure_ascii=False) + "\n"
                       for t, y in zip(TEXTS, LABELS))
    else:
        text = ROWS.replace(",", "\t") if suffix == ".tsv" else ROWS
    data = (b"\xfe\xff" + text.encode("utf-16-be") if encoding == "utf-16-be-bom"
            else text.encode(encoding))
    path = tmp_path / f"table{suffix}"
    path.write_bytes(data)
    table = read_text_table(path)
    assert table.texts == TEXTS and table.labels == LABELS
    assert table.num_dropped == 0
    assert table.encoding == name


def test_utf16_without_a_byte_order_mark_is_named(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(ROWS.encode("utf-16-le"))
    with pytest.raises(DataError, match=r"line 1: NUL bytes in the header: the file looks like "
                                        r"UTF-16 or UTF-32 without a byte-order mark\. Re-save "
                                        r"it as UTF-8") as error:
        read_text_table(path)
    assert "\x00" not in str(error.value)


def test_a_corrupt_utf16_file_names_the_encoding_and_the_line(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(b"\xff\xfe" + ROWS.encode("utf-16-le") + b"\x00\xd8")  # half a surrogate
    with pytest.raises(DataError, match=r"table\.csv, line 5: not valid UTF-16 \(the byte-order "
                                        r"mark says UTF-16\)\. Re-save the file as UTF-8"):
        read_text_table(path)


def test_latin1_rows_are_dropped_with_their_lines_and_the_fix(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(ROWS.encode("latin-1"))
    table = read_text_table(path)
    assert table.texts == TEXTS[:2]
    assert table.dropped == {"encoding": [4]}
    assert table.describe_drops() == (
        "1 row dropped: not valid UTF-8 (re-save the file as UTF-8) (lines 4)")


def test_a_latin1_header_names_the_encoding(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes("texte,étiquette\nbon,1\nmal,0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"table\.csv, line 1: the header is not valid UTF-8 "
                                        r"\(byte 0xe9 in a column name\): the file is in another "
                                        r"encoding, such as Latin-1 or Windows-1252\. Re-save it "
                                        r"as UTF-8\.$"):
        read_text_table(path, text_column="texte")


# -- newlines and quoting ---------------------------------------------------------------------------


@pytest.mark.parametrize("newlines", ["\r\n", "\r", "mixed"])
def test_crlf_cr_and_mixed_newlines(tmp_path, newlines):
    lines = ROWS.splitlines()
    if newlines == "mixed":
        text = lines[0] + "\r\n" + lines[1] + "\n" + lines[2] + "\r" + lines[3] + "\n"
    else:
        text = newlines.join(lines) + newlines
    path = tmp_path / "table.csv"
    path.write_bytes(text.encode("utf-8"))
    table = read_text_table(path)
    assert table.texts == TEXTS and table.labels == LABELS
    assert table.row_numbers == [2, 3, 4]


def test_quoted_multi_line_fields_keep_their_newlines_and_line_numbers(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(b'text,label\r\n"first\r\nsecond, with a comma",pos\r\n'
                     b'"say ""hi""\nthen\nleave",neg\r\nlast,pos\r\n')
    table = read_text_table(path)
    assert table.texts == ["first\r\nsecond, with a comma", 'say "hi"\nthen\nleave', "last"]
    assert table.row_numbers == [2, 4, 7]


@pytest.mark.parametrize("delimiter", [";", "|", "\t"])
def test_a_csv_separated_by_another_delimiter_is_read(tmp_path, delimiter):
    path = tmp_path / "table.csv"
    path.write_text(ROWS.replace(",", delimiter), encoding="utf-8")
    table = read_text_table(path)
    assert table.texts == TEXTS and table.labels == LABELS


# -- a quote that swallows rows (issue 27): refused naming its line, never read as one text ------


def _reviews(count=200):
    """`count` rows of a two-column table, one a line (line n + 1 holds review n)."""
    return [f"review number {n} is fine,{'pos' if n % 2 else 'neg'}" for n in range(1, count + 1)]


def _write_rows(path, rows, header="text,label"):
    delimiter = "\t" if path.suffix == ".tsv" else ","
    lines = [header.replace(",", delimiter)] + [row.replace(",", delimiter) for row in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_quote_never_closed_is_refused_naming_its_line(tmp_path, suffix):
    rows = _reviews()
    rows[60] = '"review number 61 opens a quote,pos'  # line 62; 139 rows after it
    path = _write_rows(tmp_path / f"table{suffix}", rows)
    with pytest.raises(DataError, match=rf"table\{suffix}, line 62: a quoted field opens here and "
                                        r"runs on over 140 lines \(to line 201\): its quote is "
                                        r"never closed, so the rows in those lines would be read "
                                        r"as one text\. Close the quote on line 62, or write a "
                                        r'quote inside a field as two \(""\)'):
        read_text_table(path)


@pytest.mark.parametrize(
    ("closing", "found"),
    [
        ('he said "wow",neg', r"a quote on line 11 closes it in the middle of a field"),
        ('a pizza of 12",neg,extra', r"it ends on line 11 as a row of 3 fields, not 2"),
        ('a pizza of 12",neg', r"lines 7 and 8 inside it read as rows of their own"),
    ],
    ids=["quote inside a later text", "a later row of other width", "a later row that fits"],
)
def test_a_quote_closed_rows_later_is_refused(tmp_path, closing, found):
    rows = _reviews(20)
    rows[5], rows[9] = '"review number 6 opens a quote,pos', closing  # lines 7 and 11
    path = _write_rows(tmp_path / "table.csv", rows)
    with pytest.raises(DataError, match=r"table\.csv, line 7: a quoted field opens here and runs "
                                        rf"on over 5 lines \(to line 11\): {found}, so the rows"):
        read_text_table(path)


def test_a_quote_in_an_id_table_is_refused_too(tmp_path):
    rows = [f"{n},{row}" for n, row in enumerate(_reviews(20), 1)]
    rows[5] = '6,"review number 6 opens a quote,pos'
    path = _write_rows(tmp_path / "table.csv", rows, header="id,text,label")
    with pytest.raises(DataError, match=r"line 7: a quoted field opens here and runs on over 15 "
                                        r"lines \(to line 21\): its quote is never closed"):
        read_text_table(path)


def test_a_header_with_a_quote_never_closed_is_refused(tmp_path):
    path = _write_rows(tmp_path / "table.csv", _reviews(5), header='"text,label')
    with pytest.raises(DataError, match=r"table\.csv, line 1: not a readable ','-separated table: "
                                        r"a quote in the header is not closed"):
        read_text_table(path)


def test_real_multi_line_texts_and_stray_quotes_on_one_line_are_still_read(tmp_path):
    rows = _reviews(6)
    rows[1] = '"I loved it.\nGreat acting, great music.\nWould watch again",pos'  # lines 3-5
    rows[3] = '"Great" movie,pos'  # a stray quote: read as csv always read it
    rows[5] = '"a last row that opens a quote,neg'  # one line lost: dropped and counted
    table = read_text_table(_write_rows(tmp_path / "table.csv", rows))
    assert table.texts[1] == "I loved it.\nGreat acting, great music.\nWould watch again"
    assert table.texts[3] == "Great movie"
    assert table.row_numbers == [2, 3, 6, 7, 8]
    assert table.dropped == {"malformed": [9]}


def test_jsonl_two_objects_on_a_line_and_cr_line_ends_lose_no_row(tmp_path):
    row = lambda text, label: json.dumps({"text": text, "label": label})  # noqa: E731
    path = tmp_path / "t.jsonl"
    path.write_bytes((row("a", "x") + " " + row("b", "y") + "\r" + row("c", "x") + "\r"
                      + row("d", "y") + "garbage\r").encode("utf-8"))
    table = read_text_table(path)
    assert table.texts == ["a", "b", "c", "d"]
    assert table.row_numbers == [1, 1, 2, 3]
    assert table.dropped == {"malformed": [3]}  # what follows the object on line 3


def test_a_json_array_names_the_lines_its_items_start_on(tmp_path):
    row = lambda text, label: json.dumps({"text": text, "label": label})  # noqa: E731
    path = tmp_path / "t.json"
    path.write_text("[\n  " + row("a", "x") + ",\n  " + row("", "y") + ",\n\n  5,\n  "
                    + row("d", "y") + "\n]\n")
    table = read_text_table(path)
    assert table.texts == ["a", "d"] and table.row_numbers == [2, 6]
    assert table.dropped == {"empty_text": [3], "malformed": [5]}


# -- columns, empty tables ------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "argument"), [("body,label", "text_column"),
                                                   ("text,stars", "label_column")])
def test_a_missing_column_lists_the_columns_that_exist(tmp_path, header, argument):
    path = tmp_path / "table.csv"
    path.write_text(header + "\ngood,1\nbad,0\n", encoding="utf-8")
    columns = ", ".join(repr(c) for c in header.split(","))
    with pytest.raises(DataError, match=rf"Choose one with `{argument}`\. Columns: {columns}\."):
        read_text_table(path)


@pytest.mark.parametrize(
    ("suffix", "content", "message"),
    [
        (".csv", b"", r"the file is empty\. Expected a header line, then rows"),
        (".jsonl", b"", r"the file is empty\. Expected one JSON object per line"),
        (".csv", b"\n\n  \n", r"the file is empty\. Expected a header line, then rows"),
        (".csv", b"text,label\n", r"no usable rows: the table has a header but no rows"),
        (".csv", b"text,label\r\n\r\n", r"no usable rows: the table has a header but no rows"),
        (".tsv", b"text\tlabel\n", r"no usable rows: the table has a header but no rows"),
    ],
    ids=["empty csv", "empty jsonl", "blank lines only", "header only", "header and blank line",
         "header only tsv"],
)
def test_empty_and_header_only_files(tmp_path, suffix, content, message):
    path = tmp_path / f"table{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_text_table(path)


# -- missing values and labels --------------------------------------------------------------------


def test_blank_nan_and_whitespace_texts_and_labels_are_dropped_with_reasons(tmp_path):
    path = tmp_path / "table.csv"
    path.write_bytes(
        b"text,label\n"
        b"good film,pos\n"  # 2 kept
        b",neg\n"  # 3 blank text
        b"   \t,neg\n"  # 4 whitespace text
        b"nan,pos\n"  # 5 a missing value written out by pandas
        b"NaN,neg\n"  # 6
        b"no label,\n"  # 7 blank label
        b"spaces,   \n"  # 8 whitespace label
        b"nan label,nan\n"  # 9
        b"NaN label,NaN\n"  # 10
        b"bad film,neg\n"  # 11 kept
    )
    table = read_text_table(path)
    assert table.texts == ["good film", "bad film"]
    assert table.dropped == {"empty_text": [3, 4, 5, 6], "missing_label": [7, 8, 9, 10]}
    summary = table.drop_summary()
    assert summary["empty_text"]["description"] == "empty or missing text"
    assert summary["missing_label"]["description"] == "missing label"
    assert summary["missing_label"]["count"] == 4


def test_nan_in_jsonl_and_parquet_is_missing(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"text": ["good", None, "bad", "fine", "nan"],
                          "label": [1.0, 0.0, float("nan"), 0.0, 1.0]})
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "t.jsonl").write_text(frame.to_json(orient="records", lines=True))
    for name in ("t.parquet", "t.jsonl"):
        table = read_text_table(tmp_path / name)
        assert table.texts == ["good", "fine"], name
        assert table.labels == ["1", "0"], name
        assert {k: len(v) for k, v in table.dropped.items()} == {"empty_text": 2,
                                                                  "missing_label": 1}, name


def test_numeric_labels_written_as_floats_are_one_class(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("text,label\na,1\nb,1.0\nc,0\nd,0.0\ne,1.00\nf,-0.0\ng,2.50\nh,2.5\n"
                    "i,01\n", encoding="utf-8")
    table = read_text_table(path)
    assert table.labels == ["1", "1", "0", "0", "1", "0", "2.5", "2.5", "01"]
    assert table.renamed_labels == {"1.0": "1", "0.0": "0", "1.00": "1", "-0.0": "0",
                                    "2.50": "2.5"}
    assert table.describe_renamed_labels() == (
        "Numeric labels read as the same class: '1.0' and '1.00' as '1', '0.0' and '-0.0' as "
        "'0', '2.50' as '2.5'")


def test_binary_labels_as_floats_and_ints_give_a_two_class_model(tmp_path):
    from transferkit.config import TextTrainConfig
    from transferkit.pipelines.text import _read_and_split

    path = tmp_path / "table.csv"
    rows = [f"text {i},{['0', '1', '0.0', '1.0'][i % 4]}" for i in range(40)]
    path.write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    lines: list[str] = []
    _, names, _ = _read_and_split(TextTrainConfig(data=str(path)), lines.append)
    assert names == ["0", "1"]
    assert any("'1.0' as '1'" in line for line in lines)


def test_a_model_trained_on_labels_written_as_floats_takes_them_as_numbers():
    from transferkit.data.labels import encode_labels

    # A model saved before labels were read as numbers has the classes "0.0" and "1.0".
    ints, names = encode_labels(["1", "0", "1.0"], class_names=["0.0", "1.0"])
    assert ints.tolist() == [1, 0, 1] and names == ["0.0", "1.0"]
    with pytest.raises(DataError, match=r"Labels not among the classes \['0\.0', '1\.0'\]: "
                                        r"\['2'\]"):
        encode_labels(["2"], class_names=["0.0", "1.0"])


# -- classes ----------------------------------------------------------------------------------------


def test_one_class_only_is_one_clear_error(tmp_path):
    from transferkit.config import TextTrainConfig
    from transferkit.pipelines.text import _read_and_split

    path = tmp_path / "table.csv"
    path.write_text("text,label\n" + "".join(f"text {i},pos\n" for i in range(10)))
    assert read_text_table(path).labels == ["pos"] * 10  # the reader reads it...
    with pytest.raises(DataError, match=r"table\.csv, column 'label': The labels have only one "
                                        r"class \('pos'\).*needs at least two"):
        _read_and_split(TextTrainConfig(data=str(path)), lambda line: None)  # ...training refuses


def test_ten_thousand_classes(tmp_path):
    from transferkit.config import TextTrainConfig
    from transferkit.pipelines.text import _read_and_split

    path = tmp_path / "table.csv"
    path.write_text("text,label\n" + "".join(f"text {i},class {i}\n" for i in range(10_000)))
    table = read_text_table(path)
    assert len(table) == 10_000 and len(set(table.labels)) == 10_000
    with pytest.raises(DataError) as error:
        _read_and_split(TextTrainConfig(data=str(path)), lambda line: None)
    message = str(error.value)
    assert "Classes too rare to split (10000 classes): 'class 0' (1 example)" in message
    assert message.count("(1 example)") == 10 and " and 9990 more." in message
    assert "10000 classes for 10000 examples: most labels are unique; check that these are the "\
           "labels (not ids or free text)." in message
    assert len(message) < 1000
    # three rows a class split: the reader and the splitter handle 10,000 classes
    path.write_text("text,label\n" + "".join(f"text {i},class {i % 10_000}\n"
                                              for i in range(30_000)))
    _, names, parts = _read_and_split(TextTrainConfig(data=str(path)), lambda line: None)
    assert len(names) == 10_000
    assert {len(set(parts[split][1].tolist())) for split in parts} == {10_000}


# -- a very long text -------------------------------------------------------------------------------

LONG_TEXT = ("the film was good and fun " * 200_000)[:5_000_000]


def test_a_5_mb_text_is_read_whole(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text(f'text,label\n"{LONG_TEXT}",pos\nshort,neg\n', encoding="utf-8")
    table = read_text_table(path)
    assert len(table.texts[0]) == 5_000_000 and table.labels == ["pos", "neg"]


def test_a_5_mb_text_is_truncated_by_the_word_vector_tokenizer(vectors_file):
    from transferkit.backbones.text_encoders import text_encoder_class, tokenize

    encoder = text_encoder_class("glove-bilstm")("glove-bilstm", max_length=16,
                                                  word_vectors=vectors_file)
    encoder.adapt(["the film was good", LONG_TEXT])
    ids = tokenize(encoder.tokenizer(), [LONG_TEXT, "bad"])["token_ids"]
    assert ids.shape == (2, 16)
    assert (ids[0] > 1).all()  # sixteen known words, the rest cut off


@pytest.mark.slow  # ~30 s on two cores: WordPiece tokenizes the whole text twice, then truncates
def test_a_5_mb_text_is_truncated_by_the_sentence_encoder_tokenizer(bert_folder):
    from transferkit.backbones.text_encoders import text_encoder_class, tokenize

    encoder = text_encoder_class(str(bert_folder))(str(bert_folder))
    encoder.adapt(["the film was good", "bad", LONG_TEXT])
    assert encoder.sequence_length <= 256
    ids = tokenize(encoder.tokenizer(), [LONG_TEXT, "bad"])["token_ids"]
    assert ids.shape == (2, encoder.sequence_length)
    assert (ids[0] != 0).all()  # full of tokens, truncated at the end


# -- Parquet and JSON Lines -------------------------------------------------------------------------


def test_a_parquet_list_column_is_refused_naming_its_type(tmp_path):
    import pandas as pd

    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": [["good", "film"], ["bad"]], "label": ["pos", "neg"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"t\.parquet: column 'text' holds list<element: string> "
                                        r"values, not text\. Choose a column of strings with "
                                        r"`text_column`"):
        read_text_table(path)


def test_jsonl_bad_lines_are_dropped_with_their_line_numbers(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "oops", "label": \n'
                    '{"text": ["a", "list"], "label": "neg"}\n{"text": "bad", "label": "neg"}\n')
    table = read_text_table(path)
    assert table.texts == ["good", "bad"]
    assert table.dropped == {"malformed": [2], "not_text": [3]}
    assert "1 row dropped: malformed row (lines 2)" in table.describe_drops()


def test_a_file_with_no_json_object_names_the_first_bad_line(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{\n  "text": "pretty-printed",\n  "label": "pos"\n}\n')
    with pytest.raises(DataError, match=r"t\.json, line 1: not a JSON object \(Expecting "
                                        r"property name.*\)\. JSON Lines has one object per "
                                        r"line"):
        read_text_table(path)


# -- duplicates ---------------------------------------------------------------------------------


def test_duplicate_texts_with_conflicting_labels_are_found(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\nGreat film,pos\ndull,neg\n great FILM ,neg\nfun,pos\nfun,pos\n"
                    "dull,neg\nok,pos\n")
    table = read_text_table(path)
    groups = table.duplicate_groups()
    assert groups == [
        {"text": "Great film", "lines": [2, 4], "labels": ["pos", "neg"]},
        {"text": "dull", "lines": [3, 7], "labels": ["neg", "neg"]},
        {"text": "fun", "lines": [5, 6], "labels": ["pos", "pos"]},
    ]
    assert table.describe_conflicts() == (
        "1 text appears with different labels (the same text once stripped and case-folded): "
        "'Great film' (lines 2: pos, 4: neg). Kept as they are: correct the labels, or remove "
        "the wrong copies")
    splits = np.asarray(["train", "test", "train", "train", "validation", "train", "train"])
    groups = table.duplicate_groups(splits)
    assert [g["splits"] for g in groups] == [["train", "train"], ["test", "train"],
                                             ["train", "validation"]]


# -- one training run over a table with every kind of bad row -----------------------------------


@pytest.mark.slow  # a whole training run (~8 s); the reader tests above cover each row in the default run
def test_a_training_run_reports_dropped_rows_renamed_labels_and_conflicts(tmp_path,
                                                                            vectors_file):
    from conftest import _run_cli
    from helpers import toy_texts

    texts, names = toy_texts(40, seed=3)
    labels = [str(["negative", "positive"].index(name)) for name in names]
    labels = [label if i % 3 else f"{label}.0" for i, label in enumerate(labels)]  # 1.0 and 1
    lines = ["text,label"] + [f"{t},{y}" for t, y in zip(texts, labels)]
    lines += [",1", "nan,0", "   ,1", "no label,", "a nan label,NaN", "too,many,fields",
              f"{texts[0].upper()},{1 - int(float(labels[0]))}"]  # a copy of row 2, other label
    path = tmp_path / "messy.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8") + b"caf\xe9,1\r\n")
    run = tmp_path / "run"
    code, out, err = _run_cli(["train", "text", path, "--word-vectors", vectors_file,
                               "--epochs", "1", "--fine-tune-epochs", "0", "--output", run,
                               "--json"])
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["classes"] == ["0", "1"]
    assert result["dropped_rows"] == 7
    assert {k: v["first_lines"] for k, v in result["dropped"].items()} == {
        "empty_text": [42, 43, 44], "missing_label": [45, 46], "malformed": [47],
        "encoding": [49]}
    assert result["renamed_labels"] == {"1.0": "1", "0.0": "0"}
    assert result["conflicting_duplicates"] == 1
    assert "1 text appears with different labels" in err  # the log, as the table is read
    assert "Numeric labels read as the same class: '0.0' as '0', '1.0' as '1'" in err
    summary = (run / "report" / "summary.txt").read_text()
    assert "1 text appears more than once: 0 across splits, 1 with different labels" in summary
    assert "(lines 2: " in summary and "labels read as numbers" in summary
    assert "3 rows dropped: empty or missing text (lines 42, 43, 44)" in summary
    data = json.loads((run / "report" / "data.json").read_text())
    conflict = [g for g in data["duplicates"] if len(set(g["labels"])) > 1]
    assert [g["lines"] for g in conflict] == [[2, 48]]
    assert data["conflicting_duplicates"] == 1 and data["encoding"] == "utf-8"


# -- on the command line: one line, exit 1, nothing left behind -----------------------------------


def _bad_table(tmp_path, case):
    import pandas as pd

    path = tmp_path / ("table.parquet" if case == "parquet lists" else "table.csv")
    if case == "utf-16 without a mark":
        path.write_bytes(ROWS.encode("utf-16-le"))
    elif case == "header only":
        path.write_text("text,label\n")
    elif case == "one class":
        path.write_text("text,label\n" + "".join(f"text {i},pos\n" for i in range(10)))
    elif case == "no label column":
        path.write_text("text,stars\ngood,5\nbad,1\n")
    elif case == "a quote never closed":
        rows = _reviews(30)
        rows[10] = '"an open quote,pos'
        _write_rows(path, rows)
    else:
        pd.DataFrame({"text": [["a"], ["b"]], "label": ["x", "y"]}).to_parquet(path)
    return path


CLI_ERRORS = {  # the command line says --label-column where Python says `label_column`
    "utf-16 without a mark": "looks like UTF-16 or UTF-32 without a byte-order mark",
    "header only": "no usable rows: the table has a header but no rows",
    "one class": "The labels have only one class ('pos')",
    "no label column": "no labels column found (looked for label, sentiment). Choose one with "
                       "--label-column. Columns: 'text', 'stars'.",
    "parquet lists": "column 'text' holds list<element: string> values, not text. Choose a "
                     "column of strings with --text-column",
    "a quote never closed": "line 12: a quoted field opens here and runs on over 20 lines (to "
                            "line 31): its quote is never closed",
}


@pytest.mark.parametrize("case", CLI_ERRORS)
def test_the_command_line_prints_one_line_and_leaves_nothing(tmp_path, vectors_file, case):
    from conftest import _run_cli

    run = tmp_path / "run"
    code, out, err = _run_cli(["train", "text", _bad_table(tmp_path, case), "--word-vectors",
                               vectors_file, "--output", run])
    assert code == 1
    assert CLI_ERRORS[case] in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not run.exists()
