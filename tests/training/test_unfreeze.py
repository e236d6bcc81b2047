"""Unfreezing for fine-tuning: all of a backbone, its top N layers, or all from a layer."""

from __future__ import annotations

import pytest

from transferkit.backbones.registry import get_backbone
from transferkit.errors import InputError
from transferkit.training.unfreeze import unfreeze_layers


@pytest.fixture(scope="module")
def arch():
    """The bare EfficientNet-Lite0 architecture (random weights: only its layers matter)."""
    model = get_backbone("efficientnet_lite0", weights=None, input_shape=(64, 64, 3))
    return model.get_layer("efficientnet_lite0")


def test_unfreeze_choices(arch):
    layers = [l for l in arch.layers if l.__class__.__name__ != "InputLayer"]
    assert unfreeze_layers(arch, 5) == 5
    assert [l.trainable for l in layers[-5:]] == [True] * 5 and not layers[-6].trainable
    start = [l.name for l in layers].index("block6a_expand_conv")
    assert unfreeze_layers(arch, "block6a_expand_conv") == len(layers) - start
    assert arch.get_layer("block6a_expand_conv").trainable
    assert not arch.get_layer("block5c_project_conv").trainable
    assert unfreeze_layers(arch, "all") == len(layers) and all(l.trainable for l in layers)
    assert unfreeze_layers(arch, 10_000) == len(layers)  # more than there are: all of them


def test_an_unknown_layer_name_offers_the_nearest(arch):
    with pytest.raises(InputError, match=r"names no layer of efficientnet_lite0: "
                                         r"'block6a_expnd_conv'\. Did you mean: block6a_expand_conv"):
        unfreeze_layers(arch, "block6a_expnd_conv")
