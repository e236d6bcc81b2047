"""Reading labelled text the way users keep it: CSV, TSV, JSON Lines or Parquet tables.

`read_text_table` returns the usable rows and a record of every row it dropped (encoding problems,
empty or missing text, missing labels, malformed rows, lists where text should be) with the line
numbers, so a report can say exactly what was left out. Splitting is `transferkit.data.labels.stratified_split`, as for images.

Lines are counted as a text editor counts them (the header is line 1); Parquet tables have no lines,
so their rows are numbered from 1.

Text files are UTF-8; a byte-order mark says otherwise (UTF-16 or UTF-32, as Excel's "Unicode
text" saves them) and is followed. A file in another encoding is refused when its header shows it
(NUL bytes: UTF-16 without a mark; undecodable bytes: Latin-1 or the like); further down, a row
that is not UTF-8 is dropped with its line number. A CSV whose header has no comma but a `;`, `|` or tab is read
with that delimiter (Excel in many European locales writes `;`). A missing value written out as
text (`nan`, as pandas writes NaN with `astype(str)`) is missing, like a blank cell. Labels that are
decimal numbers are compared as numbers: `1.0` and `1` are the class `"1"` (`renamed_labels`).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.errors import DataError, InputError

__all__ = [
    "LABEL_COLUMN_CANDIDATES",
    "TABLE_FORMATS",
    "TEXT_COLUMN_CANDIDATES",
    "TextTable",
    "as_label",
    "read_text_lines",
    "read_text_table",
    "text_key",
]

# Column names guessed when the user names none, in order of preference (case-insensitive).
TEXT_COLUMN_CANDIDATES = ("text", "sentence", "review")
LABEL_COLUMN_CANDIDATES = ("label", "sentiment")

# suffix -> format
TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

# Why a row was dropped -> words for the report.
DROP_REASONS = {
    "encoding": "not valid UTF-8 (re-save the file as UTF-8)",
    "empty_text": "empty or missing text",  # blank, whitespace, None, NaN or "nan"
    "missing_label": "missing label",
    "malformed": "malformed row",
    "not_text": "text or label is a list or an object, not a string or a number",
}

# Byte-order marks, longest first (the UTF-32-LE mark starts with the UTF-16-LE one) -> the codec,
# which removes the mark itself.
BYTE_ORDER_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# A missing value written out as text (pandas writes NaN as "nan" after `astype(str)`).
_MISSING = "nan"
# A decimal label: sign, whole part, fraction without its trailing zeros.
_DECIMAL = re.compile(r"([+-]?)(\d+)\.(\d*?)0*")
# Delimiters tried, in this order, when a CSV header has no comma.
_OTHER_DELIMITERS = (";", "\t", "|")


@dataclass
class TextTable:
    """The usable rows of a text table and what was dropped.

    Attributes:
        texts: the text of each kept row.
        labels: the label of each kept row as a string (`None` when the table was read without
            labels).
        row_numbers: where each kept row starts in the file (line number, or row number for
            Parquet).
        text_column: the column the texts came from.
        label_column: the column the labels came from (`None` without labels).
        dropped: reason (a key of `DROP_REASONS`) -> the line/row numbers dropped for it.
        path: the file read.
        unit: `"line"` for text files, `"row"` for Parquet.
        encoding: the codec the file was read with (`"utf-8"`, `"utf-8-sig"`, `"utf-16"`,
            `"utf-32"`); `None` for Parquet.
        renamed_labels: labels as written -> the class they were read as, for decimal labels
            written another way (`"1.0"` -> `"1"`).
        splits: the split of each kept row, once a training run has split them (`None` before).
    """

    texts: list[str]
    labels: list[str] | None
    row_numbers: list[int]
    text_column: str
    label_column: str | None
    dropped: dict[str, list[int]] = field(default_factory=dict)
    path: str = ""
    unit: str = "line"
    encoding: str | None = None
    renamed_labels: dict[str, str] = field(default_factory=dict)
    splits: list[str] | None = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def num_dropped(self) -> int:
        """How many rows were dropped, all reasons together."""
        return sum(len(rows) for rows in self.dropped.values())

    def drop_summary(self, max_rows: int = 5) -> dict:
        """Plain data for reports: per reason, the count and the first `max_rows` row numbers."""
        return {
            reason: {
                "count": len(rows),
                "description": DROP_REASONS.get(reason, reason),
                f"first_{self.unit}s": rows[:max_rows],
            }
            for reason, rows in self.dropped.items()
            if rows
        }

    def describe_renamed_labels(self) -> str:
        """`Numeric labels read as the same class: '1.0' as '1', ...`, or `""`."""
        if not self.renamed_labels:
            return ""
        return "Numeric labels read as the same class: " + self.renamed_label_spellings()

    def renamed_label_spellings(self) -> str:
        """`'1.0' and '1.00' as '1', '0.0' as '0'`: each class and how it was written."""
        spellings: dict[str, list[str]] = {}
        for written, label in self.renamed_labels.items():
            spellings.setdefault(label, []).append(written)
        return ", ".join(" and ".join(map(repr, written)) + f" as {label!r}"
                         for label, written in spellings.items())

    def duplicate_groups(self, splits=None) -> list[dict]:
        """Rows whose texts are equal after `text_key` (stripped, case-folded).

        Args:
            splits: the split of each kept row (same order as `texts`). Default `None`: the
                table's `splits`, if set.

        Returns:
            One dict per group of two or more rows, in order of first appearance: `text` (the
            first one, cut to 100 characters), `lines` (or `rows` for Parquet), `labels` (when
            read with labels) and `splits` (when given).
        """
        splits = self.splits if splits is None else splits
        groups: dict[str, list[int]] = {}
        for i, text in enumerate(self.texts):
            groups.setdefault(text_key(text), []).append(i)
        found = []
        for members in groups.values():
            if len(members) < 2:
                continue
            group: dict[str, Any] = {"text": self.texts[members[0]].strip()[:100],
                                     f"{self.unit}s": [self.row_numbers[i] for i in members]}
            if self.labels is not None:
                group["labels"] = [self.labels[i] for i in members]
            if splits is not None:
                group["splits"] = [str(splits[i]) for i in members]
            found.append(group)
        return found

    def conflicting_groups(self, groups: list[dict] | None = None) -> list[dict]:
        """The `duplicate_groups` (or `groups`, already found) whose copies carry different
        labels."""
        groups = self.duplicate_groups() if groups is None else groups
        return [g for g in groups if len(set(g.get("labels", ()))) > 1]

    def describe_conflict_rows(self, max_groups: int = 3,
                               conflicts: list[dict] | None = None) -> str:
        """`'a fine film' (lines 2: pos, 9: neg); ...` for the first `max_groups` conflicts
        (`conflicts`, when already found)."""
        conflicts = self.conflicting_groups() if conflicts is None else conflicts
        return "; ".join(
            f"{g['text'][:40]!r} ({self.unit}s "
            + ", ".join(f"{n}: {label}" for n, label in zip(g[f"{self.unit}s"], g["labels"]))
            + ")" for g in conflicts[:max_groups]
        ) + (f"; and {len(conflicts) - max_groups} more" if len(conflicts) > max_groups else "")

    def describe_conflicts(self, max_groups: int = 3) -> str:
        """`2 texts appear with different labels: ...`, or `""` when no duplicate text does."""
        conflicts = self.conflicting_groups()
        count = len(conflicts)
        if not count:
            return ""
        noun = "text appears" if count == 1 else "texts appear"
        rows = self.describe_conflict_rows(max_groups, conflicts)
        return (f"{count} {noun} with different labels (the same text once stripped and "
                f"case-folded): {rows}. Kept as they are: "
                "correct the labels, or remove the wrong copies")

    def describe_drops(self, max_rows: int = 5) -> str:
        """One line per reason, e.g. `3 rows dropped: empty or missing text (lines 4, 9, 12)`."""
        lines = []
        for reason, rows in self.dropped.items():
            if not rows:
                continue
            shown = ", ".join(str(r) for r in rows[:max_rows]) + (
                ", ..." if len(rows) > max_rows else ""
            )
            noun = "row" if len(rows) == 1 else "rows"
            lines.append(
                f"{len(rows)} {noun} dropped: {DROP_REASONS.get(reason, reason)} "
                f"({self.unit}s {shown})"
            )
        return "\n".join(lines)


def _table_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in TABLE_FORMATS:
            return TABLE_FORMATS[suffix]
    known = ", ".join(sorted(TABLE_FORMATS))
    raise InputError(
        f"{path}: unknown table format {path.suffix!r}. Use a file ending in one of {known} "
        "(CSV, TSV, JSON Lines or Parquet)."
    )


def text_key(text: Any) -> str:
    """How texts are compared for exact duplicates: stripped and case-folded."""
    return str(text).strip().casefold()


def _check_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes of undecodable bytes, or lone surrogates
        return False
    return True


def _sniff_encoding(path: Path) -> str:
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


def _open_text(path: Path, encoding: str):
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


def read_text_lines(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """The lines of a text file, one text (or path) a line, without their line endings; and the
    (1-based) numbers of the lines that are not valid UTF-8. A byte-order mark is followed, as
    for tables; an undecodable UTF-8 line is kept with surrogate escapes (a valid file name)."""
    path = Path(path)
    with _open_text(path, _sniff_encoding(path)) as handle:
        lines = [line.rstrip("\r\n") for line in handle]
    return lines, [number for number, line in enumerate(lines, 1) if not _check_utf8(line)]


# -- readers: each yields the column names first, then (row_number, list of values | None) -------


def _csv_rows(path: Path, delimiter: str, encoding: str) -> Iterator:
    csv.field_size_limit(2**31 - 1)  # long reviews are normal; the default limit is 128 KiB
    with _open_text(path, encoding) as handle:
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
        with _open_text(path, encoding) as handle:
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


def _jsonl_rows(path: Path, encoding: str) -> Iterator:
    with _open_text(path, encoding) as handle:
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
        with _open_text(path, encoding) as handle:
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


def _parquet_rows(path: Path, types: dict) -> Iterator:
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


def _guess_column(
    columns: list[str], candidates: tuple[str, ...], what: str, argument: str, path
) -> str:
    lowered = {c.lower(): c for c in columns}
    found = [lowered[c] for c in candidates if c in lowered]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(repr(c) for c in columns) or "none"
    if found:
        raise DataError(
            f"{path}: several columns could hold the {what} ({', '.join(map(repr, found))}). "
            f"Choose one with `{argument}`. Columns: {listed}."
        )
    raise DataError(
        f"{path}: no {what} column found (looked for {', '.join(candidates)}). Choose one with "
        f"`{argument}`. Columns: {listed}."
    )


def _check_column(columns: list[str], name: str, what: str, argument: str, path) -> str:
    if name in columns:
        return name
    lowered = {c.lower(): c for c in columns}
    if name.lower() in lowered:
        return lowered[name.lower()]
    listed = ", ".join(repr(c) for c in columns) or "none"
    raise DataError(
        f"{path}: no column named {name!r} for the {what}. Pass one of the columns as "
        f"`{argument}`: {listed}."
    )


def _check_parquet_types(path: Path, types: dict, columns: list) -> None:
    """Refuses a Parquet column of lists, structs or maps: its values are not texts or labels."""
    import pyarrow as pa

    for name in columns:
        if name is not None and pa.types.is_nested(types[name]):
            argument = "text_column" if name == columns[0] else "label_column"
            raise DataError(
                f"{path}: column {name!r} holds {types[name]} values, not text. Choose a column "
                f"of strings with `{argument}`, or join the values into one string per row."
            )


class _NotText(Exception):
    """A value that is a list or an object (JSON), not a string or a number."""


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, dict, tuple)):
        raise _NotText
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 from a column with gaps is the label "1"
    return str(value)


def _missing(value: str | None) -> bool:
    """Blank, whitespace, or a missing value written out as text ("nan", "NaN")."""
    return value is None or not value.strip() or value.strip().casefold() == _MISSING


def as_label(label: str) -> str:
    """A decimal label as the number it is: "1.0" -> "1", "2.50" -> "2.5", "-0.0" -> "0".
    Done on the text, not through float, so long numbers keep every digit; "01" and "+1" (no
    decimal point) are left as written."""
    match = _DECIMAL.fullmatch(label)
    if match is None:
        return label
    sign, whole, fraction = match.groups()
    number = whole + ("." + fraction if fraction else "")
    return ("-" if sign == "-" and (whole + fraction).strip("0") else "") + number


def read_text_table(
    path: str | os.PathLike,
    text_column: str | None = None,
    label_column: str | None = None,
    require_labels: bool = True,
) -> TextTable:
    """Reads texts (and labels) from a CSV, TSV, JSON Lines or Parquet file.

    Rows that cannot be used are dropped and recorded in `TextTable.dropped` with their line
    numbers: text or label that is not valid UTF-8, empty or missing text (blank, or `nan`), a
    missing label (blank, or `nan`), a malformed row (wrong number of fields, a line that is not a
    JSON object), or a text or label that is a JSON list or object. Decimal labels are read as
    numbers (`"1.0"` is the class `"1"`), recorded in `TextTable.renamed_labels`.

    Args:
        path: the table. The format comes from the suffix: `.csv`, `.tsv`/`.tab`,
            `.jsonl`/`.ndjson`/`.json` (JSON Lines, or one JSON array of objects), `.parquet`/`.pq`.
            Text files are UTF-8, or UTF-16/UTF-32 with a byte-order mark; a `.csv` may be
            separated by `;`, `|` or tabs instead of commas.
        text_column: the column with the texts. Default `None`: the one column named `text`,
            `sentence` or `review` (any case).
        label_column: the column with the labels. Default `None`: the one column named `label` or
            `sentiment` (any case).
        require_labels: read labels too. Default `True`; `False` reads texts only (to predict).

    Returns:
        A `TextTable`.

    Raises:
        InputError: the path is missing or has an unknown suffix.
        DataError: the file is empty or unreadable (UTF-16 without a byte-order mark, a Parquet
            column of lists, no line that is a JSON object), a column cannot be found (the
            message lists the columns), or no usable row is left.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: no such file. Pass a CSV, TSV, JSON Lines or Parquet file of texts and "
            "labels."
        )
    fmt = _table_format(path)
    _check_not_empty(path, fmt)
    encoding = None if fmt == "parquet" else _sniff_encoding(path)
    types: dict = {}
    readers = {
        "csv": lambda: _csv_rows(path, ",", encoding),
        "tsv": lambda: _csv_rows(path, "\t", encoding),
        "jsonl": lambda: _jsonl_rows(path, encoding),
        "parquet": lambda: _parquet_rows(path, types),
    }
    rows = readers[fmt]()
    columns = next(rows)
    text_column = _find_column(columns, text_column, TEXT_COLUMN_CANDIDATES, "texts", path)
    if require_labels:
        label_column = _find_column(columns, label_column, LABEL_COLUMN_CANDIDATES, "labels", path)
    else:
        label_column = None
    if types:
        _check_parquet_types(path, types, [text_column, label_column])
    table = TextTable(
        texts=[],
        labels=[] if label_column is not None else None,
        row_numbers=[],
        text_column=text_column,
        label_column=label_column,
        path=str(path),
        unit="row" if fmt == "parquet" else "line",
        encoding=encoding,
    )
    _keep_usable_rows(table, rows, columns)
    if not table.texts:
        if table.num_dropped:
            why = table.describe_drops().replace("\n", "; ")
            raise DataError(f"{path}: no usable rows. {why}.")
        raise DataError(f"{path}: no usable rows: the table has a header but no rows.")
    return table


def _check_not_empty(path: Path, fmt: str) -> None:
    if fmt == "parquet" or path.read_bytes()[:65536].strip():
        return
    expected = ("one JSON object per line" if fmt == "jsonl" else
                "a header line, then rows")
    raise DataError(f"{path}: the file is empty. Expected {expected}.")


def _find_column(columns, name, candidates, what: str, path) -> str:
    argument = "text_column" if what == "texts" else "label_column"
    if name is None:
        return _guess_column(columns, candidates, what, argument, path)
    return _check_column(columns, name, what, argument, path)


def _keep_usable_rows(table: TextTable, rows, columns: list[str]) -> None:
    """Appends the usable rows to `table` and records the others in `table.dropped`."""
    text_index = columns.index(table.text_column)
    label_index = None if table.label_column is None else columns.index(table.label_column)
    dropped: dict[str, list[int]] = {reason: [] for reason in DROP_REASONS}
    for number, values in rows:
        if values is None or values == "encoding":
            dropped["malformed" if values is None else "encoding"].append(number)
            continue
        try:
            text = _as_text(values[text_index])
            label = _as_text(values[label_index]) if label_index is not None else None
        except _NotText:
            dropped["not_text"].append(number)
            continue
        if (text is not None and not _check_utf8(text)) or (
            label is not None and not _check_utf8(label)
        ):
            dropped["encoding"].append(number)
            continue
        if _missing(text):
            dropped["empty_text"].append(number)
            continue
        if label_index is not None:
            if _missing(label):
                dropped["missing_label"].append(number)
                continue
            written = label.strip()
            label = as_label(written)
            if label != written:
                table.renamed_labels[written] = label
            table.labels.append(label)
        table.texts.append(text)
        table.row_numbers.append(number)
    table.dropped = {reason: numbers for reason, numbers in dropped.items() if numbers}
