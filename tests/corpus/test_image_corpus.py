"""The corpus of bad image inputs (issue 16): each case either loads as the right RGB pixels, or is
skipped with a reason that names the file and what is wrong, never a traceback, a hang or a
silently dropped file. Files are built here with Pillow and numpy; only the last test trains.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import photo
from transferkit.data.image_folder import discover_image_folder, read_class_folders
from transferkit.data.images import DecodeLog, image_batches, load_image, load_resized
from transferkit.errors import ImageReadError


def _save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of_zeros(path: Path, width: int, height: int) -> Path:
    """A valid black 1-bit PNG of `width` x `height`, tiny on disk however large (zeros compress
    1000:1): a 30000x30000 one is a decompression bomb of ~110 KB."""
    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data)
                     + _chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """A 30000x30000 decompression bomb and a 20000x20000 image, both valid PNGs."""
    folder = tmp_path_factory.mktemp("bombs")
    return {"bomb": png_of_zeros(folder / "bomb.png", 30000, 30000),
            "large": png_of_zeros(folder / "large.png", 20000, 20000)}


def _jpeg(path: Path, seed: int = 0) -> Path:
    return _save(path, Image.fromarray(photo(seed=seed)), quality=95)


# -- files that are not images, or not whole ----------------------------------------------------


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: empty file \(0 bytes\)"):
        load_image(path)


@pytest.mark.parametrize("cut", [2, 100, 0.25, 0.5, 0.9, -2])
def test_truncated_jpeg(tmp_path, cut):
    """Cut in the header, in the pixel data, or only the 2-byte end marker missing: all skipped
    (Pillow refuses a JPEG whose end it cannot find, rather than guess the missing pixels)."""
    whole = _jpeg(tmp_path / "whole.jpg").read_bytes()
    keep = cut if isinstance(cut, int) else int(len(whole) * cut)
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[:keep])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: (the image is corrupt or truncated|not "
                                             r"an image)"):
        load_resized(path, 32)


def test_text_with_an_image_extension(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("shopping list: milk, eggs\n")
    with pytest.raises(ImageReadError, match=r"notes\.png: not an image Pillow can read"):
        load_image(path)


def test_html_saved_as_jpg(tmp_path):
    path = tmp_path / "page.jpg"
    path.write_text("<!DOCTYPE html>\n<html><head><title>cat.jpg</title></head><body>403</body>")
    with pytest.raises(ImageReadError, match=r"page\.jpg: an HTML page, not an image"):
        load_image(path)


def test_png_with_a_jpg_name_loads(tmp_path):
    pixels = photo()
    path = _save(tmp_path / "really_png.jpg", Image.fromarray(pixels), format="PNG")
    np.testing.assert_array_equal(load_image(path), pixels)


# -- formats and modes: the right RGB pixels ----------------------------------------------------


def test_gif_with_several_frames_gives_the_first(tmp_path):
    frames = [Image.new("RGB", (8, 6), color) for color in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = _save(tmp_path / "anim.gif", frames[0], save_all=True, append_images=frames[1:],
                 duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 3
    assert (load_image(path) == (255, 0, 0)).all()


def test_animated_webp_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), color) for color in ((250, 0, 0), (0, 0, 250))]
    path = _save(tmp_path / "anim.webp", frames[0], save_all=True, append_images=frames[1:],
                 duration=100, lossless=True)
    with Image.open(path) as check:
        assert check.n_frames == 2
    assert (load_image(path) == (250, 0, 0)).all()


def test_cmyk_jpeg(tmp_path):
    path = _save(tmp_path / "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=100)
    red = load_image(path).astype(int)
    assert red.shape == (8, 8, 3) and (red[..., 0] > 240).all() and (red[..., 1:] < 15).all()


def test_sixteen_bit_grayscale_keeps_its_range(tmp_path):
    values = np.array([[0, 1000], [30000, 60000]], dtype=np.uint16)
    path = _save(tmp_path / "deep.png", Image.fromarray(values))
    rgb = load_image(path)
    assert (rgb[..., 0] == rgb[..., 2]).all()
    np.testing.assert_array_equal(rgb[..., 0], [[0, 4], [127, 255]])  # x 255/60000


def test_la_composites_over_white(tmp_path):
    la = np.array([[[0, 255], [0, 0]]], dtype=np.uint8)  # black opaque, black transparent
    path = _save(tmp_path / "la.png", Image.fromarray(la, mode="LA"))
    np.testing.assert_array_equal(load_image(path), [[[0, 0, 0], [255, 255, 255]]])


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255] + [10, 200, 10] + [0] * 762)
    image.putdata([0, 1])
    path = _save(tmp_path / "p.png", image, transparency=0)
    np.testing.assert_array_equal(load_image(path), [[[255, 255, 255], [10, 200, 10]]])


def test_one_bit(tmp_path):
    bits = Image.fromarray(np.array([[0, 255, 0]], dtype=np.uint8)).convert("1")
    path = _save(tmp_path / "bits.png", bits)
    np.testing.assert_array_equal(load_image(path)[..., 1], [[0, 255, 0]])


@pytest.mark.parametrize("orientation, turn", [(3, 2), (6, -1), (8, 1)])
def test_exif_rotated_jpeg_pixels_are_rotated(tmp_path, orientation, turn):
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:20, :30] = (250, 0, 0)  # a red top-left quarter
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "rotated.jpg", Image.fromarray(pixels), exif=exif, quality=100)
    loaded = load_image(path).astype(int)
    expected = np.rot90(pixels, turn).astype(int)
    assert loaded.shape == expected.shape
    assert np.abs(loaded - expected).mean() < 3


def test_one_pixel_image(tmp_path):
    path = _save(tmp_path / "dot.png", Image.new("RGB", (1, 1), (9, 99, 199)))
    assert load_image(path).tolist() == [[[9, 99, 199]]]
    resized = load_resized(path, 32)
    assert resized.shape == (32, 32, 3) and (resized == (9, 99, 199)).all()


# -- too many pixels -----------------------------------------------------------------------------


@pytest.mark.parametrize("name, size", [("bomb", "30000x30000"), ("large", "20000x20000")])
def test_too_many_pixels_is_a_skip_with_the_reason(bombs, name, size):
    path = bombs[name]
    assert path.stat().st_size < 1_000_000
    limit = 2 * Image.MAX_IMAGE_PIXELS
    pattern = rf"{name}\.png: {size} pixels is over Pillow's limit of {limit:,} pixels"
    with pytest.raises(ImageReadError, match=pattern):
        load_resized(path, 224)
    log = DecodeLog()
    (images, ok), = image_batches([path], image_size=32, batch_size=4, decode_log=log)
    assert ok.tolist() == [False] and "decompression bomb" in log.errors[str(path)]


def test_between_the_warning_and_the_error_loads(tmp_path, monkeypatch):
    """Pillow warns (DecompressionBombWarning) from MAX_IMAGE_PIXELS to twice that, and refuses
    above: a big-but-real photo loads (the warning is expected, not an error); twice over is
    skipped. The limit is lowered here so that the images stay small."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    big = _save(tmp_path / "big.png", Image.new("RGB", (150, 100), (1, 2, 3)))  # 1.5x
    assert load_image(big).shape == (100, 150, 3)
    assert load_resized(big, 16).shape == (16, 16, 3)
    huge = _save(tmp_path / "huge.png", Image.new("RGB", (150, 150), (1, 2, 3)))  # 2.25x
    with pytest.raises(ImageReadError, match=r"huge\.png: 150x150 pixels is over"):
        load_image(huge)


_PEAK = """
import resource, sys
from transferkit.data.images import load_resized
from transferkit.errors import ImageReadError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_resized(sys.argv[1], 224)
except ImageReadError:
    pass
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.parametrize("name", ["bomb", "large"])
def test_too_many_pixels_costs_no_memory(bombs, name):
    """The peak memory of a process that meets the file stays within 20 MB of what it had
    (decoding it would take 0.9 to 2.7 GB)."""
    out = subprocess.run([sys.executable, "-c", _PEAK, os.fspath(bombs[name])], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    before, after = map(int, out.split())
    assert after - before < 20_000  # KiB


@pytest.mark.slow  # builds EfficientNet-Lite0 with its ImageNet top (~6 s)
def test_predict_imagenet_skips_the_bomb_and_predicts_the_others(bombs, tmp_path, capsys):
    from transferkit.cli import main

    good = _jpeg(tmp_path / "good.jpg")
    code = main(["predict-imagenet", str(bombs["bomb"]), str(good), "--top", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    bomb, photo_result = json.loads(out.strip().splitlines()[-1])
    assert bomb["top"] == [] and "30000x30000 pixels is over Pillow's limit" in bomb["skipped"]
    assert len(photo_result["top"]) == 1 and "skipped" not in photo_result


# -- files that are not plain files --------------------------------------------------------------


def _finishes(function, seconds: float = 10.0):
    """Runs `function` in a thread: what it returned or raised, or a failure if it hangs."""
    outcome: dict = {}

    def call():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still running after {seconds} s: it hangs")
    return outcome


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_named_pipe_with_an_image_name_is_refused_without_hanging(tmp_path):
    pipe = tmp_path / "data" / "cat" / "pipe.jpg"
    pipe.parent.mkdir(parents=True)
    os.mkfifo(pipe)
    outcome = _finishes(lambda: load_image(pipe))
    assert isinstance(outcome.get("error"), ImageReadError)
    assert "pipe.jpg: not a regular file (a named pipe)" in str(outcome["error"])
    for i in range(3):
        _jpeg(tmp_path / "data" / "cat" / f"c{i}.jpg", seed=i)
        _jpeg(tmp_path / "data" / "dog" / f"d{i}.jpg", seed=10 + i)
    outcome = _finishes(lambda: discover_image_folder(tmp_path / "data", validation_size=0.34))
    folder = outcome["value"]
    assert str(pipe) not in folder.train_paths + folder.validation_paths
    assert {"path": str(pipe), "reason": "not a regular file (a named pipe)"} in folder.skipped


def _load_as_nobody(path: Path) -> str:
    """Root reads any file whatever its permissions (CI may run as root): a forked child drops to
    user `nobody` and loads `path`. Returns what happened, as text."""
    import select
    import signal
    import warnings

    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns on fork beside threads (TensorFlow's);
        warnings.simplefilter("ignore", DeprecationWarning)  # the child only runs the loader
        pid = os.fork()
    if pid == 0:  # the child: no pytest code runs here, only the loader, then _exit
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                load_image(path)
                message = "loaded"
            except ImageReadError as exc:
                message = str(exc)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 20)
        return os.read(read, 4096).decode() if ready else "still running after 20 s"
    finally:
        os.close(read)
        if os.waitpid(pid, os.WNOHANG)[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="file permissions need a POSIX system")
def test_unreadable_permissions():
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="transferkit-locked-"))  # others may enter it
    try:
        folder.chmod(0o755)
        path = _jpeg(folder / "locked.jpg")
        path.chmod(0)
        if os.geteuid() == 0:
            outcome = _load_as_nobody(path)
        else:
            with pytest.raises(ImageReadError) as caught:
                load_image(path)
            outcome = str(caught.value)
        assert outcome == f"{path}: permission denied. Make the file readable."
    finally:
        shutil.rmtree(folder)


# -- folders --------------------------------------------------------------------------------------


def _class_folders(root: Path, counts: dict[str, int]) -> Path:
    seed = 0
    for name, count in counts.items():
        for i in range(count):
            _jpeg(root / name / f"{i}.jpg", seed=seed)
            seed += 1
    return root


def test_symlink_loop_is_not_followed(tmp_path):
    root = _class_folders(tmp_path / "data", {"cat": 6, "dog": 6})
    (root / "cat" / "again").symlink_to(root / "cat", target_is_directory=True)
    (root / "dog" / "sub").mkdir()
    (root / "dog" / "sub" / "up").symlink_to(root / "dog", target_is_directory=True)
    (root / "dog" / "sub" / "top").symlink_to(root, target_is_directory=True)  # cat's images too
    outcome = _finishes(lambda: discover_image_folder(root, validation_size=0.5))
    folder = outcome["value"]
    assert len(folder.train_paths) + len(folder.validation_paths) == 12
    reasons = {s["path"]: s["reason"] for s in folder.skipped}
    assert reasons[str(root / "cat" / "again")].startswith(
        "a link to a folder already read (a loop")
    assert str(root / "dog" / "sub" / "up") in reasons
    assert str(root / "dog" / "sub" / "top") in reasons


def test_symlinked_images_are_kept_and_the_same_file_twice_is_a_duplicate(tmp_path):
    elsewhere = _jpeg(tmp_path / "elsewhere" / "photo.jpg", seed=50)
    root = _class_folders(tmp_path / "data", {"cat": 4, "dog": 4})
    (root / "cat" / "linked.jpg").symlink_to(elsewhere)
    (root / "cat" / "linked_again.jpg").symlink_to(elsewhere)
    (root / "shared").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    folder = read_class_folders(root, class_names=["cat", "dog", "shared"])
    assert str(root / "cat" / "linked.jpg") in folder.paths
    assert str(root / "shared" / "photo.jpg") in folder.paths
    folder = discover_image_folder(root / ".." / "data", validation_size=0.25)
    groups = [sorted(Path(p).name for p in d["paths"]) for d in folder.duplicates]
    assert ["linked.jpg", "linked_again.jpg", "photo.jpg"] in groups
    assert len(folder.conflicting_duplicates) == 1  # cat and shared hold the same photo


def test_hidden_files_and_macos_folders_are_ignored_and_listed(tmp_path):
    root = _class_folders(tmp_path / "data", {"cat": 3, "dog": 3})
    (root / "cat" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "cat" / "._0.jpg").write_bytes(b"\0\5\26\7")  # AppleDouble, with an image name
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    for parent in (root, root / "dog"):
        (parent / "__MACOSX" / "dog").mkdir(parents=True)
        (parent / "__MACOSX" / "dog" / "._1.jpg").write_bytes(b"\0\5\26\7")
    folder = discover_image_folder(root, validation_size=0.34)
    assert folder.class_names == ["cat", "dog"]
    assert len(folder.train_paths) + len(folder.validation_paths) == 6
    reasons = {Path(s["path"]).relative_to(root).as_posix(): s["reason"] for s in folder.skipped}
    assert reasons == {
        "cat/.DS_Store": "hidden file",
        "cat/._0.jpg": "hidden file",
        ".git": "hidden folder (not read)",
        "__MACOSX": "macOS resource folder (not read)",
        "dog/__MACOSX": "macOS resource folder (not read)",
    }


def test_class_names_with_spaces_unicode_and_dots(tmp_path):
    names = ["big cat", "chat noir é 猫", "v1.2.dog"]
    root = _class_folders(tmp_path / "data", {name: 3 for name in names})
    folder = discover_image_folder(root, validation_size=0.34)
    assert folder.class_names == sorted(names)
    assert folder.class_counts()["validation"] == {name: 1 for name in sorted(names)}


def test_a_class_with_one_image_is_named_as_not_validated(tmp_path):
    root = _class_folders(tmp_path / "data", {"cat": 5, "dog": 1})
    folder = discover_image_folder(root, validation_size=0.2)
    assert folder.classes_without_validation == ["dog"]
    assert folder.summary()["classes_without_validation"] == ["dog"]


def test_validation_that_loses_a_class_to_unreadable_files_says_so(tmp_path):
    root = tmp_path / "data"
    _class_folders(root / "train", {"cat": 2, "dog": 2})
    _class_folders(root / "validation", {"cat": 1})
    bad = root / "validation" / "dog" / "bad.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff")
    folder = discover_image_folder(root)
    assert folder.classes_without_validation == []
    folder.add_unreadable([{"path": str(bad), "reason": f"{bad}: corrupt"}])
    assert folder.classes_without_validation == ["dog"]


def test_the_same_image_in_two_classes_is_a_conflict(tmp_path):
    root = _class_folders(tmp_path / "data", {"cat": 3, "dog": 3})
    (root / "dog" / "copy.jpg").write_bytes((root / "cat" / "0.jpg").read_bytes())
    folder = discover_image_folder(root, validation_size=0.34)
    conflict, = folder.conflicting_duplicates
    assert conflict["classes"] == ["cat", "dog"] or sorted(conflict["classes"]) == ["cat", "dog"]
    assert folder.summary()["conflicting_duplicates"] == 1
    line = folder.conflict_lines()[0]
    assert "cat/0.jpg (cat)" in line and "dog/copy.jpg (dog)" in line


# -- end to end: train and predict over a folder full of bad files -------------------------------


def _hostile_folder(root: Path, bombs) -> tuple[Path, dict[str, str]]:
    """Faces in class folders (with a one-image class), and every bad file the corpus has; returns
    the folder and the bad files (relative path -> a word their reason must contain)."""
    from helpers import write_faces

    write_faces(root, per_class=10)
    _jpeg(root / "rare class.v2" / "only.jpg", seed=7)
    whole = (root / "face" / "face_000.png").read_bytes()
    bad = {
        "face/empty.jpg": (b"", "empty file"),
        "face/cut.png": (whole[: len(whole) // 2], "truncated"),
        "face/notes.jpg": (b"just some words\n", "not an image"),
        "not_face/page.jpg": (b"<html><body>Not Found</body></html>", "HTML"),
        "not_face/bomb.png": (bombs["bomb"].read_bytes(), "decompression bomb"),
        "face/.DS_Store": (b"\0\0\0\1Bud1", "hidden file"),
        "face/readme.md": (b"# faces\n", "not an image file"),
    }
    for relative, (content, _) in bad.items():
        (root / relative).write_bytes(content)
    reasons = {relative: word for relative, (_, word) in bad.items()}
    (root / "__MACOSX").mkdir()
    reasons["__MACOSX"] = "macOS resource folder"
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "not_face" / "pipe.jpg")
        reasons["not_face/pipe.jpg"] = "named pipe"
    (root / "face" / "loop").symlink_to(root / "face", target_is_directory=True)
    reasons["face/loop"] = "loop"
    (root / "not_face" / "copy.png").write_bytes(whole)  # a face filed as not_face too
    return root, reasons


@pytest.mark.slow
def test_train_and_predict_over_a_folder_of_bad_files(tmp_path, bombs):
    from conftest import _run_cli

    root, reasons = _hostile_folder(tmp_path / "data", bombs)
    run = tmp_path / "run"
    code, out, err = _run_cli([
        "train", "images", root, "--image-size", "32", "--epochs", "2", "--fine-tune-epochs",
        "0", "--augment", "none", "--validation-size", "0.2", "--output", run, "--json",
    ])
    assert code == 0, err
    assert "Traceback" not in out + err
    result = json.loads(out.strip().splitlines()[-1])
    data = json.loads((run / "report" / "data.json").read_text())
    listed = {Path(s["path"]).relative_to(root).as_posix(): s["reason"] for s in data["skipped"]}
    assert set(listed) == set(reasons)
    for relative, word in reasons.items():
        assert word in listed[relative], (relative, listed[relative])
    good = 10 + 10 + 1 + 1  # faces, non-faces, the rare class and the conflicting copy
    assert result["train_images"] + result["validation_images"] == good
    assert result["skipped_files"] == len(reasons)
    assert result["classes_without_validation"] == ["rare class.v2"]
    assert result["conflicting_duplicates"] == 1
    summary = (run / "report" / "summary.txt").read_text()
    assert "rare class.v2" in summary and "not measured" in summary
    assert "face/face_000.png (face)" in summary and "not_face/copy.png (not_face)" in summary
    assert "Warning: class 'rare class.v2' has no validation images" in err + out

    model = run / "model.keras"
    inputs = [root / "face" / "face_001.png", root / "not_face" / "bomb.png",
              root / "not_face" / "not_face_002.png"]
    code, out, err = _run_cli(["predict", model, *inputs, "--output", tmp_path / "scores",
                               "--json"])
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["done"] == 3 and summary["errors"] == 1
    # `predict` without --output: an unreadable file is a `skipped` line, the others predicted;
    # only when nothing can be read is it one error line.
    code, out, err = _run_cli(["predict", model, *inputs])
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 3 and lines[1].startswith("skipped") and "bomb.png" in lines[1]
    assert "over Pillow's limit" in lines[1] and lines[2].endswith("not_face_002.png")
    if hasattr(os, "mkfifo"):
        pipe = root / "not_face" / "pipe.jpg"
        code, out, err = _run_cli(["predict", model, pipe])
        assert code == 1 and "Traceback" not in err and not out
        assert f"{pipe}: not a regular file (a named pipe)" in err.strip().splitlines()[-1]
