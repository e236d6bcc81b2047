"""Reading labelled text the way users keep it: CSV, TSV, JSON Lines or Parquet tables.

`read_text_table` returns the usable rows and a record of every row it dropped (encoding problems,
empty or missing text, missing labels, malformed rows) with the line numbers, so a report can say
exactly what was left out. Splitting is `transferkit.data.labels.stratified_split`, as for images.

Lines are counted as a text editor counts them (the header is line 1); Parquet tables have no lines,
so their rows are numbered from 1.
"""

from __future__ import annotations

import csv
import json
import math
import os
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
    "read_text_table",
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
    "encoding": "not valid UTF-8",
    "empty_text": "empty or missing text",
    "missing_label": "missing label",
    "malformed": "malformed row",
}


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
    """

    texts: list[str]
    labels: list[str] | None
    row_numbers: list[int]
    text_column: str
    label_column: str | None
    dropped: dict[str, list[int]] = field(default_factory=dict)
    path: str = ""
    unit: str = "line"

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


def _check_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes of undecodable bytes, or lone surrogates
        return False
    return True


# -- readers: each yields the column names first, then (row_number, list of values | None) -------


def _csv_rows(path: Path, delimiter: str) -> Iterator:
    csv.field_size_limit(2**31 - 1)  # long reviews are normal; the default limit is 128 KiB
    # surrogateescape keeps undecodable bytes as markers, so one bad row is dropped, not the file.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(
                f"{path}: the file is empty. Expected a header line, then rows."
            ) from None
        except csv.Error as exc:
            raise DataError(
                f"{path}, line 1: not a readable {delimiter!r}-separated table ({exc})."
            ) from None
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


def _jsonl_rows(path: Path) -> Iterator:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith(b"["):
        yield from _json_array_rows(path)
        return
    columns: list[str] = []
    records: list[tuple[int, Any]] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                records.append((number, "encoding"))
                continue
            try:
                record = json.loads(line)
            except ValueError:
                records.append((number, None))
                continue
            if not isinstance(record, dict):
                records.append((number, None))
                continue
            for key in record:
                if key not in columns:
                    columns.append(key)
            records.append((number, record))
    yield columns
    for number, record in records:
        if record is None or record == "encoding":
            yield number, record
        else:
            yield number, [record.get(c) for c in columns]


def _json_array_rows(path: Path) -> Iterator:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc}). Re-save the file as UTF-8.") from None
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


def _parquet_rows(path: Path) -> Iterator:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        raise DataError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})."
        ) from None
    columns = [str(c) for c in table.column_names]
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


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 from a column with gaps is the label "1"
    return str(value)


def read_text_table(
    path: str | os.PathLike,
    text_column: str | None = None,
    label_column: str | None = None,
    require_labels: bool = True,
) -> TextTable:
    """Reads texts (and labels) from a CSV, TSV, JSON Lines or Parquet file.

    Rows that cannot be used are dropped and recorded in `TextTable.dropped` with their line
    numbers: text or label that is not valid UTF-8, empty or missing text, a missing label, or a
    malformed row (wrong number of fields, a line that is not a JSON object).

    Args:
        path: the table. The format comes from the suffix: `.csv`, `.tsv`/`.tab`,
            `.jsonl`/`.ndjson`/`.json` (JSON Lines, or one JSON array of objects), `.parquet`/`.pq`.
        text_column: the column with the texts. Default `None`: the one column named `text`,
            `sentence` or `review` (any case).
        label_column: the column with the labels. Default `None`: the one column named `label` or
            `sentiment` (any case).
        require_labels: read labels too. Default `True`; `False` reads texts only (to predict).

    Returns:
        A `TextTable`.

    Raises:
        InputError: the path is missing or has an unknown suffix.
        DataError: the file is unreadable, a column cannot be found (the message lists the
            columns), or no usable row is left.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: no such file. Pass a CSV, TSV, JSON Lines or Parquet file of texts and "
            "labels."
        )
    fmt = _table_format(path)
    readers = {
        "csv": lambda: _csv_rows(path, ","),
        "tsv": lambda: _csv_rows(path, "\t"),
        "jsonl": lambda: _jsonl_rows(path),
        "parquet": lambda: _parquet_rows(path),
    }
    rows = readers[fmt]()
    columns = next(rows)
    text_column = _find_column(columns, text_column, TEXT_COLUMN_CANDIDATES, "texts", path)
    if require_labels:
        label_column = _find_column(columns, label_column, LABEL_COLUMN_CANDIDATES, "labels", path)
    else:
        label_column = None
    table = TextTable(
        texts=[],
        labels=[] if label_column is not None else None,
        row_numbers=[],
        text_column=text_column,
        label_column=label_column,
        path=str(path),
        unit="row" if fmt == "parquet" else "line",
    )
    _keep_usable_rows(table, rows, columns)
    if not table.texts:
        why = table.describe_drops() or "the table has no rows"
        raise DataError(f"{path}: no usable rows. {why}.")
    return table


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
        text = _as_text(values[text_index])
        label = _as_text(values[label_index]) if label_index is not None else None
        if (text is not None and not _check_utf8(text)) or (
            label is not None and not _check_utf8(label)
        ):
            dropped["encoding"].append(number)
            continue
        if text is None or not text.strip():
            dropped["empty_text"].append(number)
            continue
        if label_index is not None:
            label = label.strip() if label is not None else ""
            if not label:
                dropped["missing_label"].append(number)
                continue
            table.labels.append(label)
        table.texts.append(text)
        table.row_numbers.append(number)
    table.dropped = {reason: numbers for reason, numbers in dropped.items() if numbers}
