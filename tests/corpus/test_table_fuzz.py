"""Property tests of the text-table reader (issue 16): on random bytes it reads a table or raises
a transferkit error, never anything else; on random well-formed CSVs in the dialects it reads,
every row written is either read back exactly or counted in `dropped`."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from transferkit.data.text import read_text_table
from transferkit.errors import DataError, InputError

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

HEADERS = [b"", b"PAR1", b"text,label\n", b"text\tlabel\n", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff",
           b'{"text": "a", "label": "b"}\n', b"[", b"text;label\r\n"]


@FUZZ
@given(suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]),
       head=st.sampled_from(HEADERS), body=st.binary(max_size=300),
       require_labels=st.booleans())
@example(suffix=".csv", head=b"text;label\r\n", body=b"\x00\r;", require_labels=True)  # 2 reasons
def test_random_bytes_give_a_table_or_a_transferkit_error(suffix, head, body, require_labels):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"table{suffix}"
        path.write_bytes(head + body)
        try:
            table = read_text_table(path, require_labels=require_labels)
        except (DataError, InputError) as error:
            assert str(error).startswith(str(path)), str(error)
            assert "\n" not in str(error).strip()
            return
        assert len(table) >= 1 and len(table.texts) == len(table.row_numbers)
        assert all(text.strip() for text in table.texts)


# -- well-formed tables in random dialects ---------------------------------------------------------

# Any printable text, with the characters that need quoting, but no NUL (csv refuses it) and no
# surrogates (not encodable).
TEXT = st.text(
    st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
              st.sampled_from(list(',;|\t"\'\r\n '))),
    max_size=30,
)
LABEL = st.one_of(st.sampled_from(["pos", "neg", "neutral", "0", "1", "1.0", "2.50", " pos "]),
                  st.text("abcxyz", min_size=1, max_size=4))


@st.composite
def dialects(draw):
    suffix = draw(st.sampled_from([".csv", ".csv", ".tsv"]))
    delimiter = "\t" if suffix == ".tsv" else draw(st.sampled_from([",", ";", "|", "\t"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    return suffix, delimiter, quoting, terminator, encoding


def expected_kept(text: str, label: str) -> bool:
    """The reader's rule: text and label that are neither blank nor "nan" (a missing value)."""
    return all(v.strip() and v.strip().casefold() != "nan" for v in (text, label))


@FUZZ
@given(dialect=dialects(), rows=st.lists(st.tuples(TEXT, LABEL), min_size=1, max_size=15))
def test_random_dialects_read_back_every_row_or_count_it(dialect, rows):
    suffix, delimiter, quoting, terminator, encoding = dialect
    if quoting == csv.QUOTE_MINIMAL and terminator == "\n":
        # csv then leaves a CR unquoted, which every CSV reader (RFC 4180) takes as a line break:
        # that file is not the table written, so it is not generated.
        rows = [(t.replace("\r", " "), y) for t, y in rows]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=terminator)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"table{suffix}"
        path.write_bytes(buffer.getvalue().encode(encoding))
        kept = [(t, y) for t, y in rows if expected_kept(t, y)]
        if not kept:
            try:
                read_text_table(path)
            except DataError as error:
                assert "no usable rows" in str(error)
                return
            raise AssertionError("a table without a usable row was read")
        table = read_text_table(path)
    assert len(table) + table.num_dropped == len(rows)
    assert table.texts == [t for t, _ in kept]
    as_numbers = {"1.0": "1", "2.50": "2.5"}
    assert table.labels == [as_numbers.get(y.strip(), y.strip()) for _, y in kept]


@FUZZ
@given(rows=st.lists(st.tuples(TEXT, st.one_of(LABEL, st.integers(-3, 3), st.none())),
                     min_size=1, max_size=15),
       encoding=st.sampled_from(["utf-8", "utf-16", "utf-32"]))
def test_random_json_lines_read_back_every_row_or_count_it(rows, encoding):
    lines = [json.dumps({"text": t, "label": y}, ensure_ascii=False) for t, y in rows]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.jsonl"
        path.write_bytes("\n".join(lines).encode(encoding))
        kept = [(t, str(y)) for t, y in rows if y is not None and expected_kept(t, str(y))]
        if not kept:
            return
        table = read_text_table(path)
    assert len(table) + table.num_dropped == len(rows)
    assert table.texts == [t for t, _ in kept]


def _parquet_bytes() -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"text": ["good film", "bad film", None], "label": ["pos", "neg", "pos"]}
                 ).to_parquet(buffer)
    return buffer.getvalue()


PARQUET = _parquet_bytes()


@FUZZ
@given(cut=st.integers(0, len(PARQUET)), flips=st.lists(
    st.tuples(st.integers(0, len(PARQUET) - 1), st.integers(1, 255)), max_size=3))
@example(cut=len(PARQUET), flips=[(100, 1)])  # pyarrow's message ran over three lines
@example(cut=2062, flips=[(214, 128)])  # a column name that is not UTF-8: UnicodeDecodeError
def test_a_damaged_parquet_file_gives_a_table_or_a_transferkit_error(cut, flips):
    data = bytearray(PARQUET)
    for position, mask in flips:
        data[position] ^= mask
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.parquet"
        path.write_bytes(bytes(data[:cut]) if cut < len(data) else bytes(data))
        try:
            table = read_text_table(path)
        except (DataError, InputError) as error:
            assert "\n" not in str(error).strip()
            return
    assert len(table) + table.num_dropped <= 3
