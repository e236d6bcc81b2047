"""Text table files as raw rows: the encoding, and one reader for each format.

Each reader yields the column names first, then `(line number, values)` for every record: a list
of values, `None` for a malformed record, or `"encoding"` for one that is not valid UTF-8.
`transferkit.data.text.read_text_table` turns these into a `TextTable`.

Text files are UTF-8; a byte-order mark says otherwise (UTF-16 or UTF-32, as Excel's "Unicode
text" saves them) and is followed. A file in another encoding is refused when its header shows it
(NUL bytes: UTF-16 without a mark; undecodable bytes: Latin-1 or the like); further down, a row
that is not UTF-8 is returned as `"encoding"`. A CSV whose header has no comma but a `;`, `|` or
tab is read with that delimiter (Excel in many European locales writes `;`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transferkit.errors import DataError

__all__ = ["BYTE_ORDER_MARKS", "check_not_empty", "csv_rows", "jsonl_rows", "open_text",
           "parquet_rows", "sniff_encoding"]

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


def csv_rows(path: Path, delimiter: str, encoding: str) -> Iterator:
    csv.field_size_limit(2**31 - 1)  # long reviews are normal; the default limit is 128 KiB
    with open_text(path, encoding) as handle:
        reader, header = _csv_header(path, handle, delimiter)
        _check_header_encoding(path, header, reader.line_num)
        yield [h.strip() for h in header]
        previous_end = reader.line_num
        while True:
            start = previous_end + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error:
                # A NUL byte or a broken quote: skip the line and carry on with the next one.
                yield start, None
                previous_end = reader.line_num
                continue
            previous_end = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                yield start, None
                continue
            yield start, row


def _csv_header(path: Path, handle, delimiter: str) -> tuple:
    """`(reader, header)`: a `.csv` whose header has no comma but another delimiter is read with
    that one."""
    reader, header = _first_row(path, handle, delimiter)
    other = [d for d in _OTHER_DELIMITERS if d in header[0]]
    if delimiter == "," and len(header) == 1 and other:
        handle.seek(0)
        reader, header = _first_row(path, handle, other[0])
    return reader, header


def _first_row(path: Path, handle, delimiter: str) -> tuple:
    """`(reader, the first row that is not blank)`."""
    reader = csv.reader(handle, delimiter=delimiter)
    try:
        header = next(reader)
        while not header or (len(header) == 1 and not header[0].strip()):
            header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty. Expected a header line, then rows.") from None
    except csv.Error as exc:
        raise DataError(
            f"{path}, line {reader.line_num}: not a readable {delimiter!r}-separated table "
            f"({exc})."
        ) from None
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


def _json_lines(path: Path, encoding: str) -> Iterator[tuple[int, str | None]]:
    """`(line number, text)` of the non-blank lines; text `None` for a line that is not UTF-8."""
    if not encoding.startswith("utf-8"):
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle.read().split("\n"), start=1):
                if line.strip():
                    yield number, line
        return
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield number, None


def jsonl_rows(path: Path, encoding: str) -> Iterator:
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
            record = json.loads(line)
        except ValueError as exc:
            first_error = first_error or (number, str(exc))
            records.append((number, None))
            continue
        if not isinstance(record, dict):
            first_error = first_error or (number, f"a JSON {type(record).__name__}")
            records.append((number, None))
            continue
        for key in record:
            if key not in columns:
                columns.append(key)
        records.append((number, record))
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
    try:
        with open_text(path, encoding) as handle:
            data = json.loads(handle.read())
    except ValueError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc}). Use JSON Lines: one object per line."
        ) from None
    records = [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []
    columns: list[str] = []
    for record in records:
        for key in record:
            if key not in columns:
                columns.append(key)
    yield columns
    for number, record in enumerate(data, start=1):
        yield number, ([record.get(c) for c in columns] if isinstance(record, dict) else None)


def parquet_rows(path: Path, types: dict) -> Iterator:
    """As the other readers; fills `types` with each column's Arrow type."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        why = " ".join(str(exc).split())  # pyarrow's messages run over several lines
        raise DataError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {why})."
        ) from None
    columns = [str(c) for c in table.column_names]
    types.update({name: table.schema.field(i).type for i, name in enumerate(columns)})
    yield columns
    data = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for number in range(table.num_rows):
        yield number + 1, [column[number] for column in data]


def check_not_empty(path: Path, fmt: str) -> None:
    if fmt == "parquet" or path.read_bytes()[:65536].strip():
        return
    expected = ("one JSON object per line" if fmt == "jsonl" else
                "a header line, then rows")
    raise DataError(f"{path}: the file is empty. Expected {expected}.")
