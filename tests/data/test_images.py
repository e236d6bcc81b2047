"""Reading images: `load_image`'s conversions and errors, `load_resized`, and the tf.data pipeline
(parallel decode, unreadable files listed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import photo
from transferkit.data.images import (
    DecodeLog,
    image_batches,
    image_dataset,
    load_image,
    load_resized,
    resize_image,
)
from transferkit.errors import ImageReadError, InputError


@pytest.fixture
def mixed_files(tmp_path):
    """One file per format and mode users have, plus a corrupt one."""
    base = Image.fromarray(photo())
    files = {}
    for name, image, suffix in [
        ("rgb", base, ".jpg"),
        ("gray", base.convert("L"), ".png"),
        ("rgba", base.convert("RGBA"), ".png"),
        ("palette", base.convert("P"), ".gif"),
        ("cmyk", base.convert("CMYK"), ".jpg"),
        ("bmp", base, ".bmp"),
        ("webp", base, ".webp"),
        ("sixteen", Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 200)), ".png"),
    ]:
        path = tmp_path / f"{name}{suffix}"
        image.save(path)
        files[name] = path
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(files["rgb"].read_bytes()[:200])
    files["corrupt"] = corrupt
    return files


def test_load_resized_matches_load_then_resize(mixed_files):
    for name, path in mixed_files.items():
        if name == "corrupt":
            continue
        fast = load_resized(path, (24, 32))
        assert fast.shape == (24, 32, 3) and fast.dtype == np.uint8, name
        slow = resize_image(load_image(path), (24, 32))
        np.testing.assert_allclose(fast, slow, atol=1, err_msg=name)


def test_load_resized_large_jpeg_decodes_at_reduced_scale_and_stays_close(tmp_path):
    big = np.asarray(Image.fromarray(photo(60, 80)).resize((1600, 1200), Image.BICUBIC))
    Image.fromarray(big).save(tmp_path / "big.jpg", quality=95)
    fast = load_resized(tmp_path / "big.jpg", 64).astype(float)
    full = resize_image(load_image(tmp_path / "big.jpg"), 64)
    assert np.abs(fast - full).mean() < 2.0


def test_load_resized_honours_exif_orientation(tmp_path):
    pixels = np.zeros((40, 100, 3), dtype=np.uint8)
    pixels[:, :50] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: the white half ends up on top
    image.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_resized(tmp_path / "r.jpg", (50, 20), "stretch").astype(float)
    assert out[:20].mean() > 200 and out[30:].mean() < 50


def test_load_resized_errors_are_load_image_errors(tmp_path, mixed_files):
    with pytest.raises(ImageReadError, match=r"nope\.jpg: no such file"):
        load_resized(tmp_path / "nope.jpg", 8)
    with pytest.raises(ImageReadError, match=r"corrupt\.jpg: the image is corrupt or truncated"):
        load_resized(mixed_files["corrupt"], 8)
    with pytest.raises(ValueError, match=r"`policy` must be 'center_crop' or 'stretch'"):
        load_resized(mixed_files["rgb"], 8, "pad")


def test_dataset_decodes_every_format_and_lists_the_unreadable(mixed_files):
    names = list(mixed_files)
    paths = [mixed_files[n] for n in names]
    labels = np.arange(len(paths))
    log = DecodeLog()
    dataset = image_dataset(paths, labels, image_size=16, batch_size=4, decode_log=log)
    images, seen = [], []
    for batch_images, batch_labels in dataset:
        images.append(batch_images.numpy())
        seen.extend(batch_labels.numpy().tolist())
    images = np.concatenate(images)
    assert images.shape == (len(paths) - 1, 16, 16, 3) and images.dtype == np.uint8
    assert seen == [i for i, n in enumerate(names) if n != "corrupt"]  # order kept, corrupt gone
    assert len(log) == 1
    (entry,) = log.items()
    assert entry["path"] == str(mixed_files["corrupt"]) and "corrupt or truncated" in entry["reason"]


def test_dataset_can_keep_rows_aligned(mixed_files):
    paths = [mixed_files["rgb"], mixed_files["corrupt"], mixed_files["webp"]]
    dataset = image_dataset(paths, image_size=8, batch_size=8, keep_unreadable=True)
    images, ok = next(iter(dataset))
    assert images.shape == (3, 8, 8, 3)
    assert ok.numpy().tolist() == [True, False, True]
    assert images.numpy()[1].max() == 0


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_threaded_batches_keep_every_row_in_order(mixed_files, workers):
    paths = [mixed_files[name] for name in mixed_files] * 3  # 27 files, one corrupt in 9
    log = DecodeLog()
    batches = list(image_batches(paths, image_size=(8, 6), batch_size=4, decode_log=log,
                                 workers=workers))
    assert [len(images) for images, _ in batches] == [4] * 6 + [3]
    images = np.concatenate([b[0] for b in batches])
    ok = np.concatenate([b[1] for b in batches])
    assert images.shape == (27, 8, 6, 3) and images.dtype == np.uint8
    for path, image, readable in zip(paths, images, ok):
        if path == mixed_files["corrupt"]:
            assert not readable and image.max() == 0
        else:
            assert readable
            np.testing.assert_array_equal(image, load_resized(path, (8, 6)))
    assert [item["path"] for item in log.items()] == [str(mixed_files["corrupt"])]


def test_dataset_shuffles_with_a_seed(tmp_path):
    paths = []
    for i in range(12):
        Image.fromarray(np.full((4, 4, 3), i * 10, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")

    def order(seed):
        ds = image_dataset(paths, list(range(12)), image_size=4, batch_size=32, shuffle=True,
                           seed=seed)
        return [int(v) for _, labels in ds for v in labels.numpy()]

    assert order(1) == order(1) and sorted(order(1)) == list(range(12))
    assert order(1) != order(2) and order(1) != list(range(12))


# -- load_image -------------------------------------------------------------------------------


def _gradient(width=6, height=4):
    x = np.arange(width * height * 3, dtype=np.uint8).reshape(height, width, 3) * 3
    return x


def test_rgb_png_round_trip(tmp_path):
    pixels = _gradient()
    Image.fromarray(pixels).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), pixels)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA"])
def test_modes_become_rgb(tmp_path, mode):
    base = Image.fromarray(_gradient(8, 5))
    if mode == "I;16":
        image = Image.fromarray((np.arange(40, dtype=np.uint16).reshape(5, 8) * 1000))
        suffix = ".png"
    else:
        image = base.convert(mode)
        suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"img{suffix}"
    image.save(path)
    out = load_image(path)
    assert out.shape == (5, 8, 3) and out.dtype == np.uint8
    if mode == "I;16":
        # 16-bit values up to 39000 are scaled into 0..255, not clipped to white.
        assert out.max() == 255 and out[0, 0, 0] == 0 and len(np.unique(out)) > 10


def test_transparent_pixels_composite_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)  # fully transparent black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    assert (load_image(tmp_path / "t.png") == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 10, 3), dtype=np.uint8)  # wide image
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (10, 4, 3)


def test_gif_webp_bmp(tmp_path):
    for suffix in (".gif", ".webp", ".bmp"):
        Image.fromarray(_gradient()).save(tmp_path / f"x{suffix}")
        assert load_image(tmp_path / f"x{suffix}").shape == (4, 6, 3)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.jpg: no such file\. Check the path"):
        load_image(tmp_path / "nope.jpg")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"is a folder, expected an image file"):
        load_image(tmp_path)


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("hello")
    with pytest.raises(ImageReadError, match=r"notes\.jpg: not an image Pillow can read"):
        load_image(tmp_path / "notes.jpg")


def test_truncated_image(tmp_path):
    Image.fromarray(_gradient(64, 64)).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: the image is corrupt or truncated"):
        load_image(tmp_path / "cut.jpg")


def test_errors_are_input_errors_and_value_errors():
    assert issubclass(ImageReadError, InputError) and issubclass(ImageReadError, ValueError)


def test_resize_center_crop_keeps_aspect():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[:, 50:150] = 255  # white centre square, black sides
    out = resize_image(image, 50, "center_crop")
    assert out.shape == (50, 50, 3) and out.dtype == np.float32
    assert out.mean() > 250  # the crop kept only the white centre
    stretched = resize_image(image, 50, "stretch")
    assert 100 < stretched.mean() < 160


def test_resize_rejects_unknown_policy():
    with pytest.raises(ValueError, match="`policy` must be 'center_crop' or 'stretch'"):
        resize_image(np.zeros((4, 4, 3), np.uint8), 2, "pad")
