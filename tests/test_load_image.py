"""load_image: conversions users' files need, and one clear line for each bad path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from transferkit.data.images import load_image, resize_image
from transferkit.errors import ImageReadError, InputError


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
