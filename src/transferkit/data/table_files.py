"""Text table files as raw rows: the encoding, and one reader for each format.

Each reader yields the column names first, then `(line number, values)` for every record: a list
of values, `None` for a malformed record, or `"encoding"` for one that is not valid UTF-8.
`transferkit.data.text.read_text_table` turns these into a `TextTable`.

Text files are UTF-8; a byte-order mark says otherwise (UTF-16 or UTF-32, as Excel's "Unicode
text" saves them) and is followed. A file in another encoding is refused when its header shows it
(NUL bytes: UTF-16 without a mark; undecodable bytes: Latin-1 or the like); further down, a row
that is not UTF-8 is returned as `"encoding"`. A CSV whose header has no comma but a `;`, `|` or
tab is read with that delimiter (Excel in many European locales writes `;`).

No row is lost without a word: a quote opened and not closed would make the rows after it one
text (139 rows of 200 read as one, and "1 row dropped"); the CSV reader refuses such a file naming
the line where the quote opens (`csv_rows`, `MultiLineRecords`). JSON Lines end at LF, CRLF or CR;
a line with several objects gives them all; the items of a JSON array are numbered by the line
they start on.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.errors import DataError

__all__ = ["BYTE_ORDER_MARKS", "MultiLineRecords", "check_not_empty", "csv_rows", "jsonl_rows",
           "open_text", "parquet_rows", "sniff_encoding"]

# Byte-order marks, longest first (the UTF-32-LE mark starts with the UTF-16-LE one) -> the codec,
# which removes the mark itself.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# Delimiters tried, in this order, when a CSV header has no comma.
_OTHER_DELIMITERS = (";", "\t", "|")


def sniff_encoding(path: Path) -> str:
    """The codec a byte-order mark names, else `"utf-8"`; refuses UTF-16/32 without a mark."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    for mark, encoding in BYTE_ORDER_MARKS:
        if head.startswith(mark):
            return encoding
    if b"\x00" in head.split(b"\n", 1)[0]:
        # Without a mark, UTF-16 text has a NUL byte beside every ASCII letter; UTF-8 has none.
        raise DataError(
            f"{path}, line 1: NUL bytes in the header: the file looks like UTF-16 or UTF-32 "
            "without a byte-order mark. Re-save it as UTF-8 (or as UTF-16 with a byte-order mark)."
        )
    return "utf-8"


def open_text(path: Path, encoding: str):
    """The file as text for `csv`/line reading. UTF-8 keeps undecodable bytes as surrogate escapes
    (one bad row is dropped, not the file); UTF-16/32 are decoded whole, strictly."""
    if encoding.startswith("utf-8"):
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        name = encoding.upper()
        raise DataError(
            f"{path}, line {line}: not valid {name} (the byte-order mark says {name}). "
            f"Re-save the file as UTF-8."
        ) from None
    return io.StringIO(text, newline="")


# -- readers: each yields the column names first, then (row_number, list of values | None) -------


@dataclass
class MultiLineRecords:
    """The CSV records that run over several lines (a quoted field with line breaks), kept to
    check, once the labels are known, that no quote swallowed rows (`check_swallowed_rows`).

    Attributes:
        delimiter: the delimiter the file was read with.
        width: the number of columns of the header.
        lines: the first line number of each such record -> its lines as in the file.
    """

    delimiter: str = ","
    width: int = 0
    lines: dict[int, list[str]] = field(default_factory=dict)

    def check_swallowed_rows(self, path, label_index: int, labels: set[str]) -> None:
        """Refuses a record with two or more lines, before its last, that read as rows of the
        table on their own (the right number of fields, a label used elsewhere): a quote opened
        and closed only lines later, around rows. The last line is left out: it holds the
        quote's end and the record's other fields.

        Raises:
            DataError: naming the record's first line and two of the lines that read as rows.
        """
        for start, lines in self.lines.items():
            rows = [start + i for i, line in enumerate(lines[:-1])
                    if self._reads_as_row(line, label_index, labels)]
            if len(rows) >= 2:
                raise _runaway_error(
                    path, start, len(lines),
                    f"lines {rows[0]} and {rows[1]} inside it read as rows of their own",
                )

    def _reads_as_row(self, line: str, label_index: int, labels: set[str]) -> bool:
        values = _lenient_row(line.replace('"', ""), self.delimiter)
        return (values is not None and len(values) == self.width
                and values[label_index].strip() in labels)


class _Lines:
    """The lines of a text handle, given to `csv.reader`, with those of the current record kept:
    a record's first and last line, and what it swallowed, are known."""

    def __init__(self, handle):
        self.handle = handle
        self.taken: list[str] = []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self.handle)
        self.taken.append(line)
        return line

    def take(self) -> list[str]:
        """The lines read since the last call."""
        taken, self.taken = self.taken, []
        return taken

    def rewind(self) -> None:
        self.handle.seek(0)
        self.taken = []


def csv_rows(path: Path, delimiter: str, encoding: str,
             multi_line: MultiLineRecords | None = None) -> Iterator:
    """The rows of a CSV or TSV file; records that run over several lines go in `multi_line`.

    Quotes are read strictly (a quoted field ends with a quote followed by the delimiter or the
    line's end), so that a quote that is never closed, or closed only where another field's
    quote starts, is found: such a record, over several lines, swallowed the rows in them and
    the file is refused naming its first line. A broken quote on one line drops that line only
    (read as the lenient `csv` reader reads it, when that gives a whole row).

    Raises:
        DataError: a quoted field that runs over several lines and does not end as a row.
    """
    csv.field_size_limit(2**31 - 1)  # long reviews are normal; the default limit is 128 KiB
    multi_line = MultiLineRecords() if multi_line is None else multi_line
    with open_text(path, encoding) as handle:
        lines = _Lines(handle)
        reader, header = _csv_header(path, lines, delimiter)
        _check_header_encoding(path, header, reader.line_num)
        yield [h.strip() for h in header]
        multi_line.delimiter, multi_line.width = reader.dialect.delimiter, len(header)
        end = reader.line_num
        while True:
            try:
                row, error = next(reader), None
            except StopIteration:
                return
            except csv.Error as exc:
                row, error = None, exc
            taken = lines.take()
            start, end = end + 1, end + len(taken)
            if len(taken) > 1 and (error is not None or len(row) != len(header)):
                raise _runaway_error(path, start, len(taken),
                                     _how_it_ends(error, row, len(header), end))
            if error is not None:  # a broken quote on one line: read as the lenient reader does
                row = _lenient_row(taken[0], multi_line.delimiter) if taken else None
            if row is not None and (not row or (len(row) == 1 and not row[0].strip())):
                continue  # blank line
            if row is None or len(row) != len(header):
                yield start, None
                continue
            if len(taken) > 1:
                multi_line.lines[start] = taken
            yield start, row


def _lenient_row(line: str, delimiter: str) -> list[str] | None:
    """One line read by `csv` without `strict` (a stray quote is kept as text); `None` if even
    that fails."""
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return None


def _how_it_ends(error: csv.Error | None, row: list | None, width: int, end: int) -> str:
    """Why a record over several lines is not a row, in words."""
    if error is None:
        return f"it ends on line {end} as a row of {len(row or [])} fields, not {width}"
    if "end of data" in str(error):  # csv's words for the end of the file inside quotes
        return "its quote is never closed"
    return f"a quote on line {end} closes it in the middle of a field"


def _runaway_error(path, start: int, count: int, found: str) -> DataError:
    return DataError(
        f"{path}, line {start}: a quoted field opens here and runs on over {count} lines "
        f"(to line {start + count - 1}): {found}, so the rows in those lines would be read as "
        f"one text. Close the quote on line {start}, or write a quote inside a field as two "
        '(""), then read the file again.'
    )


def _csv_header(path: Path, lines: _Lines, delimiter: str) -> tuple:
    """`(reader, header)`: a `.csv` whose header has no comma but another delimiter is read with
    that one."""
    reader, header = _first_row(path, lines, delimiter)
    other = [d for d in _OTHER_DELIMITERS if d in header[0]]
    if delimiter == "," and len(header) == 1 and other:
        lines.rewind()
        reader, header = _first_row(path, lines, other[0])
    return reader, header


def _first_row(path: Path, lines: _Lines, delimiter: str) -> tuple:
    """`(reader, the first row that is not blank)`; refuses a header that runs over several
    lines (a quote in it that is not closed)."""
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
        while not header or (len(header) == 1 and not header[0].strip()):
            lines.take()
            header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty. Expected a header line, then rows.") from None
    except csv.Error as exc:
        header = _lenient_row(lines.taken[0], delimiter) if len(lines.taken) == 1 else None
        if header is None:
            raise DataError(
                f"{path}, line {reader.line_num - len(lines.taken) + 1}: not a readable "
                f"{delimiter!r}-separated table: a quote in the header is not closed ({exc}). "
                "Close it, or remove it."
            ) from None
    if len(lines.taken) > 1:
        raise DataError(
            f"{path}, line {reader.line_num - len(lines.taken) + 1}: the header runs on over "
            f"{len(lines.taken)} lines: a quote in it is not closed. Close it, or remove it."
        )
    lines.take()
    return reader, header


def _check_header_encoding(path: Path, header: list[str], line: int) -> None:
    """A header that is not UTF-8 means the whole file is in another encoding: say so once,
    rather than name columns in mojibake and drop every row that has an accent."""
    for name in header:
        bad = [c for c in name if "\udc80" <= c <= "\udcff"]  # surrogate-escaped bytes
        if bad:
            raise DataError(
                f"{path}, line {line}: the header is not valid UTF-8 (byte 0x{ord(bad[0]) - 0xDC00:x} "
                "in a column name): the file is in another encoding, such as Latin-1 or "
                "Windows-1252. Re-save it as UTF-8."
            )


# JSON's white space; the decoder that reads one value at a time.
_JSON_SPACE = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()
# Line breaks as a text editor counts them (and `csv`, reading with newline="").
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _json_lines(path: Path, encoding: str) -> Iterator[tuple[int, str | None]]:
    """`(line number, text)` of the non-blank lines; text `None` for a line that is not UTF-8.
    A line ends at LF, CRLF or CR, as in the CSV reader (JSON strings hold no raw line break)."""
    if not encoding.startswith("utf-8"):
        with open_text(path, encoding) as handle:
            for number, line in enumerate(_LINE_BREAK.split(handle.read()), start=1):
                if line.strip():
                    yield number, line
        return
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle.read().splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield number, None


def _objects(text: str) -> Iterator[dict]:
    """The JSON objects on one line: one, or several written one after another.

    Raises:
        ValueError: at the first value that is not JSON, or not an object.
    """
    index = _JSON_SPACE.match(text).end()
    while index < len(text):
        value, index = _DECODER.raw_decode(text, index)
        if not isinstance(value, dict):
            raise ValueError(f"a JSON {type(value).__name__}")
        yield value
        index = _JSON_SPACE.match(text, index).end()


def jsonl_rows(path: Path, encoding: str) -> Iterator:
    """JSON Lines (or, when the file starts with `[`, one JSON array of objects). A line with
    several objects gives a row for each; after a value that is not an object, the rest of the
    line is one malformed row."""
    with open_text(path, encoding) as handle:
        head = handle.read(4096).lstrip()
    if head.startswith("["):
        yield from _json_array_rows(path, encoding)
        return
    columns: list[str] = []
    records: list[tuple[int, Any]] = []
    first_error = None
    for number, line in _json_lines(path, encoding):
        if line is None:
            records.append((number, "encoding"))
            continue
        try:
            for record in _objects(line):
                columns.extend(key for key in record if key not in columns)
                records.append((number, record))
        except ValueError as exc:
            first_error = first_error or (number, str(exc))
            records.append((number, None))
    if not columns and first_error:
        raise DataError(
            f"{path}, line {first_error[0]}: not a JSON object ({first_error[1]}). JSON Lines has "
            'one object per line, such as {"text": "a fine film", "label": "pos"}.'
        )
    yield columns
    for number, record in records:
        if record is None or record == "encoding":
            yield number, record
        else:
            yield number, [record.get(c) for c in columns]


def _json_array_rows(path: Path, encoding: str) -> Iterator:
    """The objects of one JSON array, each numbered by the line it starts on."""
    with open_text(path, encoding) as handle:
        text = handle.read()
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc}). Use JSON Lines: one object per line."
        ) from None
    records = [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
    columns: list[str] = []
    for record in records:
        columns.extend(key for key in record if key not in columns)
    yield columns
    for number, record in zip(_item_lines(text), data if isinstance(data, list) else []):
        yield number, ([record.get(c) for c in columns] if isinstance(record, dict) else None)


def _item_lines(text: str) -> list[int]:
    """The line on which each item of the JSON array `text` (valid JSON) starts."""
    breaks = [match.end() for match in _LINE_BREAK.finditer(text)]
    starts = []
    index = _JSON_SPACE.match(text, text.index("[") + 1).end()
    while text[index] != "]":
        starts.append(index)
        index = _JSON_SPACE.match(text, _DECODER.raw_decode(text, index)[1]).end()
        index = _JSON_SPACE.match(text, index + (text[index] == ",")).end()
    return [bisect.bisect_right(breaks, start) + 1 for start in starts]


def parquet_rows(path: Path, types: dict) -> Iterator:
    """As the other readers; fills `types` with each column's Arrow type."""
    import pyarrow.parquet as pq

    try:  # a damaged file can fail anywhere: at the footer, a column's name, its values
        table = pq.read_table(path)
        columns = [str(c) for c in table.column_names]
        column_types = {name: table.schema.field(i).type for i, name in enumerate(columns)}
        data = [table.column(i).to_pylist() for i in range(table.num_columns)]
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, UnicodeError...
        why = " ".join(str(exc).split())  # pyarrow's messages run over several lines
        raise DataError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {why})."
        ) from None
    types.update(column_types)
    yield columns
    for number in range(table.num_rows):
        yield number + 1, [column[number] for column in data]


def check_not_empty(path: Path, fmt: str) -> None:
    if fmt == "parquet" or path.read_bytes()[:65536].strip():
        return
    expected = ("one JSON object per line" if fmt == "jsonl" else
                "a header line, then rows")
    raise DataError(f"{path}: the file is empty. Expected {expected}.")
