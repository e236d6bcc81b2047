"""Augmentation layers: parsing the choice, training-only randomness, precomputed views."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import photo
from transferkit.data.augmentation import (
    AUGMENTATIONS,
    DEFAULT_AUGMENT,
    augment_views,
    build_augmentation,
    parse_augment,
)
from transferkit.errors import InputError


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
    images = photo(32, 32)[None].astype("float32").repeat(2, axis=0)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    changed = np.asarray(layer(images, training=True))
    assert changed.shape == images.shape and np.abs(changed - images).mean() > 1.0


def test_augment_views_differ_from_each_other():
    views = augment_views(photo(24, 24)[None], "flip,rotate,zoom", count=3, seed=0)
    assert views.shape == (1, 3, 24, 24, 3)
    assert np.abs(views[0, 0] - views[0, 1]).mean() > 0.5
    with pytest.raises(InputError, match=r"needs at least one augmentation"):
        augment_views(photo()[None], "none", count=2, seed=0)
