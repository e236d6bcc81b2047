"""Which columns of a table hold the labels, and what target they make.

`infer_target` reads the target from the names of a table's columns when `--target` is not
given: `label`/`sentiment` (a class), `labels` (a set of labels) or `target` (a number).

Multi-label targets may be written as 0/1 columns, one column per label: the table that
`pandas.get_dummies` or scikit-learn's `MultiLabelBinarizer` writes, and the form of many public
multi-label sets (a comment with `toxic,obscene,insult` flags, a photo with `cloudy,water`).

`transferkit.data.text.read_text_table` reads such a table when the caller reads label sets
(`label_sets=True`, the multi-label target) and either names the columns (`label_column=
"toxic,obscene,insult"`, the form a model's metadata keeps too) or names none and the table has
no `labels` column: then every column but the text (or image path) column whose cells are all
0/1 is a label, and the others are listed as left out. Each row's labels are the names of its
columns set to 1, as a tuple; a row with every column 0 is an example of none of the labels and
is kept (a `;`-separated cell left empty is read as missing instead: it cannot say "none").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transferkit.errors import DataError

__all__ = ["IndicatorColumns", "infer_target", "resolve_indicator_columns"]

#: The column a multi-label table's `;`-separated labels are in when no column is named.
LABELS_COLUMN = "labels"
#: Cells read as 1 and as 0 (after `strip().casefold()`); numbers and booleans as their values.
_ONE = frozenset({"1", "1.0", "true", "yes"})
_ZERO = frozenset({"0", "0.0", "false", "no"})
#: The cells of a 0/1 column written as text (what `check_swallowed_rows` compares with).
FLAG_TEXTS = frozenset(_ONE | _ZERO)
#: Inferring: marks a table that needs its rows read before its label columns are known.
INFER = "infer"
#: The column names that say a target, when `--target` is not given (`infer_target`).
TARGET_COLUMNS = {"label": "single-label", "sentiment": "single-label",
                  "labels": "multi-label", "target": "regression"}


def _flag(value) -> bool | None:
    """True/False for a 0/1 cell, None for a blank or missing one; raises ValueError otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if value in (0, 1):
            return bool(value)
        raise ValueError(value)
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = text.strip().casefold()
    if not text or text == "nan":
        return None
    if text in _ONE:
        return True
    if text in _ZERO:
        return False
    raise ValueError(value)


@dataclass
class IndicatorColumns:
    """The 0/1 columns a table's labels are read from.

    Attributes:
        names: the label columns, in the table's order (a label is its column's name).
        indices: their positions in a row.
        inferred: the columns were found by their contents (no column was named).
        left_out: inferring: the other columns, with why (`{"column": "reason"}`).
    """

    names: list[str]
    indices: list[int]
    inferred: bool = False
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def label_column(self) -> str:
        """The columns as one setting (`"toxic,obscene"`): what `label_column` reads back."""
        return ",".join(self.names)

    def read(self, values) -> tuple[str | None, tuple[str, ...] | None]:
        """`(drop reason, None)` or `(None, labels)`: the names of the row's columns set to 1
        (empty when all are 0). A blank cell is a missing label; a cell other than 0/1 drops
        the row (`"not_binary"`)."""
        labels = []
        for name, index in zip(self.names, self.indices):
            try:
                flag = _flag(values[index])
            except ValueError:
                return "not_binary", None
            if flag is None:
                return "missing_label", None
            if flag:
                labels.append(name)
        return None, tuple(labels)

    def describe(self) -> str:
        """One line for the log: which columns are labels, and which were left out."""
        how = "found by their 0/1 contents (no `labels` column)" if self.inferred else "named"
        line = f"Labels: the 0/1 columns {', '.join(self.names)}, {how}"
        if self.left_out:
            line += "; not labels: " + ", ".join(
                f"{name} ({why})" for name, why in self.left_out.items())
        return line + "."


def resolve_indicator_columns(columns: list[str], label_column: str | None, text_column: str,
                              path) -> IndicatorColumns | str | None:
    """How a multi-label table gives its labels.

    Returns:
        None: one column of `;`-separated labels (`label_column`, or `labels` when none is
        named and the table has it); an `IndicatorColumns` for named 0/1 columns
        (`"a,b,c"`, at least two, none of them `text_column`); `INFER` when no column is named
        and the table has no `labels` column (`infer_indicator_columns` decides from the rows).

    Raises:
        DataError: a named 0/1 column that is not in the table (the message lists the table's),
            fewer than two of them, or the text column among them.
    """
    lowered = {c.casefold(): c for c in columns}
    if label_column is None:
        return None if LABELS_COLUMN in lowered else INFER
    if label_column in columns or label_column.casefold() in lowered or "," not in label_column:
        return None
    wanted = [name.strip() for name in label_column.split(",") if name.strip()]
    missing = [name for name in wanted if name not in columns and name.casefold() not in lowered]
    if missing:
        raise DataError(
            f"{path}: no column named {', '.join(map(repr, missing))} among the 0/1 label "
            f"columns {label_column!r}. Columns: {', '.join(map(repr, columns))}."
        )
    names = list(dict.fromkeys(name if name in columns else lowered[name.casefold()]
                                for name in wanted))
    if len(names) < 2 or text_column in names:
        raise DataError(
            f"{path}: label columns {label_column!r}: name two or more 0/1 columns, not the "
            f"column of the inputs ({text_column!r})."
        )
    return IndicatorColumns(names, [columns.index(name) for name in names])


def infer_indicator_columns(columns: list[str], rows: list, text_column: str,
                            path) -> IndicatorColumns:
    """The 0/1 label columns of a multi-label table that names none: every column but
    `text_column` whose cells (in the rows that are rows: not malformed, not undecodable) are
    all 0, 1 or blank.

    Raises:
        DataError: fewer than two such columns (the message lists the columns and says how to
            name the labels).
    """
    left_out: dict[str, str] = {}
    names = []
    for index, column in enumerate(columns):
        if column == text_column:
            continue
        try:
            cells = [_flag(values[index]) for _, values in rows
                     if isinstance(values, (list, tuple)) and len(values) > index]
        except ValueError as exc:
            left_out[column] = f"holds {str(exc.args[0])[:20]!r}, not 0/1"
            continue
        if not any(cell is not None for cell in cells):
            left_out[column] = "empty"
            continue
        names.append(column)
    if len(names) < 2:
        raise DataError(
            f"{path}: multi-label needs a `{LABELS_COLUMN}` column (labels separated by ';') or "
            f"two or more 0/1 columns, one per label; found {len(names)} 0/1 column(s). Columns: "
            f"{', '.join(map(repr, columns))}. Name them with --label-column (one column, or "
            "0/1 columns separated by commas: --label-column red,blue,jeans)."
        )
    return IndicatorColumns(names, [columns.index(name) for name in names], True, left_out)


def infer_target(columns: list[str] | None, label_column: str | None) -> tuple[str, str]:
    """The target a table's columns say, when none is given: `(target, why)` for the log.

    Args:
        columns: the table's columns; `None` for class folders (single-label).
        label_column: the label column the user named, if any.

    A named column says its target by its name as the default columns do (`labels`: a set of
    labels, `target`: a number, any other: a class), or several names separated by commas 0/1
    columns (multi-label). Without one, the table's columns named in `TARGET_COLUMNS`: exactly
    one target among them decides; none leaves the single-label default (whose reader then says
    which column it looked for).

    Raises:
        DataError: columns for more than one target (`label` and `labels`, say): ambiguous, so
            the message asks for `--target`.
    """
    if columns is None:
        return "single-label", "class folders"
    if label_column is not None:
        lowered = {c.casefold() for c in columns}
        if "," in label_column and label_column.casefold() not in lowered:
            return "multi-label", f"--label-column names several 0/1 columns ({label_column})"
        target = TARGET_COLUMNS.get(label_column.casefold(), "single-label")
        return target, f"--label-column {label_column}"
    found = {column: TARGET_COLUMNS[column.casefold()] for column in columns
             if column.casefold() in TARGET_COLUMNS}
    targets = sorted(set(found.values()))
    if len(targets) > 1:
        listed = ", ".join(f"{column!r} ({target})" for column, target in found.items())
        raise DataError(
            f"The table has label columns for more than one target: {listed}. Choose with "
            "--target single-label, multi-label or regression (and --label-column if needed)."
        )
    if not targets:
        return "single-label", "the default (no label, labels or target column)"
    column = next(iter(found))
    return targets[0], f"the table's {column!r} column"
