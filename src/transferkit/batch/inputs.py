"""What a batch job reads: image paths from a folder or a list file, or texts from a table.

Only the paths (or the texts) are read up front, never the images: a job over a 100,000-image
folder holds 100,000 strings, and each worker decodes one shard of images at a time.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from transferkit.errors import InputError

__all__ = ["BatchInputs", "check_kind", "content_digests", "read_inputs", "LIST_SUFFIXES",
           "TABLE_SUFFIXES"]

#: A file of image paths (image models), or of texts (text models), one a line.
LIST_SUFFIXES = (".txt", ".lst")
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json", ".parquet", ".pq")


@dataclass
class BatchInputs:
    """The inputs of a job, in order.

    Attributes:
        task: `"image"` (`items` are paths) or `"text"` (`items` are texts).
        items: the inputs; row `i` of the output is `items[i]`.
        source: where they came from, for messages and the job's manifest.
        skipped: inputs left out before the job, each `{"path" or "line", "reason"}`: files
            that are not images, table rows without text.
    """

    task: str
    items: list[str]
    source: str
    skipped: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def digest(self) -> str:
        """sha256 of the inputs in order: a rerun resumes only over the same inputs."""
        sha = hashlib.sha256(self.task.encode())
        for item in self.items:
            sha.update(b"\0" + item.encode("utf-8", "surrogatepass"))
        return sha.hexdigest()

    def content_digests(self, indices) -> list[str]:
        """The sha256 of the content of the inputs at `indices` now (`content_digests`)."""
        return content_digests(self.task, [self.items[i] for i in indices])


def content_digests(task: str, items: list[str]) -> list[str]:
    """What each input holds, as a sha256: of a text's UTF-8 bytes, or of an image file's bytes
    (several files at once, in threads). A path that cannot be read gets a mark instead
    (`"unreadable: ..."`, `"not a regular file"`), so that it matches nothing a row was computed
    from once it can be read. A row of a job's output keeps the digest of the input it was
    computed from: a rerun recomputes the rows whose input changed since (`ShardedParquet.keep`).
    """
    if task == "text":
        return [hashlib.sha256(item.encode("utf-8", "surrogatepass")).hexdigest()
                for item in items]
    if len(items) < 2:
        return [_file_digest(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(8, len(items)), thread_name_prefix="transferkit-sha") as pool:
        return list(pool.map(_file_digest, items))


def _file_digest(path: str) -> str:
    # O_NONBLOCK: a named pipe opens at once and is refused by fstat, never read (it would hang).
    try:
        handle = open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb")
    except OSError as exc:
        return f"unreadable: {exc.strerror or type(exc).__name__}"
    with handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return "not a regular file"
        try:
            return hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            return f"unreadable: {exc.strerror or type(exc).__name__}"


def read_inputs(inputs, task: str, *, text_column: str | None = None,
                model: str | None = None) -> BatchInputs:
    """The inputs of a batch job for a model of `task` (`"image"` or `"text"`).

    Args:
        inputs: one path, or a list of them. Images: a folder (searched recursively, files in
            sorted order), a `.txt` file of image paths (one a line; relative paths are relative
            to the file's folder), or image files. Texts: a table (CSV, TSV, JSON Lines,
            Parquet; see `transferkit.data.text.read_text_table`) or a `.txt` file of texts,
            one a line.
        task: `"image"` or `"text"`.
        text_column: the text column of a table. Default `None`: the one named `text`,
            `sentence` or `review`.
        model: the model's name, for messages. Default `None`.

    Raises:
        InputError: a path that does not exist, or inputs of the wrong kind (images for a
            text model, a table of texts for an image model: `check_kind`).
        DataError: a table that cannot be read.
    """
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        raise InputError("No input given. Pass a folder of images, a file of paths, or a table.")
    check_kind(task, paths, "batch", model=model)
    for path in paths:
        if not Path(path).exists():
            raise InputError(f"{path}: no such file or folder.")
    if task == "text":
        return _texts(paths, text_column)
    return _images(paths)


_TABLES = "(CSV, TSV, JSON Lines, Parquet)"
# purpose -> what a text model / an image model takes there, for messages.
_TEXT_FIX = {
    "predict": f"pass texts or a table of texts {_TABLES} with `output`",
    "batch": f"pass a table of texts {_TABLES} or a .txt file of texts, one a line",
    "evaluate": f"pass a table of texts {_TABLES} with their labels",
}
_IMAGE_FIX = {
    "predict": "pass image files, or with `output` a folder of images or a .txt file of paths",
    "batch": "pass image files, a folder of images, or a .txt file of image paths",
    "evaluate": ("pass a folder with one sub-folder of images per class, or a table of image "
                 "paths and labels"),
}


def check_kind(task: str, inputs, purpose: str, *, model: str | None = None) -> None:
    """Raises InputError when `inputs` are of the other modality than a `task` model takes, so
    that a text model never classifies the string of an image's path, for example.

    Args:
        task: `"text"` or `"image"`: what the model takes.
        inputs: the command line's inputs (texts, or paths).
        purpose: `"predict"` (inputs are the items themselves: texts or image files),
            `"batch"` (`read_inputs`: a folder, a list file or a table) or `"evaluate"` (one
            labelled folder or table).
        model: the model's name, to start the message with. Default `None`.
    """
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            continue
        name = os.fspath(item)
        what = _text_mismatch(name, purpose) if task == "text" else _image_mismatch(name, purpose)
        if what:
            start = f"{model}: this" if model else "This"
            fix = (_TEXT_FIX if task == "text" else _IMAGE_FIX)[purpose]
            shown = name if len(name) <= 200 else name[:197] + "..."
            raise InputError(f"{start} is {'a text' if task == 'text' else 'an image'} model; "
                             f"{shown} is {what}: {fix}.")


def _text_mismatch(name: str, purpose: str) -> str | None:
    """What `name` is when a text model should not take it (`None`: a text, or a table)."""
    from transferkit.data.images import IMAGE_EXTENSIONS

    # os.path (not pathlib) answers False for any text: too long for a path, or with a NUL.
    suffix = os.path.splitext(name)[1].lower()
    if os.path.isdir(name):
        return "a folder"
    if suffix in IMAGE_EXTENSIONS and (os.path.isfile(name) or not any(c.isspace() for c in name)):
        return "an image file"
    if purpose == "predict" and suffix in TABLE_SUFFIXES + LIST_SUFFIXES and os.path.isfile(name):
        raise InputError(
            f"{name} is a file of texts: to label the texts in it, add `output` (a Parquet "
            "folder to write); without it, each input is one text."
        )
    return None


def _image_mismatch(name: str, purpose: str) -> str | None:
    """What `name` is when an image model should not take it (`None`: it may be an image)."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in TABLE_SUFFIXES and os.path.isfile(name) and purpose != "evaluate":
        return "a table of texts"  # to evaluate: a table of image paths and labels (a manifest)
    if purpose != "batch" and suffix in LIST_SUFFIXES and os.path.isfile(name):
        return "a text file"
    return None


def _images(paths: list) -> BatchInputs:
    from transferkit.data.image_folder import walk_images

    if len(paths) == 1 and Path(paths[0]).is_dir():
        skipped: list[dict] = []
        found = walk_images(Path(paths[0]), skipped)
        if not found:
            raise InputError(f"{paths[0]}: no image files in this folder or below it.")
        return BatchInputs("image", [os.fspath(p) for p in found], os.fspath(paths[0]), skipped)
    if len(paths) == 1 and Path(paths[0]).suffix.lower() in LIST_SUFFIXES:
        return BatchInputs("image", _path_list(Path(paths[0])), os.fspath(paths[0]))
    folders = [p for p in paths if Path(p).is_dir()]
    if folders:
        raise InputError(
            f"{folders[0]}: a folder among several inputs. Pass one folder, one file of paths, "
            "or image files."
        )
    return BatchInputs("image", [os.fspath(p) for p in paths], f"{len(paths)} image files")


def _path_list(path: Path) -> list[str]:
    """The image paths in a list file, in order; blank lines and `#` comments are skipped."""
    from transferkit.data.text import read_text_lines

    items = []
    for line in read_text_lines(path)[0]:
        line = line.strip()
        if line and not line.startswith("#"):
            items.append(os.fspath(path.parent / line))  # an absolute `line` stays absolute
    if not items:
        raise InputError(f"{path}: no image paths in this file (one path a line).")
    return items


def _texts(paths: list, text_column: str | None) -> BatchInputs:
    from transferkit.data.text import DROP_REASONS, read_text_lines, read_text_table

    if len(paths) != 1 or Path(paths[0]).is_dir():
        raise InputError(
            "A text model reads one table of texts (CSV, TSV, JSON Lines, Parquet) or one .txt "
            f"file of texts, one a line. Received: {', '.join(map(str, paths[:3]))}."
        )
    path = Path(paths[0])
    if path.suffix.lower() in LIST_SUFFIXES:
        lines, undecodable = read_text_lines(path)
        bad = set(undecodable)
        items = [line for i, line in enumerate(lines, 1) if line.strip() and i not in bad]
        skipped = [{"line": i, "reason": DROP_REASONS["encoding"] if i in bad else "empty line"}
                   for i, line in enumerate(lines, 1) if i in bad or not line.strip()]
        if not items:
            raise InputError(f"{path}: no texts in this file (one text a line).")
        return BatchInputs("text", items, os.fspath(path), skipped)
    table = read_text_table(path, text_column=text_column, require_labels=False)
    skipped = [{"line": line, "reason": DROP_REASONS.get(reason, reason)}
               for reason, lines in table.dropped.items() for line in lines]
    return BatchInputs("text", list(table.texts), os.fspath(path),
                       sorted(skipped, key=lambda row: row["line"]))
