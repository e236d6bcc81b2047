"""Where an export goes: checked before any work, locked, written beside, renamed into place.

An export is written to a hidden folder beside its destination (`.<name>.partial-<random>`) and
renamed into place once it is verified, so a failed export leaves nothing. Before any work,
`check_destination` makes sure that the destination is a new folder, an empty one, or an earlier
export (it has `export.json`) that `overwrite` may replace; never a file, a training run, a
folder that holds a model (the one being exported included: `--output .` in a run folder, or an
ancestor of it), or a folder that cannot be written. `overwrite` deletes only what
`transferkit export` wrote.

One process writes a destination at a time, with the lock of run folders
(`transferkit.run_folder.RunLock`: `flock`, the holder's process id in the message). The lock
file is `.<name>.lock` beside the destination, since the folder itself is replaced whole.
The folder is made with the user's umask, like any other folder (`tempfile.mkdtemp` makes 0700).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from transferkit.errors import InputError
from transferkit.files import raise_if_disk_full
from transferkit.run_folder import RunFolder

__all__ = ["EXPORT_RECORD", "check_destination", "default_destination", "writing"]

#: The file that marks a folder as an export (`transferkit export` writes it last).
EXPORT_RECORD = "export.json"
_IN_USE_HINT = "wait for it to finish, or pass another `path`"
_NEW_FOLDER = "Pass a new or empty folder as `path`"


def default_destination(model_path: Path | None, format: str, quantize: str) -> Path:
    """`<model's folder>/export/<format>[-<quantize>]`, for a model loaded from a file."""
    if model_path is None:
        raise InputError("Pass `path`, the folder to export to (the model was not loaded from a "
                         "file, so there is no run folder to export into).")
    name = format if quantize == "none" else f"{format}-{quantize}"
    return RunFolder(Path(model_path).parent).export_dir / name


def check_destination(folder: Path, model_path: Path | None, overwrite: bool) -> None:
    """Raises InputError unless an export may be written to `folder` now (see the module).

    Args:
        folder: the destination, resolved (`Path.resolve()`).
        model_path: the `.keras` file being exported, or None.
        overwrite: whether an earlier export in `folder` may be replaced.
    """
    from transferkit.run_folder import RunLock, in_use_error

    _check_folder(folder, model_path, overwrite)
    holder = RunLock.in_use(folder, _lock_file(folder))
    if holder is not None:
        raise in_use_error(folder, holder, _IN_USE_HINT)


@contextlib.contextmanager
def writing(folder: Path, model_path: Path | None, overwrite: bool) -> Iterator[Path]:
    """Locks `folder` and yields an empty folder beside it, which replaces `folder` when the
    block ends without error (and is deleted when it raises). `folder` is checked again under
    the lock: another export may have finished since `check_destination`."""
    from transferkit.run_folder import RunLock

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock = RunLock(folder, log=logging.getLogger("transferkit").warning,
                       hint=_IN_USE_HINT, lock_file=_lock_file(folder))
    except OSError as exc:
        raise _unwritable(folder, exc) from None
    try:
        _check_folder(folder, model_path, overwrite)
        partial = _new_folder_beside(folder, "partial")
        try:
            yield partial
            _put_in_place(partial, folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    finally:
        lock.release()


def _lock_file(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.lock"


def _check_folder(folder: Path, model_path: Path | None, overwrite: bool) -> None:
    if folder.parent == folder:
        raise InputError(f"{folder}: is the root of the file system; an export needs a folder "
                         f"of its own. {_NEW_FOLDER}.")
    if model_path is not None and Path(model_path).resolve().is_relative_to(folder):
        raise InputError(
            f"{folder}: holds the model being exported ({model_path}), and an export replaces "
            f"its folder whole. {_NEW_FOLDER}, or leave it out: export/FORMAT beside the model."
        )
    try:
        if folder.exists():
            if not folder.is_dir():
                raise InputError(f"{folder}: is a file; an export is a folder of files. "
                                 f"{_NEW_FOLDER}.")
            if any(folder.iterdir()):
                _check_replaceable(folder, overwrite)
        _check_writable(folder)
    except OSError as exc:  # a folder that cannot be listed or looked into
        raise InputError(f"{folder}: cannot be used for an export ({exc.strerror or exc}). "
                         f"{_NEW_FOLDER}.") from None


def _check_replaceable(folder: Path, overwrite: bool) -> None:
    """`folder` is not empty: only an earlier export, with `overwrite`, may be replaced."""
    if not (folder / EXPORT_RECORD).is_file():
        held = _holds_model(folder, deep=False)
        what = f"; it holds {held}" if held else ""
        if overwrite:
            raise InputError(
                f"{folder}: is not an export folder (no {EXPORT_RECORD}){what}, and `overwrite` "
                f"replaces only an earlier export: nothing was deleted. {_NEW_FOLDER}."
            )
        raise InputError(f"{folder}: exists and is not empty, and is not an export folder (no "
                         f"{EXPORT_RECORD}){what}. {_NEW_FOLDER}.")
    held = _holds_model(folder, deep=True)
    if held:
        raise InputError(
            f"{folder}: is an export folder that also holds {held}, which replacing it would "
            f"delete: nothing was deleted. Move that out, or pass another `path`."
        )
    if not overwrite:
        raise InputError(f"{folder}: exists and is not empty (an earlier export). Pass another "
                         "`path`, or `overwrite` to replace it.")


def _holds_model(folder: Path, deep: bool) -> str:
    """What in `folder` is a training run or a model (`""`: nothing). `deep`: look in every
    sub-folder for `.keras` files (an export folder is small; any other folder may not be)."""
    run = RunFolder(folder)
    if run.is_run() and run.model_path.is_file():
        return "a training run (config.json, model.keras)"
    if run.checkpoint_dir.is_dir():
        return "a training run's checkpoints/"
    model = next(folder.glob("**/*.keras" if deep else "*.keras"), None)
    return f"a model file ({model.relative_to(folder)})" if model is not None else ""


def _check_writable(folder: Path) -> None:
    """The export is written beside `folder` and renamed into place: its parent (or the first
    ancestor that exists, where the folders are made) must be a folder this user can write."""
    ancestor = folder.parent
    while not ancestor.exists() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{folder}: cannot be made, {ancestor} is a file. {_NEW_FOLDER}.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: cannot be written, {ancestor} is not writable by this user "
                         f"(permission denied). Pass a folder you can write to as `path`.")


def _unwritable(folder: Path, exc: OSError) -> InputError:
    raise_if_disk_full(exc, folder)
    return InputError(f"{folder}: cannot be written ({exc.strerror or exc}). Pass a folder you "
                      "can write to as `path`.")


def _new_folder_beside(folder: Path, kind: str) -> Path:
    """A new, empty, hidden folder beside `folder`, with the user's umask."""
    while True:
        path = folder.parent / f".{folder.name}.{kind}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise _unwritable(folder, exc) from None


def _put_in_place(partial: Path, folder: Path) -> None:
    """Renames `partial` to `folder`; an earlier `folder` is moved aside first and deleted
    after, or moved back if the rename fails."""
    replaced = None
    if folder.exists():
        replaced = _new_folder_beside(folder, "replaced")
        replaced.rmdir()
        folder.rename(replaced)
    try:
        partial.rename(folder)
    except BaseException:
        if replaced is not None:
            replaced.rename(folder)
        raise
    if replaced is not None:
        shutil.rmtree(replaced, ignore_errors=True)
