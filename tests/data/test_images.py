"""The input pipeline (tf.data, parallel decode, skips) and augmentation layers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from transferkit.data.augmentation import (
    AUGMENTATIONS,
    DEFAULT_AUGMENT,
    augment_views,
    build_augmentation,
    parse_augment,
    preview_augmentation,
)
from transferkit.data.images import (
    DecodeLog,
    image_dataset,
    image_size_pair,
    load_image,
    load_resized,
    resize_image,
)
from transferkit.errors import ImageReadError, InputError


def _photo(height=60, width=80, seed=0) -> np.ndarray:
    """A smooth colour image (JPEG-friendly), different for each seed."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, 3)
    channels = [127 + 120 * np.sin(x / (7 + 3 * c) + y / 11 + phase[c]) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


@pytest.fixture
def mixed_files(tmp_path):
    """One file per format and mode users have, plus a corrupt one."""
    base = Image.fromarray(_photo())
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


def test_image_size_pair():
    assert image_size_pair(32) == (32, 32)
    assert image_size_pair((24, 40)) == (24, 40)
    assert image_size_pair([24, 40]) == (24, 40)
    for bad in (-3, 0, (3,), (3, -1), 2.5, True, "224"):
        with pytest.raises(InputError, match=r"`image_size` must be a positive int or a pair of them"):
            image_size_pair(bad)


def test_load_resized_matches_load_then_resize(mixed_files):
    for name, path in mixed_files.items():
        if name == "corrupt":
            continue
        fast = load_resized(path, (24, 32))
        assert fast.shape == (24, 32, 3) and fast.dtype == np.uint8, name
        slow = resize_image(load_image(path), (24, 32))
        np.testing.assert_allclose(fast, slow, atol=1, err_msg=name)


def test_load_resized_large_jpeg_decodes_at_reduced_scale_and_stays_close(tmp_path):
    big = np.asarray(Image.fromarray(_photo(60, 80)).resize((1600, 1200), Image.BICUBIC))
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


def test_dataset_shuffles_with_a_seed(tmp_path):
    paths = []
    for i in range(12):
        Image.fromarray(np.full((4, 4, 3), i * 10, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")

    def order(seed):
        ds = image_dataset(paths, list(range(12)), image_size=4, shuffle=True, seed=seed)
        return [int(v) for _, labels in ds for v in labels.numpy()]

    assert order(1) == order(1) and sorted(order(1)) == list(range(12))
    assert order(1) != order(2) and order(1) != list(range(12))


def test_parse_augment():
    assert parse_augment(None) == () and parse_augment("none") == () and parse_augment("") == ()
    assert parse_augment("default") == DEFAULT_AUGMENT
    assert parse_augment(" Flip, zoom ,flip") == ("flip", "zoom")
    assert parse_augment(["rotate"]) == ("rotate",)
    with pytest.raises(InputError, match=r"Unknown augmentation 'blur', 'spin'\. Choose from flip, "):
        parse_augment("flip,blur,spin")
    with pytest.raises(InputError, match=r"`augment` must be a comma-separated string"):
        parse_augment(3)


def test_augmentation_is_active_only_in_training():
    layer = build_augmentation(",".join(AUGMENTATIONS), seed=1)
    assert layer.name == "augmentation" and len(layer.layers) == len(AUGMENTATIONS)
    assert build_augmentation("none") is None
    images = _photo(32, 32)[None].astype("float32").repeat(2, axis=0)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    changed = np.asarray(layer(images, training=True))
    assert changed.shape == images.shape and np.abs(changed - images).mean() > 1.0


def test_augment_views_differ_from_each_other():
    views = augment_views(_photo(24, 24)[None], "flip,rotate,zoom", count=3, seed=0)
    assert views.shape == (1, 3, 24, 24, 3)
    assert np.abs(views[0, 0] - views[0, 1]).mean() > 0.5
    with pytest.raises(InputError, match=r"needs at least one augmentation"):
        augment_views(_photo()[None], "none", count=2)


def test_preview_writes_a_grid_of_twelve(tmp_path):
    source = tmp_path / "photo.jpg"
    Image.fromarray(_photo(90, 120)).save(source)
    out = preview_augmentation(source, tmp_path / "grid.png", "flip,rotate,zoom", image_size=48)
    with Image.open(out) as grid:
        width, height = grid.size
    assert width > height > 0  # 4 columns, 3 rows
    with pytest.raises(InputError, match=r"`count` must be a positive int"):
        preview_augmentation(source, tmp_path / "x.png", count=0)
