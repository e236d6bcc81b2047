"""Reading labelled text the way users keep it: CSV, TSV, JSON Lines or Parquet tables.

`read_text_table` returns the usable rows and a record of every row it dropped (encoding problems,
empty or missing text, missing labels, malformed rows, lists where text should be) with the line
numbers, so a report can say exactly what was left out. Splitting is
`transferkit.data.labels.stratified_split`, as for images.

Lines are counted as a text editor counts them (the header is line 1); Parquet tables have no lines,
so their rows are numbered from 1.

The file is read by `transferkit.data.table_files` (its encoding, its format's reader): UTF-8,
or what a byte-order mark says; a `.csv` separated by `;`, `|` or tabs is read too. A missing
value written out as text (`nan`, as pandas writes NaN with `astype(str)`) is missing, like a
blank cell. Labels that are decimal numbers are compared as numbers: `1.0` and `1` are the class
`"1"` (`renamed_labels`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transferkit.data.label_columns import (
    FLAG_TEXTS,
    INFER,
    LABELS_COLUMN,
    IndicatorColumns,
    infer_indicator_columns,
    resolve_indicator_columns,
)
from transferkit.data.table_files import (
    MultiLineRecords,
    check_not_empty,
    csv_rows,
    jsonl_rows,
    open_text,
    parquet_rows,
    sniff_encoding,
)
from transferkit.errors import DataError, InputError

__all__ = [
    "LABEL_COLUMN_CANDIDATES",
    "TABLE_FORMATS",
    "TEXT_COLUMN_CANDIDATES",
    "TextTable",
    "as_label",
    "read_text_lines",
    "read_text_table",
    "table_columns",
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
    "not_binary": "a 0/1 label column holds something other than 0 or 1",
    # Dropped by the target (`transferkit.tasks.targets`), after reading:
    "empty_label_set": "empty label set (multi-label: at least one label, ';' between them)",
    "not_a_number": "target not a finite number (regression)",
}

# A missing value written out as text (pandas writes NaN as "nan" after `astype(str)`).
_MISSING = "nan"
# A decimal label: sign, whole part, fraction without its trailing zeros.
_DECIMAL = re.compile(r"([+-]?)(\d+)\.(\d*?)0*")


@dataclass
class TextTable:
    """The usable rows of a text table and what was dropped.

    Attributes:
        texts: the text of each kept row.
        labels: the label of each kept row as a string, or as a tuple of labels when read from 0/1
            columns (`None` when the table was read without labels).
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
        indicators: for labels read from 0/1 columns, those columns (then each label is a tuple
            of the names of the row's columns set to 1); `None` otherwise.
    """

    texts: list[str]
    labels: list[str] | list[tuple[str, ...]] | None
    row_numbers: list[int]
    text_column: str
    label_column: str | None
    dropped: dict[str, list[int]] = field(default_factory=dict)
    path: str = ""
    unit: str = "line"
    encoding: str | None = None
    renamed_labels: dict[str, str] = field(default_factory=dict)
    splits: list[str] | None = None
    indicators: IndicatorColumns | None = None

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



def read_text_lines(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """The lines of a text file, one text (or path) a line, without their line endings; and the
    (1-based) numbers of the lines that are not valid UTF-8. A byte-order mark is followed, as
    for tables; an undecodable UTF-8 line is kept with surrogate escapes (a valid file name)."""
    path = Path(path)
    with open_text(path, sniff_encoding(path)) as handle:
        lines = [line.rstrip("\r\n") for line in handle]
    return lines, [number for number, line in enumerate(lines, 1) if not _check_utf8(line)]



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


def _rows(path: Path, fmt: str, encoding: str | None, multi_line: MultiLineRecords, types: dict):
    """The format's row reader (`transferkit.data.table_files`): the columns, then the rows."""
    if fmt in ("csv", "tsv"):
        return csv_rows(path, "," if fmt == "csv" else "\t", encoding, multi_line)
    return jsonl_rows(path, encoding) if fmt == "jsonl" else parquet_rows(path, types)


def table_columns(path: str | os.PathLike) -> list[str]:
    """The columns of a table (its header, or the first JSON object's keys), read alone.

    Raises:
        InputError: no such file, or an unknown suffix.
        DataError: the file is empty or its header unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    fmt = _table_format(path)
    check_not_empty(path, fmt)
    encoding = None if fmt == "parquet" else sniff_encoding(path)
    rows = _rows(path, fmt, encoding, MultiLineRecords(), {})
    try:
        return list(next(rows))
    finally:
        rows.close()


def read_text_table(
    path: str | os.PathLike,
    text_column: str | None = None,
    label_column: str | None = None,
    require_labels: bool = True,
    column_words: tuple[str, str] = ("texts", "text_column"),
    label_sets: bool = False,
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
        column_words: the text column's contents and setting, for messages (image paths...).
        label_sets: the labels are sets (multi-label): then `label_column` may also name 0/1
            columns, one per label (`"red,blue,jeans"`), and with no column named the labels
            are the `labels` column or, without one, the table's 0/1 columns
            (`transferkit.data.label_columns`). Default `False`.

    Returns:
        A `TextTable`.

    Raises:
        InputError: the path is missing or has an unknown suffix.
        DataError: the file is empty or unreadable (UTF-16 without a byte-order mark, a Parquet
            column of lists, no line that is a JSON object, a quote that swallows rows: the
            message names the line where it opens), a column cannot be found (the
            message lists the columns), or no usable row is left.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: no such file. Pass a CSV, TSV, JSON Lines or Parquet file of texts and "
            "labels."
        )
    fmt = _table_format(path)
    check_not_empty(path, fmt)
    encoding = None if fmt == "parquet" else sniff_encoding(path)
    types: dict = {}
    multi_line = MultiLineRecords()  # filled by the CSV/TSV reader
    rows = _rows(path, fmt, encoding, multi_line, types)
    columns = next(rows)
    text_column = _find_column(columns, text_column, TEXT_COLUMN_CANDIDATES, *column_words, path)
    rows, label_column, indicators = _label_columns(
        path, columns, rows, text_column, label_column if require_labels else None,
        require_labels, label_sets)
    if types:
        _check_parquet_types(path, types, [text_column, *(
            indicators.names if indicators is not None else [label_column])])
    table = TextTable(
        texts=[],
        labels=[] if label_column is not None else None,
        row_numbers=[],
        text_column=text_column,
        label_column=label_column,
        path=str(path),
        unit="row" if fmt == "parquet" else "line",
        encoding=encoding,
        indicators=indicators,
    )
    _keep_usable_rows(table, rows, columns)
    _check_kept_rows(table, multi_line, columns)
    return table


def _check_kept_rows(table: TextTable, multi_line: MultiLineRecords, columns: list[str]) -> None:
    """Refuses a table whose quote swallowed rows (`MultiLineRecords.check_swallowed_rows`) or
    that has no usable row left, saying why."""
    path = table.path
    if table.indicators is not None:
        multi_line.check_swallowed_rows(path, table.indicators.indices[0], FLAG_TEXTS)
    elif table.labels is not None:
        multi_line.check_swallowed_rows(path, columns.index(table.label_column),
                                        {*table.labels, *table.renamed_labels})
    if not table.texts:
        if table.num_dropped:
            why = table.describe_drops().replace("\n", "; ")
            raise DataError(f"{path}: no usable rows. {why}.")
        raise DataError(f"{path}: no usable rows: the table has a header but no rows.")


def _label_columns(path, columns, rows, text_column, label_column, require_labels,
                   label_sets) -> tuple:
    """`(rows, label column, IndicatorColumns or None)`: where a table's labels are. Label sets
    may be 0/1 columns (`transferkit.data.label_columns`); finding those by their contents
    reads the rows first (returned as a list then)."""
    if not require_labels:
        return rows, None, None
    indicators = resolve_indicator_columns(columns, label_column, text_column, path) if (
        label_sets) else None
    if indicators == INFER:
        rows = list(rows)
        indicators = infer_indicator_columns(columns, rows, text_column, path)
    if indicators is not None:
        return rows, indicators.label_column, indicators
    name = label_column or (LABELS_COLUMN if label_sets else None)
    return rows, _find_column(columns, name, LABEL_COLUMN_CANDIDATES, "labels", "label_column",
                              path), None


def _find_column(columns, name, candidates, what: str, argument: str, path) -> str:
    if name is None:
        return _guess_column(columns, candidates, what, argument, path)
    return _check_column(columns, name, what, argument, path)


def _keep_usable_rows(table: TextTable, rows, columns: list[str]) -> None:
    """Appends the usable rows to `table` and records the others in `table.dropped`."""
    text_index = columns.index(table.text_column)
    label_index = None if table.label_column is None or table.indicators is not None else (
        columns.index(table.label_column))
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
        if table.indicators is not None:
            reason, label = table.indicators.read(values)
            if reason is not None:
                dropped[reason].append(number)
                continue
            table.labels.append(label)
        elif label_index is not None:
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
