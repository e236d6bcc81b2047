"""Checks of argument values, each raising an `InputError` that names the Python argument.

One place for the checks every module needs, so the messages read the same everywhere:

    `epochs` must be an int >= 0. Received: epochs=-1.

Library messages name Python arguments in backticks; the command line rewrites those to its flag
names (`--epochs`), so one message serves both.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transferkit.errors import InputError

__all__ = [
    "INPUT_RANGE_NAMES",
    "check_input_range",
    "DISTRIBUTE",
    "RUNTIMES",
    "check_choice",
    "check_fraction",
    "check_image_size",
    "check_int",
    "check_number",
    "check_output_file",
    "check_output_folder",
    "check_unfreeze",
]


def _is_int(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(value: Any, name: str, minimum: int | None = None, why: str = "") -> int:
    """`value` as an int, if it is one and at least `minimum`.

    Args:
        value: what the caller passed.
        name: the argument's name, for the message.
        minimum: the smallest value allowed. Default `None`: no bound.
        why: a few words on the bound, put in the message in brackets. Default `""`.

    Raises:
        InputError: not an int (bools are not ints here), or below `minimum`.
    """
    if not _is_int(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        because = f" ({why})" if why else ""
        raise InputError(f"`{name}` must be an int{bound}{because}. Received: {name}={value!r}.")
    return int(value)


def check_number(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    include_minimum: bool = True,
    include_maximum: bool = True,
) -> float:
    """`value` as a float, if it is a number between `minimum` and `maximum`.

    Args:
        value: what the caller passed.
        name: the argument's name, for the message.
        minimum: the lower bound; default `None`: none.
        maximum: the upper bound; default `None`: none.
        include_minimum: whether `minimum` itself is allowed. Default `True`.
        include_maximum: whether `maximum` itself is allowed. Default `True`.

    Raises:
        InputError: not a number (bools are not numbers here), or out of range.
    """
    import numbers

    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and minimum is not None:
        ok = value >= minimum if include_minimum else value > minimum
    if ok and maximum is not None:
        ok = value <= maximum if include_maximum else value < maximum
    if not ok:
        if minimum is not None and maximum is not None:
            low, high = "[" if include_minimum else "(", "]" if include_maximum else ")"
            bound = f" in {low}{minimum}, {maximum}{high}"
        elif minimum is not None:
            bound = f" {'>=' if include_minimum else '>'} {minimum}"
        elif maximum is not None:
            bound = f" {'<=' if include_maximum else '<'} {maximum}"
        else:
            bound = ""
        raise InputError(f"`{name}` must be a number{bound}. Received: {name}={value!r}.")
    return float(value)


def check_fraction(value: Any, name: str) -> float:
    """`value` as a float strictly between 0 and 1 (a share of the data)."""
    return check_number(value, name, 0, 1, include_minimum=False, include_maximum=False)


#: What can run a frozen backbone or encoder (`transferkit.runtimes`).
RUNTIMES = ("auto", "keras", "onnx")

#: How training spreads over devices (`transferkit.training.distribute`).
DISTRIBUTE = ("none", "data-parallel")


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices` (strings); the message lists them."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise InputError(f"`{name}` must be one of {listed}. Received: {name}={value!r}.")
    return value


def check_image_size(image_size, name: str = "image_size") -> tuple[int, int]:
    """`image_size` as `(height, width)`: an int gives a square.

    Raises:
        InputError: not a positive int or a pair of positive ints.
    """
    if _is_int(image_size):
        pair = (int(image_size), int(image_size))
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2 and all(
        _is_int(side) for side in image_size
    ):
        pair = (int(image_size[0]), int(image_size[1]))
    else:
        pair = (0, 0)
    if min(pair) <= 0:
        raise InputError(
            f"`{name}` must be a positive int or a pair of them. Received: {name}={image_size!r}."
        )
    return pair


def check_unfreeze(unfreeze) -> str | int:
    """What fine-tuning trains: `"all"`, an int N (the top N layers), or a layer name.

    Raises:
        InputError: a bool, an empty name, or a number below 1.
    """
    if isinstance(unfreeze, bool):
        raise InputError(
            "`unfreeze` must be 'all', a number of top layers, or a layer name. "
            f"Received: unfreeze={unfreeze!r}."
        )
    if _is_int(unfreeze) or (isinstance(unfreeze, str) and unfreeze.isdigit()):
        count = int(unfreeze)
        if count < 1:
            raise InputError(
                "`unfreeze` as a number of top layers must be >= 1 (to skip fine-tuning, pass "
                f"`fine_tune_epochs`=0). Received: unfreeze={unfreeze!r}."
            )
        return count
    if isinstance(unfreeze, str) and unfreeze.strip():
        return unfreeze.strip()
    raise InputError(
        "`unfreeze` must be 'all', a number of top layers, or a layer name. "
        f"Received: unfreeze={unfreeze!r}."
    )


#: The value ranges a SavedModel backbone may take its pixels in (`input_range`).
INPUT_RANGE_NAMES = ("0,1", "-1,1", "0,255")


def check_input_range(value) -> str:
    """`input_range` as one of `INPUT_RANGE_NAMES` (`"0,1"`, `"[-1, 1]"`...), or raises InputError."""
    text = str(value).replace(" ", "").replace("[", "").replace("]", "")
    if text not in INPUT_RANGE_NAMES:
        raise InputError(
            f"`input_range` must be one of {', '.join(INPUT_RANGE_NAMES)} (the values a SavedModel "
            f"takes its pixels in). Received: input_range={value!r}."
        )
    return text


def _file_above(path: Path) -> Path | None:
    """The nearest existing folder above `path` if it is not a folder (a file), else `None`."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_output_folder(path: str | os.PathLike | None, name: str) -> Path | None:
    """`path` as a folder to write files into (made later if missing); `None` stays `None`.

    Checked before any work, so that a wrong path fails at once rather than after the work.

    Raises:
        InputError: `path` is a file, or a file stands where a folder above it would be.
    """
    if path is None:
        return None
    folder = Path(path)
    blocker = folder if folder.exists() and not folder.is_dir() else _file_above(folder)
    if blocker is not None:
        where = "is a file" if blocker == folder else f"is under {blocker}, a file"
        raise InputError(
            f"`{name}` must be a folder to write into (it is made if missing), but {folder} "
            f"{where}. Pass a folder path. Received: {name}={os.fspath(path)!r}."
        )
    return folder


def check_output_file(path: str | os.PathLike, name: str, suffix: str) -> Path:
    """`path` as a file to write, of the kind `suffix` says (`".png"`).

    Raises:
        InputError: `path` is a folder, is under a file, or ends in another suffix.
    """
    file = Path(path)
    example = f"{file / ('output' + suffix)}"
    if file.is_dir():
        raise InputError(
            f"`{name}` is the {suffix} file to write, but {file} is a folder. Pass a file path, "
            f"such as {example}. Received: {name}={os.fspath(path)!r}."
        )
    blocker = _file_above(file)
    if blocker is not None:
        raise InputError(
            f"`{name}` is the {suffix} file to write, but {file} is under {blocker}, a file. "
            f"Pass a path in a folder. Received: {name}={os.fspath(path)!r}."
        )
    if file.suffix.lower() != suffix:
        raise InputError(
            f"`{name}` must end in {suffix}: the file written is {suffix[1:].upper()}, whatever "
            f"its name. Received: {name}={os.fspath(path)!r}."
        )
    return file
