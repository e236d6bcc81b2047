"""Image folders: the two layouts, the seeded stratified split, skips, duplicates and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferkit.data.image_folder import (
    ImageFolder,
    discover_image_folder,
    first_image,
    read_class_folders,
)
from transferkit.errors import DataError, InputError


def _image(path: Path, value: int, size=(6, 5)) -> Path:
    """A small distinct image (its content depends on `value`, so files differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), value % 256, dtype=np.uint8)
    pixels[0, 0] = (value // 256, value % 7, 3)
    Image.fromarray(pixels).save(path)
    return path


def _classes(root: Path, counts: dict[str, int], start: int = 0) -> Path:
    value = start
    for name, count in counts.items():
        for i in range(count):
            _image(root / name / f"{name}{i}.png", value)
            value += 1
    return root


def test_class_folders_split_stratified_and_seeded(tmp_path):
    root = _classes(tmp_path / "data", {"cats": 10, "dogs": 20})
    folder = discover_image_folder(root, validation_size=0.2, seed=0)
    assert isinstance(folder, ImageFolder) and folder.layout == "class_folders"
    assert folder.class_names == ["cats", "dogs"]
    assert folder.class_counts() == {
        "train": {"cats": 8, "dogs": 16},
        "validation": {"cats": 2, "dogs": 4},
    }
    assert not set(folder.train_paths) & set(folder.validation_paths)
    assert all(Path(p).parent.name == "cats" for p, label in
               zip(folder.train_paths, folder.train_labels) if label == 0)
    again = discover_image_folder(root, validation_size=0.2, seed=0)
    assert again.validation_paths == folder.validation_paths
    other = discover_image_folder(root, validation_size=0.2, seed=1)
    assert other.validation_paths != folder.validation_paths
    summary = folder.summary()
    assert summary["train_images"] == 24 and summary["validation_images"] == 6
    assert summary["skipped_files"] == 0 and summary["duplicates_across_splits"] == 0


@pytest.mark.parametrize("validation_name", ["validation", "val"])
def test_given_split_is_used(tmp_path, validation_name):
    root = tmp_path / "data"
    _classes(root / "train", {"a": 3, "b": 4})
    _classes(root / validation_name, {"a": 1, "b": 2}, start=100)
    folder = discover_image_folder(root, validation_size=0.5)
    assert folder.layout == "split" and folder.validation_size is None
    assert len(folder.train_paths) == 7 and len(folder.validation_paths) == 3
    assert all(f"/{validation_name}/" in p for p in folder.validation_paths)


def test_nested_folders_belong_to_their_class_and_other_files_are_listed(tmp_path):
    root = _classes(tmp_path / "data", {"a": 4, "b": 4})
    _image(root / "a" / "more" / "deep.jpg", 200)
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / ".DS_Store").write_bytes(b"\0")  # hidden: the system's, not read but listed
    (root / "loose.png").write_bytes(b"")
    folder = discover_image_folder(root, validation_size=0.25)
    paths = folder.train_paths + folder.validation_paths
    assert str(root / "a" / "more" / "deep.jpg") in paths and len(paths) == 9
    reasons = {Path(s["path"]).name: s["reason"] for s in folder.skipped}
    assert set(reasons) == {"notes.txt", "loose.png", ".DS_Store"}
    assert reasons[".DS_Store"] == "hidden file"
    assert "not an image file (extension '.txt'" in reasons["notes.txt"]
    assert "not inside a class sub-folder" in reasons["loose.png"]


def test_duplicates_stay_on_one_side_of_a_split_made_here(tmp_path):
    root = _classes(tmp_path / "data", {"a": 10, "b": 10})
    for i in range(4):  # four extra copies of one image
        shutil.copy(root / "a" / "a0.png", root / "a" / f"copy{i}.png")
    folder = discover_image_folder(root, validation_size=0.3, seed=3)
    assert len(folder.duplicates) == 1
    group = folder.duplicates[0]
    assert len(group["paths"]) == 5 and len(set(group["splits"])) == 1
    assert folder.duplicates_across_splits == []


def test_duplicates_across_a_given_split_are_reported(tmp_path):
    root = tmp_path / "data"
    _classes(root / "train", {"a": 3, "b": 3})
    _classes(root / "validation", {"a": 2, "b": 2}, start=50)
    shutil.copy(root / "train" / "a" / "a1.png", root / "validation" / "b" / "leak.png")
    folder = discover_image_folder(root)
    assert len(folder.duplicates_across_splits) == 1
    group = folder.duplicates_across_splits[0]
    assert sorted(group["splits"]) == ["train", "validation"]
    assert folder.conflicting_duplicates == [group]  # labelled a in train, b in validation
    assert folder.summary()["duplicates_across_splits"] == 1


def test_unreadable_files_leave_the_splits_and_are_listed(tmp_path):
    root = _classes(tmp_path / "data", {"a": 5, "b": 5})
    folder = discover_image_folder(root, validation_size=0.2)
    victim = folder.train_paths[0]
    folder.add_unreadable([{"path": victim, "reason": f"{victim}: corrupt"}])
    assert victim not in folder.train_paths and len(folder.train_labels) == 7
    assert folder.skipped == [{"path": victim, "reason": f"{victim}: corrupt"}]


def test_empty_class_folder(tmp_path):
    root = _classes(tmp_path / "data", {"a": 3})
    (root / "b").mkdir()
    with pytest.raises(DataError, match=r"Empty class folder: .*b holds no images"):
        discover_image_folder(root)


def test_single_class(tmp_path):
    root = _classes(tmp_path / "data", {"only": 3})
    with pytest.raises(DataError, match=r"only one class \('only'\); a classifier needs at least two"):
        discover_image_folder(root)


def test_no_images_at_all(tmp_path):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images found \(looked for \.jpg"):
        discover_image_folder(tmp_path / "data")


def test_images_without_class_folders(tmp_path):
    _image(tmp_path / "data" / "x.png", 1)
    with pytest.raises(DataError, match=r"no class sub-folders\. It holds 1 files directly"):
        discover_image_folder(tmp_path / "data")


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(DataError, match=r"nope: no such folder"):
        discover_image_folder(tmp_path / "nope")
    file = _image(tmp_path / "x.png", 1)
    with pytest.raises(DataError, match=r"x\.png: is a file, expected a folder"):
        discover_image_folder(file)


def test_train_without_validation_folder(tmp_path):
    _classes(tmp_path / "data" / "train", {"a": 2, "b": 2})
    with pytest.raises(DataError, match=r"has train/ but no validation/ \(or val/\)"):
        discover_image_folder(tmp_path / "data")


def test_train_and_validation_with_different_classes(tmp_path):
    _classes(tmp_path / "data" / "train", {"a": 2, "b": 2})
    _classes(tmp_path / "data" / "val", {"a": 2, "c": 2}, start=10)
    with pytest.raises(DataError, match=r"train/ has classes \['a', 'b'\] but val/ has \['a', 'c'\]"):
        discover_image_folder(tmp_path / "data")


def test_a_given_validation_folder_may_lack_a_class(tmp_path):
    # Issue 16: a split where validation lacks a class trains, naming the class as not measured.
    _classes(tmp_path / "data" / "train", {"a": 2, "b": 2, "c": 2})
    _classes(tmp_path / "data" / "val", {"a": 2, "c": 2}, start=10)
    folder = discover_image_folder(tmp_path / "data")
    assert folder.class_names == ["a", "b", "c"]
    assert folder.classes_without_validation == ["b"]
    assert folder.class_counts()["validation"] == {"a": 2, "b": 0, "c": 2}


@pytest.mark.parametrize("split", [0, 1, 1.5, -0.1, True, "0.2"])
def test_bad_validation_size(tmp_path, split):
    root = _classes(tmp_path / "data", {"a": 2, "b": 2})
    with pytest.raises(InputError, match=r"`validation_size` must be a number in \(0, 1\)"):
        discover_image_folder(root, validation_size=split)


def test_unknown_class_when_evaluating(tmp_path):
    root = _classes(tmp_path / "data", {"a": 2, "zebra": 2})
    with pytest.raises(DataError, match=r"'zebra' are not classes of the model, which knows 'a', 'b'"):
        read_class_folders(root, class_names=["a", "b"])
    found = read_class_folders(root / ".." / "data", class_names=["zebra", "a"])
    assert sorted(set(found.labels.tolist())) == [0, 1]
    assert all(("zebra" in p) == (label == 0) for p, label in zip(found.paths, found.labels))


def test_tiny_classes_keep_a_training_image(tmp_path):
    root = _classes(tmp_path / "data", {"a": 1, "b": 2, "c": 9})
    folder = discover_image_folder(root, validation_size=0.5)
    counts = folder.class_counts()
    assert counts["train"] == {"a": 1, "b": 1, "c": 5}  # round(4.5) == 4 held out
    assert counts["validation"] == {"a": 0, "b": 1, "c": 4}


def test_first_image(tmp_path):
    root = _classes(tmp_path / "data", {"b": 2, "a": 2})
    assert first_image(root) == root / "a" / "a0.png"
    assert first_image(root / "b" / "b1.png") == root / "b" / "b1.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no images found"):
        first_image(tmp_path / "empty")
