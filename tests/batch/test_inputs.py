"""What a model is given: `check_kind` refuses the other modality's inputs (issue 16, bug 9)."""

from __future__ import annotations

import pytest

from transferkit.batch.inputs import check_kind, read_inputs
from transferkit.errors import InputError


@pytest.fixture
def files(tmp_path):
    (tmp_path / "photos").mkdir()
    for name in ("photos/cat.jpg", "table.csv", "texts.txt", "reviews.parquet"):
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize("task, item, purpose, message", [
    ("text", "photos", "predict", r"m: this is a text model; .*photos is a folder: pass texts"),
    ("text", "photos/cat.jpg", "predict", r"cat\.jpg is an image file: pass texts or a table"),
    ("text", "gone/dog.PNG", "predict", r"dog\.PNG is an image file"),
    ("text", "photos", "evaluate", r"is a folder: pass a table of texts .* with their labels"),
    ("text", "photos/cat.jpg", "batch", r"is an image file: pass a table of texts"),
    ("text", "table.csv", "predict", r"table\.csv is a file of texts: .* add `output`"),
    ("text", "texts.txt", "predict", r"texts\.txt is a file of texts"),
    ("image", "table.csv", "predict", r"this is an image model; .*table\.csv is a table of texts"),
    ("image", "reviews.parquet", "batch", r"reviews\.parquet is a table of texts"),
    ("image", "texts.txt", "predict", r"texts\.txt is a text file: .*with `output`"),
])
def test_the_other_modality_is_refused(files, monkeypatch, task, item, purpose, message):
    monkeypatch.chdir(files)
    with pytest.raises(InputError, match=message):
        check_kind(task, [item], purpose, model="m")


@pytest.mark.parametrize("task, items, purpose", [
    ("text", ["a great film", "the photo.jpg was dull", "cat.jpg is a name"], "predict"),
    ("text", ["table.csv"], "batch"),
    ("text", ["texts.txt"], "evaluate"),
    ("image", ["photos/cat.jpg", "photos"], "predict"),
    ("image", ["texts.txt"], "batch"),  # a list of image paths
    ("image", ["photos"], "evaluate"),
])
def test_what_fits_passes(files, monkeypatch, task, items, purpose):
    monkeypatch.chdir(files)
    check_kind(task, items, purpose)


def test_read_inputs_checks_the_kind_first(files):
    with pytest.raises(InputError, match=r"^This is a text model; .*photos is a folder"):
        read_inputs(files / "photos", "text")
    with pytest.raises(InputError, match=r"^job: this is an image model; .*table\.csv"):
        read_inputs(files / "table.csv", "image", model="job")


def test_a_list_of_texts_in_another_encoding(tmp_path):
    # Issue 16: a Latin-1 line gave a UnicodeDecodeError traceback; now it is skipped by line.
    listing = tmp_path / "texts.txt"
    listing.write_bytes("a fine film\ncaf\xe9 cr\xe8me\n\nthe end\n".encode("latin-1"))
    inputs = read_inputs([listing], "text")
    assert inputs.items == ["a fine film", "the end"]
    assert inputs.skipped == [
        {"line": 2, "reason": "not valid UTF-8 (re-save the file as UTF-8)"},
        {"line": 3, "reason": "empty line"},
    ]
    listing.write_text("un café\nla fin\n", encoding="utf-16")  # with its byte-order mark
    assert read_inputs([listing], "text").items == ["un café", "la fin"]
