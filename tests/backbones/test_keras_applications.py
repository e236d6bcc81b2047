"""The keras.applications family, checked against Keras itself: every image model registered,
preprocessing against each module's `preprocess_input`, cache file names against the names Keras
asks its downloader for, the EfficientNet graph against the one Keras builds for ImageNet weights,
and failing fast (with what to do) where weights would need a download."""

from __future__ import annotations

import re
import threading
import time

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from transferkit.backbones import keras_applications as ka
from transferkit.backbones.registry import (
    backbone_table,
    get_backbone,
    get_spec,
    list_backbones,
    offline_backbones,
)
from transferkit.errors import InputError, WeightsError, WeightsUnavailableError
from transferkit.layers import ImagePreprocessing

KERAS_APP_NAMES = [app.name for app in ka.KERAS_APPLICATIONS]


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _assert_close_to_scale(actual, expected, rtol=1e-4):
    """Equal up to `rtol` of the largest value: random-init features can be tiny (1e-7)."""
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def _save_legacy_h5(model, path):
    """Writes weights in the legacy `.h5` layout of the files Keras downloads for applications."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def _give_efficientnet_normalization_statistics(model):
    # weights=None leaves the stem Normalization at mean 0, variance 1; ImageNet files carry these.
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign(np.array([0.485, 0.456, 0.406], "float32"))
    norm.adapt_variance.assign(np.array([0.229, 0.224, 0.225], "float32") ** 2)
    norm.finalize_state()


def test_all_image_models_of_keras_applications_are_registered():
    constructors = {
        n
        for n in dir(keras.applications)
        if n[0].isupper() and callable(getattr(keras.applications, n))
    }
    assert {app.constructor for app in ka.KERAS_APPLICATIONS} == constructors
    assert len(KERAS_APP_NAMES) == len(constructors) == 40
    assert set(KERAS_APP_NAMES) <= set(list_backbones())
    for name in KERAS_APP_NAMES:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
        assert get_spec(name).weights_source.startswith("Keras applications download (ImageNet")

@pytest.mark.parametrize("app", ka.KERAS_APPLICATIONS, ids=lambda app: app.name)
def test_preprocessing_matches_keras_preprocess_input(app):
    pixels = _pixels((2, 5, 7, 3), seed=1)
    expected = getattr(keras.applications, app.module).preprocess_input(pixels.copy())
    got = _numpy(ImagePreprocessing.of(get_spec(app.name).preprocessing)(pixels))
    np.testing.assert_allclose(got, _numpy(expected), rtol=1e-5, atol=1e-4)


# --- ImageNet weights: the Keras cache, and failing fast offline ------------------------------


def test_imagenet_offline_fails_fast_and_says_what_to_do(keras_home, no_network):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as caught:
        get_backbone("mobilenet_v2", weights="imagenet")
    elapsed = time.monotonic() - start
    assert elapsed < 3.0, f"offline failure took {elapsed:.1f} s"
    message = str(caught.value)
    assert message.startswith(
        "The ImageNet weights of mobilenet_v2 need a download "
        "(mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5), and this machine "
        "cannot reach https://storage.googleapis.com/"
    )
    assert "a `.weights.h5` file as `weights`" in message
    assert str(keras_home / "models") in message
    offline = offline_backbones()
    assert "mobilenet_v2" not in offline
    assert f"Backbones whose weights load offline: {', '.join(offline) or 'none'}" in message
    assert isinstance(caught.value, WeightsError)


def test_download_probe_is_bounded_when_the_network_hangs(keras_home, monkeypatch):
    release = threading.Event()

    def hanging_urlopen(*args, **kwargs):
        release.wait(30)  # a DNS lookup or a dropped SYN that never returns
        raise OSError("released")

    monkeypatch.setattr(ka.urllib.request, "urlopen", hanging_urlopen)
    monkeypatch.setattr(ka, "DOWNLOAD_PROBE_TIMEOUT_S", 0.3)
    start = time.monotonic()
    try:
        with pytest.raises(WeightsUnavailableError, match=re.escape("did not answer within 0.3 s")):
            get_backbone("resnet50", weights="imagenet")
    finally:
        release.set()
    assert time.monotonic() - start < 2.0


def test_a_failing_keras_download_becomes_weights_unavailable(keras_home, no_network, monkeypatch):
    monkeypatch.setattr(ka, "_download_blocker", lambda: None)  # the probe passed; Keras fails
    with pytest.raises(WeightsUnavailableError, match="Keras could not download it") as caught:
        get_backbone("mobilenet_v2", weights="imagenet", input_shape=(96, 96, 3))
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in str(caught.value)


def test_weights_available_looks_in_the_keras_cache(keras_home):
    assert keras.__version__.startswith("3.15")
    assert ka.keras_cache_dir() == keras_home / "models"
    assert not any(get_spec(n).weights_available() for n in KERAS_APP_NAMES)

    (keras_home / "models").mkdir()
    (keras_home / "models" / ka.weights_file_name("densenet121", include_top=True)).touch()
    assert not get_spec("densenet121").weights_available()  # the top file is not the default
    for name in KERAS_APP_NAMES:
        (keras_home / "models" / ka.weights_file_name(name)).touch()
    assert all(get_spec(n).weights_available() for n in KERAS_APP_NAMES)
    assert set(KERAS_APP_NAMES) <= set(offline_backbones())
    assert {row["name"]: row["available_offline"] for row in backbone_table("vgg*")} == {
        "vgg16": True,
        "vgg19": True,
    }


def test_weights_file_names():
    assert ka.weights_file_name("vgg16") == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert ka.weights_file_name("resnet50_v2", include_top=True) == (
        "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"
    )
    assert ka.weights_file_name("nasnet_large") == "nasnet_large_no_top.h5"
    assert ka.weights_file_name("efficientnet_v2_s") == "efficientnetv2-s_notop.h5"
    assert ka.weights_file_name("mobilenet", input_shape=(160, 160, 3)) == (
        "mobilenet_1_0_160_tf_no_top.h5"
    )
    # Sizes without their own weights get the 224 ones, as in Keras.
    assert ka.weights_file_name("mobilenet_v2", input_shape=(100, 100, 3)) == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    )
    assert ka.weights_file_name("mobilenet_v3_large", include_top=True) == (
        "weights_mobilenet_v3_large_224_1.0_float.h5"
    )


class _AskedForWeights(Exception):
    pass


# One case per naming rule in the default run; every architecture, with and without the top, under
# `-m slow`. MobileNets are asked at sizes with weights of their own (Keras warns at other sizes).
_NAMING_DEFAULT = [
    ("vgg16", None, False), ("resnet50_v2", None, False), ("mobilenet", 128, True),
    ("mobilenet_v2", 96, False), ("mobilenet_v3_small", 224, True), ("efficientnet_v2_b0", None, False),
    ("convnext_tiny", None, False),
]  # fmt: skip
_NAMING_CASES = [pytest.param(*case, id="-".join(map(str, case))) for case in _NAMING_DEFAULT] + [
    pytest.param(
        name, 224 if name.startswith("mobilenet") else None, top,
        id=f"{name}-{'top' if top else 'notop'}", marks=pytest.mark.slow,
    )
    for name in KERAS_APP_NAMES
    for top in (False, True)
    if (name, top) not in {(n, t) for n, _, t in _NAMING_DEFAULT}
]  # fmt: skip


@pytest.mark.parametrize(("name", "size", "include_top"), _NAMING_CASES)
def test_cache_file_names_are_the_ones_keras_downloads(
    name, size, include_top, keras_home, monkeypatch
):
    """Keras is asked for ImageNet weights (the network probe passing) and stopped at its downloader."""
    asked = []

    def fake_get_file(fname=None, origin=None, **kwargs):
        asked.append((fname, origin, kwargs.get("cache_subdir")))
        raise _AskedForWeights

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", fake_get_file)
    monkeypatch.setattr(ka, "_download_blocker", lambda: None)
    spec = get_spec(name)
    size = size or (spec.default_input_size if include_top else spec.min_input_size)
    with pytest.raises(_AskedForWeights):
        get_backbone(name, include_top=include_top, weights="imagenet", input_shape=(size, size, 3))
    [(fname, origin, subdir)] = asked
    assert fname == ka.weights_file_name(name, include_top, (size, size, 3))
    assert subdir == "models"
    assert origin.startswith(ka.WEIGHTS_HOST)  # the host the offline probe asks


def test_cached_imagenet_weights_load_without_network(keras_home, no_network):
    source = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(96, 96, 3)
    )
    _save_legacy_h5(
        source, keras_home / "models" / ka.weights_file_name("mobilenet_v2", False, (96, 96, 3))
    )
    pixels = _pixels((2, 96, 96, 3))
    expected = _numpy(source(keras.applications.mobilenet_v2.preprocess_input(pixels.copy())))

    assert not get_spec("mobilenet_v2").weights_available()  # 224 is the default size
    model = get_backbone("mobilenet_v2", weights="imagenet", input_shape=(96, 96, 3))
    assert model.get_layer("mobilenet_v2").name == "mobilenet_v2"
    _assert_close_to_scale(_numpy(model(pixels)), expected)


def test_corrupt_cached_weights_raise_weights_error(keras_home, no_network):
    path = keras_home / "models" / ka.weights_file_name("mobilenet_v3_small")
    path.parent.mkdir()
    path.write_bytes(b"not an h5 file")
    assert get_spec("mobilenet_v3_small").weights_available()
    with pytest.raises(WeightsError, match="delete it and run again online") as caught:
        get_backbone("mobilenet_v3_small", weights="imagenet", input_shape=(32, 32, 3))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "downloaded"])
def test_efficientnet_imagenet_matches_the_graph_keras_builds(
    cached, keras_home, tmp_path, monkeypatch
):
    """Keras adds a weightless Rescaling for ImageNet EfficientNets; transferkit folds it in."""
    source = keras.applications.EfficientNetB0(
        include_top=False, weights=None, input_shape=(32, 32, 3)
    )
    _give_efficientnet_normalization_statistics(source)
    weights_file = tmp_path / "efficientnetb0_notop.h5"
    _save_legacy_h5(source, weights_file)
    asked = []

    def fake_get_file(fname=None, origin=None, **kwargs):
        asked.append(fname)
        return str(weights_file)

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", fake_get_file)
    monkeypatch.setattr(ka, "_download_blocker", lambda: None)
    reference = keras.applications.EfficientNetB0(
        include_top=False, weights="imagenet", input_shape=(32, 32, 3)
    )
    assert asked == ["efficientnetb0_notop.h5"]
    if cached:
        (keras_home / "models").mkdir()
        weights_file.rename(keras_home / "models" / "efficientnetb0_notop.h5")

    model = get_backbone("efficientnet_b0", weights="imagenet", input_shape=(32, 32, 3))
    assert len(asked) == (1 if cached else 2)
    base = model.get_layer("efficientnet_b0")
    pixels = _pixels((2, 32, 32, 3))

    def stem_input(m):  # what the first convolution sees: the only place the two graphs differ
        return _numpy(keras.Model(m.input, m.get_layer("stem_conv_pad").input)(pixels))

    np.testing.assert_allclose(stem_input(base), stem_input(reference), rtol=1e-5, atol=1e-5)
    _assert_close_to_scale(_numpy(model(pixels)), _numpy(reference(pixels)))
    # One graph for all weights: the same layers as a weights=None build, so files saved from it
    # load into `get_backbone(..., weights=path)` with the same outputs.
    assert [type(layer) for layer in base.layers] == [type(layer) for layer in source.layers]
    assert len(reference.layers) == len(source.layers) + 1  # Keras's extra Rescaling
    base.save_weights(tmp_path / "fine.weights.h5")
    reloaded = get_backbone(
        "efficientnet_b0", weights=tmp_path / "fine.weights.h5", input_shape=(32, 32, 3)
    )
    np.testing.assert_array_equal(_numpy(reloaded(pixels)), _numpy(model(pixels)))


def test_include_top_with_imagenet_needs_the_trained_size(keras_home):
    expected = (
        "vgg16 with include_top=True and ImageNet weights needs input_shape=(224, 224, 3), the "
        "size its classifier was trained at. Received: input_shape=(200, 200, 3)."
    )
    with pytest.raises(InputError, match=re.escape(expected)):
        get_backbone("vgg16", include_top=True, input_shape=(200, 200, 3))
    with pytest.raises(InputError, match=re.escape("needs input_shape=(128, 128, 3) or (160, 160")):
        get_backbone("mobilenet", include_top=True, input_shape=(100, 100, 3))
    with pytest.raises(InputError, match=re.escape("Received: classifier_activation='relu'.")):
        get_backbone("vgg16", include_top=True, classifier_activation="relu")


def test_keras_argument_errors_become_input_errors():
    with pytest.raises(InputError, match=r"^vgg16: Could not interpret activation function"):
        get_backbone(
            "vgg16", include_top=True, weights=None, input_shape=(32, 32, 3),
            classifier_activation="no_such_activation",
        )  # fmt: skip


