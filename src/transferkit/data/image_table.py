"""Images listed in a table: a path column and a label column (a manifest), for targets that
class folders cannot express: a set of labels per image (`"black;jeans"`) or a number (an age).

The table is read by `transferkit.data.text.read_text_table` (CSV, TSV, JSON Lines, Parquet; its
encodings, its record of dropped rows), with the path column in the place of the text. Paths are
relative to the table's folder; a path that does not exist, or that leads outside that folder
(`../`, an absolute path elsewhere, a link out), is left out and listed with why, as unreadable
rows are: a manifest can only name images that sit beside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from transferkit.errors import DataError

__all__ = ["DEFAULT_LABEL_COLUMNS", "ImageTable", "read_image_table"]

#: The label column a table is read with when none is named, per target.
DEFAULT_LABEL_COLUMNS = {"single-label": "label", "multi-label": "labels", "regression": "target"}


@dataclass
class ImageTable:
    """The usable rows of an image table.

    Attributes:
        paths: the image files (absolute), one per kept row.
        labels: the label cell of each kept row, as written (`"black;jeans"`, `"23"`).
        skipped: `{"line" or "row" or "path", "reason"}` of every row left out.
        path_column, label_column: the columns read.
        path: the table file.
        columns_note: for labels read from 0/1 columns, a line naming them (for the log).
    """

    paths: list[str]
    labels: list[str]
    skipped: list[dict] = field(default_factory=list)
    path_column: str = "path"
    label_column: str = "labels"
    path: str = ""
    columns_note: str = ""


def read_image_table(path: str | os.PathLike, path_column: str, label_column: str | None,
                     target: str) -> ImageTable:
    """Reads a table of image paths and labels.

    Args:
        path: the table (CSV, TSV, JSON Lines or Parquet).
        path_column: the column of image paths, relative to the table's folder
            (`ImageTrainConfig.path_column`).
        label_column: the column of labels; `None`: `DEFAULT_LABEL_COLUMNS[target]`.
            Multi-label: also 0/1 columns, one per label (`"red,blue,jeans"`); with `None` and
            no `labels` column, the table's 0/1 columns (`transferkit.data.label_columns`).
        target: what the labels are (decides the default label column).

    Returns:
        An `ImageTable` of the rows whose image exists inside the table's folder.

    Raises:
        InputError: no such table, or an unknown format.
        DataError: a column is missing (the message lists the columns), or no row is usable.
    """
    from transferkit.data.text import DROP_REASONS, read_text_table

    sets = target == "multi-label"
    table = read_text_table(path, text_column=path_column,
                            label_column=label_column or (None if sets else
                                                          DEFAULT_LABEL_COLUMNS[target]),
                            column_words=("image paths", "path_column"), label_sets=sets)
    folder = Path(path).resolve().parent
    reasons = {**DROP_REASONS, "empty_text": "empty or missing image path"}
    skipped = [{table.unit: number, "reason": reasons.get(reason, reason)}
               for reason, numbers in table.dropped.items() for number in numbers]
    paths, labels = [], []
    for written, label, number in zip(table.texts, table.labels, table.row_numbers):
        file = (folder / written.strip()).resolve()
        if not file.is_relative_to(folder):
            skipped.append({table.unit: number, "path": written, "reason": (
                "the path leads outside the table's folder; manifests list images inside the "
                "folder they are in")})
        elif not file.is_file():
            skipped.append({table.unit: number, "path": written,
                            "reason": "no such file (paths are relative to the table's folder)"})
        else:
            paths.append(os.fspath(file))
            labels.append(label)
    if not paths:
        why = "; ".join(sorted({entry["reason"] for entry in skipped})) or "no rows"
        raise DataError(f"{path}: no usable rows: {why}.")
    return ImageTable(paths, labels, skipped, table.text_column, table.label_column,
                      os.fspath(path), table.indicators.describe() if table.indicators else "")
