"""Bad input to `transferkit explain` (issue 30), as `predict` meets it: each refused in one line
that says what was wrong and how to fix it, with nothing written; or, for inputs that are merely
odd (an empty text), an answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _cli(argv) -> tuple[int, str, str]:
    from conftest import _run_cli

    return _run_cli([str(a) for a in argv])


def _one_line(code: int, err: str) -> str:
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def _bad_files(folder: Path, photo: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.png").write_text("not an image")
    (folder / "cut.png").write_bytes(photo.read_bytes()[:120])
    (folder / "a_folder").mkdir(exist_ok=True)
    return {"text named .png": (folder / "notes.png", "not an image Pillow can read"),
            "truncated": (folder / "cut.png", "corrupt or truncated"),
            "a folder": (folder / "a_folder", "is a folder, expected an image file")}


@pytest.mark.parametrize("case", ["text named .png", "truncated", "a folder"])
def test_unreadable_images_are_one_line_and_write_nothing(image_run, tmp_path, case):
    _, _, _, run, data = image_run
    path, said = _bad_files(tmp_path / "bad", sorted(Path(data).rglob("*.png"))[0])[case]
    code, _, err = _cli(["explain", run, path, "--output", tmp_path / "out"])
    assert said in _one_line(code, err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(("args", "said"), [
    (["--method", "occlusion"], "--method must be one of gradcam, gradcam++, layercam"),
    (["--method", "integrated-gradients"], "--method must be one of gradcam, gradcam++, layercam"),
    (["--output", "{file}"], "is a file"),
])
def test_wrong_settings_are_one_line(image_run, tmp_path, args, said):
    _, _, _, run, data = image_run
    photo = sorted(Path(data).rglob("*.png"))[0]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    args = [a.format(file=a_file) for a in args]
    if "--output" not in args:
        args += ["--output", tmp_path / "out"]
    code, _, err = _cli(["explain", run, photo, *args])
    assert said in _one_line(code, err)


def test_an_empty_text_is_answered_with_no_words(text_run, tmp_path):
    _, _, _, run, _ = text_run
    code, out, err = _cli(["explain", run, "", "--output", tmp_path / "out", "--json"])
    assert code == 0, err
    (row,) = json.loads(out.strip().splitlines()[-1])
    assert row["words"] == [] and Path(row["files"][0]).is_file()
