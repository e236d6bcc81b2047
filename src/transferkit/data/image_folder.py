"""Folders of labelled images: discovery, the train/validation split, duplicates and skipped files.

Two layouts are understood, as users keep them::

    DATA_DIR/cats/*.jpg, DATA_DIR/dogs/*.jpg         class sub-folders; split here (stratified,
                                                     seeded, `validation_size` of each class)
    DATA_DIR/train/cats/..., DATA_DIR/validation/... already split (`val/` works too)

Class names are the sub-folder names, sorted. Images in nested folders inside a class folder belong
to that class. Files that are not images (by extension), hidden files and folders, `__MACOSX/`,
named pipes and links back into a folder already read are skipped and listed, never silently
dropped; so are files that turn out unreadable when decoded (`ImageFolder.add_unreadable`). Every
file is hashed: identical files are kept on the same side of a split made here, and identical files
across a given train/validation split are reported (they inflate validation accuracy).
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transferkit.checks import check_fraction
from transferkit.config import ImageTrainConfig
from transferkit.data.images import IMAGE_EXTENSIONS, special_file_reason
from transferkit.data.labels import stratified_split
from transferkit.errors import DataError

__all__ = [
    "ImageFolder",
    "discover_image_folder",
    "read_class_folders",
    "read_evaluation_folder",
    "first_image",
    "walk_images",
    "IGNORED_NAMES",
]

# Files that operating systems and tools leave in folders: not the user's data, so not read (listed).
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini"})
TRAIN_NAMES = ("train", "training")
VALIDATION_NAMES = ("validation", "val", "valid")


@dataclass
class ClassFolders:
    """The images of one folder of class sub-folders (no split)."""

    root: Path
    class_names: list[str]
    paths: list[str]
    labels: np.ndarray
    skipped: list[dict] = field(default_factory=list)


@dataclass
class ImageFolder:
    """Images found under a data folder, split into train and validation.

    Attributes:
        root: the data folder.
        layout: `"class_folders"` (split here) or `"split"` (train/ and validation/ given).
        class_names: sorted class names; label `i` is `class_names[i]`.
        train_paths, train_labels: the training images and their int labels.
        validation_paths, validation_labels: the validation images and their int labels.
        skipped: `{"path", "reason"}` for every file left out (not an image, or unreadable).
        duplicates: groups of identical files, `{"sha256", "paths", "splits", "classes"}`.
        digests: path -> sha256 of its content (the feature-cache key of the image).
        validation_size: the share used when the split is made here, else `None`.
        seed: the seed of that split.
    """

    root: Path
    layout: str
    class_names: list[str]
    train_paths: list[str]
    train_labels: np.ndarray
    validation_paths: list[str]
    validation_labels: np.ndarray
    skipped: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)
    validation_size: float | None = None
    seed: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def duplicates_across_splits(self) -> list[dict]:
        """Duplicate groups with copies in both train and validation."""
        return [d for d in self.duplicates if len(set(d["splits"])) > 1]

    @property
    def conflicting_duplicates(self) -> list[dict]:
        """Duplicate groups whose copies carry different labels."""
        return [d for d in self.duplicates if len(set(d["classes"])) > 1]

    @property
    def classes_without_validation(self) -> list[str]:
        """Classes with no validation image (a class of one image keeps it for training): the
        validation accuracy says nothing about them."""
        counts = self.class_counts()["validation"]
        return [name for name in self.class_names if counts[name] == 0]

    def conflict_lines(self) -> list[str]:
        """One line per group of identical files filed under different classes, e.g.
        `"cat/1.jpg (cat) = dog/7.jpg (dog)"` (paths relative to `root`)."""
        return [
            " = ".join(f"{_relative(path, self.root)} ({name})"
                       for path, name in zip(group["paths"], group["classes"]))
            for group in self.conflicting_duplicates
        ]

    def add_unreadable(self, items: list[dict]) -> None:
        """Removes files that failed to decode from the splits and lists them in `skipped`.

        Args:
            items: `{"path", "reason"}` dicts, as `DecodeLog.items()` returns.
        """
        known = {s["path"] for s in self.skipped}
        bad = {item["path"] for item in items}
        for item in items:
            if item["path"] not in known:
                self.skipped.append({"path": item["path"], "reason": item["reason"]})
        if not bad:
            return
        keep = [i for i, p in enumerate(self.train_paths) if p not in bad]
        self.train_paths = [self.train_paths[i] for i in keep]
        self.train_labels = self.train_labels[keep]
        keep = [i for i, p in enumerate(self.validation_paths) if p not in bad]
        self.validation_paths = [self.validation_paths[i] for i in keep]
        self.validation_labels = self.validation_labels[keep]
        _check_usable(self)

    def class_counts(self) -> dict[str, dict[str, int]]:
        """`{"train": {class: n}, "validation": {class: n}}`."""
        return {
            split: {
                name: int(np.sum(labels == i)) for i, name in enumerate(self.class_names)
            }
            for split, labels in (
                ("train", self.train_labels),
                ("validation", self.validation_labels),
            )
        }

    def content_sha256(self) -> str:
        """One sha256 for the data as trained on: every image's split, class, path (relative to
        `root`) and content sha256, sorted. Equal for equal data wherever the folder is."""
        import hashlib

        lines = []
        for split, paths, labels in (("train", self.train_paths, self.train_labels),
                                     ("validation", self.validation_paths, self.validation_labels)):
            for path, label in zip(paths, labels):
                relative = os.path.relpath(path, self.root)
                lines.append(f"{split}\t{self.class_names[int(label)]}\t{relative}\t"
                             f"{self.digests.get(path, '')}")
        return hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()

    def summary(self) -> dict:
        """Plain data about the dataset for config files, reports and `--json`."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "classes": list(self.class_names),
            "train_images": len(self.train_paths),
            "validation_images": len(self.validation_paths),
            "class_counts": self.class_counts(),
            "validation_size": self.validation_size,
            "seed": self.seed,
            "skipped_files": len(self.skipped),
            "duplicate_groups": len(self.duplicates),
            "duplicates_across_splits": len(self.duplicates_across_splits),
            "conflicting_duplicates": len(self.conflicting_duplicates),
            "classes_without_validation": self.classes_without_validation,
            "content_sha256": self.content_sha256(),
        }


def _relative(path: str, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _visible(entry: Path) -> bool:
    return _ignored_reason(entry.name, is_dir=True) is None and entry.name.lower() not in (
        IGNORED_NAMES)


def _ignored_reason(name: str, is_dir: bool) -> str | None:
    """Why an entry is not the user's data (listed in `skipped` with this reason), or None."""
    if is_dir and name.lower() == "__macosx":  # zips made on macOS: resource forks, not photos
        return "macOS resource folder (not read)"
    if name.startswith("."):
        return "hidden folder (not read)" if is_dir else "hidden file"
    if not is_dir and name.lower() in IGNORED_NAMES:
        return "system file"
    return None


def walk_images(folder: Path, skipped: list[dict]) -> list[Path]:
    """Image files under `folder` (recursively, sorted); everything else goes to `skipped`.

    Symbolic links are followed, but a linked folder that was already read or is an ancestor of
    `folder` (a loop, or a second link to the same folder) is not read: it is listed in `skipped`.
    A linked file is kept (the same file twice is found as a duplicate by its content). Named
    pipes, sockets and devices are listed, never opened (opening a pipe waits forever).
    """
    images: list[Path] = []
    real = Path(folder).resolve()
    seen = set()
    for ancestor in (real, *real.parents):  # a link up to the data folder, or above, is a loop
        info = os.stat(ancestor)
        seen.add((info.st_dev, info.st_ino))
    _walk(Path(folder), seen, images, skipped)
    return images


def _walk(folder: Path, seen: set, images: list[Path], skipped: list[dict]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as exc:
        skipped.append({"path": str(folder), "reason": f"folder cannot be read ({exc.strerror})"})
        return
    subfolders = []
    for entry in entries:
        path = Path(entry.path)
        try:
            info = entry.stat()  # follows a symbolic link
        except OSError as exc:
            broken = entry.is_symlink() and not os.path.exists(path)
            skipped.append({"path": str(path), "reason": "a broken link" if broken
                            else f"cannot be read ({exc.strerror})"})
            continue
        is_dir = stat.S_ISDIR(info.st_mode)
        reason = _ignored_reason(entry.name, is_dir)
        if reason is None and is_dir and (info.st_dev, info.st_ino) in seen:
            reason = (f"a link to a folder already read (a loop, or a second link to "
                      f"{os.path.realpath(path)}); not read again")
        elif reason is None and is_dir:
            seen.add((info.st_dev, info.st_ino))
            subfolders.append(path)
        elif reason is None and path.suffix.lower() not in IMAGE_EXTENSIONS:
            reason = (f"not an image file (extension {path.suffix or 'none'!r}; expected one of "
                      f"{', '.join(IMAGE_EXTENSIONS)})")
        elif reason is None and not stat.S_ISREG(info.st_mode):
            reason = special_file_reason(info.st_mode)
        elif reason is None:
            images.append(path)
        if reason is not None:
            skipped.append({"path": str(path), "reason": reason})
    for sub in subfolders:
        _walk(sub, seen, images, skipped)


def _require_folder(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such folder. Pass the folder that holds {what}.")
    if not path.is_dir():
        raise DataError(
            f"{path}: is a file, expected a folder that holds {what}. Pass the folder instead."
        )


def read_class_folders(folder: str | os.PathLike, class_names=None) -> ClassFolders:
    """Lists the images of a folder with one sub-folder per class.

    Args:
        folder: the folder (`folder/<class>/*.jpg`).
        class_names: the expected classes, in label order; sub-folders must be among them (a
            model's classes, when evaluating). Default `None`: the sorted sub-folder names.

    Raises:
        DataError: the folder is missing, has no class sub-folders, a class folder has no images,
            fewer than two classes (when `class_names` is None), or a sub-folder is not a known class.
    """
    root = Path(folder)
    _require_folder(root, "one sub-folder of images per class")
    skipped: list[dict] = []
    subfolders, loose = [], []
    for path in sorted(root.iterdir()):
        reason = _ignored_reason(path.name, path.is_dir())
        if reason is not None:
            skipped.append({"path": str(path), "reason": reason})
        else:
            (subfolders if path.is_dir() else loose).append(path)
    if not subfolders:
        found = f" It holds {len(loose)} files directly." if loose else " It is empty."
        raise DataError(
            f"{root}: no class sub-folders.{found} Put the images of each class in their own "
            f"sub-folder, e.g. {root}/cats/*.jpg and {root}/dogs/*.jpg."
        )
    for path in loose:
        skipped.append(
            {"path": str(path), "reason": "not inside a class sub-folder, so it has no label"}
        )
    found_names = [p.name for p in subfolders]
    if class_names is None:
        names = found_names
    else:
        names = [str(c) for c in class_names]
        unknown = [n for n in found_names if n not in names]
        if unknown:
            raise DataError(
                f"{root}: the sub-folders {', '.join(map(repr, unknown))} are not classes of the "
                f"model, which knows {', '.join(map(repr, names))}. Rename or remove those folders."
            )
    paths: list[str] = []
    labels: list[int] = []
    empty = []
    for sub in subfolders:
        images = walk_images(sub, skipped)
        if not images:
            empty.append(sub)
        label = names.index(sub.name)
        paths.extend(str(p) for p in images)
        labels.extend([label] * len(images))
    if not paths:
        raise DataError(
            f"{root}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} files in "
            f"{len(subfolders)} class sub-folders). Put the images in one sub-folder per class."
        )
    if empty:
        listed = ", ".join(str(p) for p in empty)
        raise DataError(
            f"Empty class folder: {listed} holds no images ({', '.join(IMAGE_EXTENSIONS)}). Add "
            "images to it or remove the folder."
        )
    if class_names is None and len(names) < 2:
        raise DataError(
            f"{root}: only one class ({names[0]!r}); a classifier needs at least two. Add a "
            "sub-folder of images for each other class."
        )
    return ClassFolders(root, names, paths, np.asarray(labels, dtype=np.int64), skipped)


def _find_split_folders(root: Path) -> tuple[Path, Path] | None:
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    train = next((children[n] for n in TRAIN_NAMES if n in children), None)
    validation = next((children[n] for n in VALIDATION_NAMES if n in children), None)
    if train is None and validation is None:
        return None
    if train is None or validation is None:
        have, missing = (
            (train.name, "validation/ (or val/)") if train else (validation.name, "train/")
        )
        raise DataError(
            f"{root}: has {have}/ but no {missing}. Either give both train/ and validation/ "
            "folders of class sub-folders, or only class sub-folders (split automatically)."
        )
    return train, validation


def _check_usable(folder: ImageFolder, require_validation: bool = True) -> None:
    missing = [
        name for i, name in enumerate(folder.class_names)
        if not np.any(np.asarray(folder.train_labels) == i)
    ]
    if missing:
        raise DataError(
            f"{folder.root}: no readable training images for class "
            f"{', '.join(map(repr, missing))}. Add images of every class."
        )
    if not require_validation or len(folder.validation_labels):
        return
    if folder.layout == "split":
        raise DataError(f"{folder.root}: no readable validation images. Add images to the "
                        "validation folder's class folders.")
    raise DataError(  # split here: a class of two readable images gives one to validation
        f"{folder.root}: no readable validation images (a class of one image keeps it for "
        "training). Add images: at least two readable ones of each class."
    )


def _hash_all(paths: list[str]) -> dict[str, str]:
    from concurrent.futures import ThreadPoolExecutor

    from transferkit.files import sha256_file

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(paths, pool.map(sha256_file, paths)))


def _duplicate_groups(entries: list[tuple[str, str, str]], digests: dict[str, str]) -> list[dict]:
    """`entries` are `(path, split, class)`; groups of 2+ identical files."""
    groups: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for entry in entries:
        groups[digests[entry[0]]].append(entry)
    return [
        {
            "sha256": digest,
            "paths": [e[0] for e in members],
            "splits": [e[1] for e in members],
            "classes": [e[2] for e in members],
        }
        for digest, members in sorted(groups.items(), key=lambda kv: kv[1][0][0])
        if len(members) > 1
    ]


def discover_image_folder(
    data_dir: str | os.PathLike,
    validation_size: float = ImageTrainConfig.validation_size,
    seed: int = ImageTrainConfig.seed,
    require_validation: bool = True,
) -> ImageFolder:
    """Finds the images and classes under `data_dir` and splits them.

    Args:
        data_dir: class sub-folders, or `train/` and `validation/` (or `val/`) with class
            sub-folders each.
        validation_size: share of each class kept for validation when the folder is not split
            already. Default `ImageTrainConfig.validation_size` (0.2).
        seed: seed of that split. Default `ImageTrainConfig.seed` (0).
        require_validation: refuse a split without validation images (training needs some).
            Default `True`; `False` for what measures the data without training on it (`check`,
            `rank`), where one image a class is a fact to report, not a reason to stop.

    Returns:
        An `ImageFolder`.

    Raises:
        DataError: a missing folder, no images, an empty class folder, a single class, train and
            validation with different classes, or (with `require_validation`) no validation image.
        InputError: `validation_size` not between 0 and 1.
    """
    root = Path(data_dir)
    _require_folder(root, "one sub-folder of images per class")
    split_folders = _find_split_folders(root)
    if split_folders is None:
        folder = _split_here(root, validation_size, seed)
    else:
        folder = _split_given(root, *split_folders)
    names = folder.class_names
    entries = [(p, "train", names[l]) for p, l in zip(folder.train_paths, folder.train_labels)]
    entries += [
        (p, "validation", names[l])
        for p, l in zip(folder.validation_paths, folder.validation_labels)
    ]
    folder.duplicates = _duplicate_groups(entries, folder.digests)
    _check_usable(folder, require_validation)
    return folder


def _split_here(root: Path, validation_size: float, seed: int) -> ImageFolder:
    """Class sub-folders, split into train and validation here (seeded, stratified)."""
    check_fraction(validation_size, "validation_size")
    found = read_class_folders(root)
    digests = _hash_all(found.paths)
    split = stratified_split(
        found.labels, {"validation": float(validation_size)}, seed,
        groups=[digests[p] for p in found.paths],
    )
    train_idx, val_idx = split["train"], split["validation"]
    return ImageFolder(
        root=root,
        layout="class_folders",
        class_names=found.class_names,
        train_paths=[found.paths[i] for i in train_idx],
        train_labels=found.labels[train_idx],
        validation_paths=[found.paths[i] for i in val_idx],
        validation_labels=found.labels[val_idx],
        skipped=found.skipped,
        digests=digests,
        validation_size=float(validation_size),
        seed=int(seed),
    )


def _split_given(root: Path, train_dir: Path, validation_dir: Path) -> ImageFolder:
    """`train/` and `validation/` folders of class sub-folders, as given."""
    train = read_class_folders(train_dir)
    validation_names = sorted(
        p.name for p in validation_dir.iterdir() if p.is_dir() and _visible(p)
    )
    if set(validation_names) - set(train.class_names):  # fewer is fine: named as unmeasured
        raise DataError(
            f"{root}: train/ has classes {train.class_names} but {validation_dir.name}/ has "
            f"{validation_names}; a class needs training images. Give both the same classes.")
    validation = read_class_folders(validation_dir, class_names=train.class_names)
    digests = _hash_all(train.paths + validation.paths)
    return ImageFolder(
        root=root,
        layout="split",
        class_names=train.class_names,
        train_paths=train.paths,
        train_labels=train.labels,
        validation_paths=validation.paths,
        validation_labels=validation.labels,
        skipped=train.skipped + validation.skipped,
        digests=digests,
    )


def read_evaluation_folder(path: str | os.PathLike, class_names) -> ClassFolders:
    """The labelled images to measure a model on: `path`'s class sub-folders, or those of its
    `validation/` (or `val/`) folder when it holds `train/` and `validation/`.

    Args:
        path: the data folder.
        class_names: the model's classes; sub-folders must be among them.

    Raises:
        DataError: as `read_class_folders`.
    """
    root = Path(path)
    _require_folder(root, "one sub-folder of images per class")
    pair = _find_split_folders(root)
    return read_class_folders(pair[1] if pair else root, class_names=class_names)


def first_image(path: str | os.PathLike) -> Path:
    """`path` itself if it is a file, else the first image (sorted) of a data folder's training
    images; for previews.

    Raises:
        DataError: no such path, or a folder without images.
    """
    path = Path(path)
    if path.is_file():
        return path
    _require_folder(path, "images")
    pair = _find_split_folders(path)
    folder = pair[0] if pair else path
    images = walk_images(folder, [])
    if not images:
        raise DataError(
            f"{path}: no images found ({', '.join(IMAGE_EXTENSIONS)}). Pass an image file or a "
            "folder with images."
        )
    return images[0]
