"""Reading labelled text the way users keep it: CSV, TSV, JSON Lines or Parquet tables.

`read_text_table` returns the usable rows and a record of every row it dropped (encoding problems,
empty or missing text, missing labels, malformed rows) with the line numbers, so a report can say
exactly what was left out. `stratified_split` makes seeded, stratified train/validation/test splits
and refuses labels that cannot be split, naming the classes at fault.

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

import numpy as np

from transferkit.errors import DataError, InputError

__all__ = [
    "LABEL_COLUMN_CANDIDATES",
    "TABLE_FORMATS",
    "TEXT_COLUMN_CANDIDATES",
    "TextTable",
    "read_text_table",
    "sort_class_names",
    "stratified_split",
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
    columns: list[str], candidates: tuple[str, ...], what: str, flag: str, path
) -> str:
    lowered = {c.lower(): c for c in columns}
    found = [lowered[c] for c in candidates if c in lowered]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(repr(c) for c in columns) or "none"
    if found:
        raise DataError(
            f"{path}: several columns could hold the {what} ({', '.join(map(repr, found))}). "
            f"Choose one with {flag} NAME. Columns: {listed}."
        )
    raise DataError(
        f"{path}: no {what} column found (looked for {', '.join(candidates)}). Choose one with "
        f"{flag} NAME. Columns: {listed}."
    )


def _check_column(columns: list[str], name: str, what: str, flag: str, path) -> str:
    if name in columns:
        return name
    lowered = {c.lower(): c for c in columns}
    if name.lower() in lowered:
        return lowered[name.lower()]
    listed = ", ".join(repr(c) for c in columns) or "none"
    raise DataError(
        f"{path}: no column named {name!r} for the {what}. Pass one of the columns to {flag}: "
        f"{listed}."
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
    if fmt == "csv":
        rows = _csv_rows(path, ",")
    elif fmt == "tsv":
        rows = _csv_rows(path, "\t")
    elif fmt == "jsonl":
        rows = _jsonl_rows(path)
    else:
        rows = _parquet_rows(path)
    columns = next(rows)
    if text_column is None:
        text_column = _guess_column(columns, TEXT_COLUMN_CANDIDATES, "texts", "--text-column", path)
    else:
        text_column = _check_column(columns, text_column, "texts", "--text-column", path)
    text_index = columns.index(text_column)
    label_index = None
    if require_labels:
        if label_column is None:
            label_column = _guess_column(
                columns, LABEL_COLUMN_CANDIDATES, "labels", "--label-column", path
            )
        else:
            label_column = _check_column(columns, label_column, "labels", "--label-column", path)
        label_index = columns.index(label_column)
    else:
        label_column = None

    texts: list[str] = []
    labels: list[str] = []
    numbers: list[int] = []
    dropped: dict[str, list[int]] = {reason: [] for reason in DROP_REASONS}
    for number, values in rows:
        if values is None:
            dropped["malformed"].append(number)
            continue
        if values == "encoding":
            dropped["encoding"].append(number)
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
            labels.append(label)
        texts.append(text)
        numbers.append(number)
    table = TextTable(
        texts=texts,
        labels=labels if label_index is not None else None,
        row_numbers=numbers,
        text_column=text_column,
        label_column=label_column,
        dropped={reason: rows for reason, rows in dropped.items() if rows},
        path=str(path),
        unit="row" if fmt == "parquet" else "line",
    )
    if not texts:
        why = table.describe_drops() or "the table has no rows"
        raise DataError(f"{path}: no usable rows. {why}.")
    return table


def sort_class_names(labels) -> list[str]:
    """The distinct labels in a stable order: numerically if all are numbers, else alphabetically.

    Args:
        labels: label strings.

    Returns:
        The class names; position `i` is the model's output `i`.
    """
    names = sorted(set(labels))
    try:
        return sorted(names, key=lambda n: (float(n), n))
    except ValueError:
        return names


def _check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise InputError(
            f"`{name}` must be a number between 0 and 1 (exclusive). Received: {name}={value!r}."
        )
    return float(value)


def stratified_split(
    labels,
    test_size: float = 0.2,
    validation_size: float = 0.1,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded, stratified train/validation/test indices: every class is in every split.

    Each class is shuffled with `seed` and cut so that about `test_size` of it goes to the test
    split and `validation_size` to the validation split (at least one example each), the rest to
    training.

    Args:
        labels: one label per example.
        test_size: share of each class for the test split. Default `0.2`.
        validation_size: share of each class for the validation split. Default `0.1`.
        seed: the shuffling seed. Default `0`.

    Returns:
        `{"train": idx, "validation": idx, "test": idx}`, sorted integer index arrays.

    Raises:
        InputError: the sizes are not in (0, 1) or add up to 1 or more.
        DataError: fewer than two classes, or a class with fewer than 3 examples (the message names
            each such class and its count).
    """
    test_size = _check_fraction(test_size, "test_size")
    validation_size = _check_fraction(validation_size, "validation_size")
    if test_size + validation_size >= 1:
        raise InputError(
            "`test_size + validation_size` must be below 1 to leave examples for training. "
            f"Received: test_size={test_size}, validation_size={validation_size}."
        )
    labels = np.asarray([str(label) for label in labels])
    classes, counts = np.unique(labels, return_counts=True)
    classes = [str(c) for c in classes]  # np.str_ would show as np.str_('x') in messages
    counts = [int(n) for n in counts]
    if len(classes) < 2:
        only = f"({classes[0]!r}) " if len(classes) else ""
        raise DataError(
            f"The label column has only one class {only}after dropping unusable rows; a "
            "classifier needs at least two. Check --label-column and the labels in the file."
        )
    rare = [(c, n) for c, n in zip(classes, counts) if n < 3]
    if rare:
        listed = ", ".join(f"{c!r} ({n} example{'s' if n > 1 else ''})" for c, n in rare)
        raise DataError(
            f"Classes too rare to split: {listed}. Each class needs at least 3 examples (one each "
            "for training, validation and test). Add examples, or merge or remove these classes."
        )
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
    for name in classes:
        indices = np.flatnonzero(labels == name)
        rng.shuffle(indices)
        n = len(indices)
        n_test = max(1, round(n * test_size))
        n_val = max(1, round(n * validation_size))
        while n - n_test - n_val < 1:  # tiny classes: keep one for training
            if n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
        parts["test"].append(indices[:n_test])
        parts["validation"].append(indices[n_test : n_test + n_val])
        parts["train"].append(indices[n_test + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
