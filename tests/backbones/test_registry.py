"""The registries: every registered backbone built and run, and the registry's behaviours (one
mechanism for backbones, word vectors and sentence encoders). keras.applications specifics are in
test_keras_applications.py."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

from transferkit.backbones.registry import (
    backbone_table,
    get_backbone,
    get_spec,
    list_backbones,
    register,
)
from transferkit.errors import (
    InputError,
    UnknownBackboneError,
    WeightsError,
)
from transferkit.layers import ImagePreprocessing

# The smallest member of each family builds in the default run; the rest of a family (the same
# code at other widths and depths, 1-5 s each on two cores), and the families whose smallest
# member takes over 4 s (InceptionResNetV2, NASNet), with `-m slow`.
DEFAULT_BUILDS = {
    "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_lite0", "efficientnet_v2_b0",
    "inception_v3", "mobilenet", "mobilenet_v2", "mobilenet_v3_small", "resnet50", "resnet50_v2",
    "test_cnn", "vgg16", "xception",
}


def _default_or_slow(names):
    return [n if n in DEFAULT_BUILDS else pytest.param(n, marks=pytest.mark.slow) for n in names]


def test_the_default_builds_are_one_per_family():
    families = [get_spec(name).family for name in DEFAULT_BUILDS]
    assert len(set(families)) == len(families)
    assert DEFAULT_BUILDS <= set(list_backbones())


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _is_plain_data(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain_data(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_plain_data(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


# --- Every registered backbone -----------------------------------------------------------------


@pytest.mark.parametrize("name", _default_or_slow(list_backbones()))
def test_every_backbone_builds_and_runs_at_its_smallest_input(name):
    spec = get_spec(name)
    size = spec.min_input_size
    model = get_backbone(name, weights=None, input_shape=(size, size, 3))

    base = model.get_layer(name)
    assert base.name == name
    assert model.transferkit_spec is spec
    assert isinstance(model.get_layer("preprocessing"), ImagePreprocessing)
    features = _numpy(model(_pixels((2, size, size, 3)), training=False))
    assert features.ndim == 4
    assert features.shape[0] == 2
    assert features.shape[1:] == tuple(model.output.shape[1:])
    assert features.shape[-1] == spec.feature_dim
    assert min(features.shape[1:3]) >= 1
    assert np.isfinite(features).all()
    # "builtin" means the architecture rescales its own inputs; any other mode means it must not,
    # or pixels would be normalised twice.
    rescales_inside = any(
        isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization))
        for layer in base.layers
    )
    assert rescales_inside == (spec.preprocessing.mode == "builtin")






def test_include_top_gives_the_imagenet_classifier():
    model = get_backbone("mobilenet_v3_small", include_top=True, weights=None)
    probabilities = _numpy(model(_pixels((1, 224, 224, 3))))
    assert probabilities.shape == (1, 1000)
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-4)


# --- Registry behaviours ----------------------------------------------------------------------


def test_unknown_name_suggests_the_nearest_names():
    with pytest.raises(
        UnknownBackboneError, match=r"Unknown backbone 'mobilenetv2'\. Did you mean: "
    ):
        get_spec("mobilenetv2")
    with pytest.raises(KeyError) as caught:  # also a KeyError, for callers that catch builtins
        get_backbone("mobilenetv2", weights=None)
    assert "mobilenet_v2" in str(caught.value).split("Did you mean:")[1]


def test_names_are_case_and_dash_insensitive():
    assert get_spec("MobileNet-V2") is get_spec("mobilenet_v2")


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="The backbone name 'mobilenet_v2' is already registered"):
        register(get_spec("mobilenet_v2"))


def test_list_backbones_takes_a_shell_pattern():
    assert list_backbones("efficientnet_b*") == [f"efficientnet_b{i}" for i in range(8)]
    assert list_backbones("convnext_*") == [
        "convnext_base", "convnext_large", "convnext_small", "convnext_tiny", "convnext_xlarge"
    ]  # fmt: skip
    assert list_backbones("no_such_*") == []
    assert list_backbones() == sorted(list_backbones())


@pytest.mark.parametrize("input_shape", [(64, 64), (64, 64, 1), (64, 64, 4), "64x64", 64])
def test_bad_input_shape_raises(input_shape):
    expected = "`input_shape` must be (height, width, 3) for RGB images. Received: input_shape="
    with pytest.raises(InputError, match=re.escape(expected)):
        get_backbone("mobilenet_v2", weights=None, input_shape=input_shape)


@pytest.mark.parametrize(("name", "size"), [("xception", 71), ("inception_v3", 75), ("vgg16", 32)])
def test_too_small_input_raises(name, size):
    expected = (
        f"{name} needs images of at least {size}x{size} pixels. "
        f"Received: input_shape=({size - 1}, {size + 10}, 3)."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        get_backbone(name, weights=None, input_shape=(size - 1, size + 10, 3))


def test_missing_weights_path_raises(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(InputError, match=re.escape(f"Weights file not found: {missing}.")):
        get_backbone("mobilenet_v2", weights=missing, input_shape=(32, 32, 3))


def test_weights_path_round_trip(tmp_path):
    pixels = _pixels((2, 32, 32, 3))
    first = get_backbone("vgg16", weights=None, input_shape=(32, 32, 3))
    first.get_layer("vgg16").save_weights(tmp_path / "w.weights.h5")
    expected = _numpy(first(pixels))
    assert np.abs(expected).max() > 1e-3

    reloaded = get_backbone("vgg16", weights=tmp_path / "w.weights.h5", input_shape=(32, 32, 3))
    np.testing.assert_array_equal(_numpy(reloaded(pixels)), expected)
    fresh = get_backbone("vgg16", weights=None, input_shape=(32, 32, 3))
    # The load, not the seed, made them equal.
    assert not np.allclose(_numpy(fresh(pixels)), expected)


def test_mismatching_weights_raise_weights_error(tmp_path):
    other = get_backbone("mobilenet_v3_small", weights=None, input_shape=(32, 32, 3))
    other.get_layer("mobilenet_v3_small").save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(WeightsError, match=re.escape(f"Could not load weights from {tmp_path}")):
        get_backbone("mobilenet_v2", weights=tmp_path / "other.weights.h5", input_shape=(32, 32, 3))
    with pytest.raises(
        WeightsError, match="saved from the same architecture with include_top=True"
    ):
        get_backbone(
            "mobilenet_v3_small", include_top=True, weights=tmp_path / "other.weights.h5",
            input_shape=(32, 32, 3),
        )  # fmt: skip


def test_backbone_table_is_plain_json_data(keras_home):
    table = backbone_table()
    assert [row["name"] for row in table] == list_backbones()
    json.dumps(table)
    for row in table:
        assert _is_plain_data(row), row
        assert isinstance(row["available_offline"], bool)
        assert isinstance(row["preprocessing"], dict)
        assert {"family", "default_input_size", "feature_dim", "license", "description"} <= set(row)
    by_name = {row["name"]: row for row in table}
    assert by_name["vgg16"]["preprocessing"]["channel_order"] == "bgr"
    assert by_name["mobilenet_v2"]["available_offline"] is False  # empty Keras cache
    assert backbone_table("vgg*") == [by_name["vgg16"], by_name["vgg19"]]


def test_one_registry_mechanism_for_every_kind_of_name():
    from transferkit.backbones.registry import Registry
    from transferkit.backbones.sentence_encoders import SENTENCE_ENCODERS
    from transferkit.backbones.word_vectors import WORD_VECTORS

    registry = Registry("widget", hint="Known: {names}.")
    registry.register("Blue-Widget", 1, aliases=("bw",))
    assert registry.get("blue_widget") == 1 and registry.get(" BW ") == 1  # case, -/_ alike
    assert registry.names() == ["Blue-Widget"] and registry.names("blue*") == ["Blue-Widget"]
    with pytest.raises(UnknownBackboneError, match=r"^Unknown widget 'blu-widget'\. Did you mean: "
                                                   r"Blue-Widget\? Known: Blue-Widget\.$"):
        registry.get("blu-widget")
    with pytest.raises(ValueError, match=r"The widget name 'BW' is already registered"):
        registry.register("other", 2, aliases=("BW",))
    assert registry.names() == ["Blue-Widget"]  # a refused entry leaves no trace
    # The three asset registries are this one class.
    assert all(isinstance(r, Registry) for r in (WORD_VECTORS, SENTENCE_ENCODERS))
