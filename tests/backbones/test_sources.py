"""Backbones from outside the registry: SavedModel folders, KerasHub preset folders and handles.

Every folder here is real: written by `model.export(..., format="tf_saved_model")`,
`tf.saved_model.save` (TF Hub's reusable layout) or KerasHub's `save_to_preset`, from small models
built in the fixtures; the classifiers train on real images (the faces fixture).
"""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest

import transferkit
from helpers import VOCABULARY, toy_texts
from transferkit.errors import InputError, TransferkitError

SIZE = 48


def _cli(argv):
    import contextlib
    import io

    from transferkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _images(n=3, seed=0):
    """Random RGB images, integer values like decoded photos."""
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype("float32")


# -- fixtures: real folders -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def lite_features():
    """A small convolutional feature extractor as TF Hub publishes them: pixels in [0, 1],
    pooled features out (the EfficientNet-Lite0 export runs on real photos in the slow test)."""
    keras.utils.set_random_seed(0)
    pixels = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(pixels)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    return keras.Model(pixels, keras.layers.GlobalAveragePooling2D()(x))


@pytest.fixture(scope="module")
def exported(lite_features, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported") / "small_feature_vector"
    lite_features.export(str(folder), format="tf_saved_model", verbose=False)
    return folder


@pytest.fixture(scope="module")
def hub_style(tmp_path_factory):
    """A TF Hub reusable SavedModel: `obj(images, training)`, `variables`, `trainable_variables`;
    any image size."""
    import tensorflow as tf

    kernel = tf.Variable(tf.random.stateless_normal((3, 3, 3, 8), seed=(1, 2)) * 0.2)
    scale = tf.Variable(tf.ones((8,)), trainable=False)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                  tf.TensorSpec([], tf.bool)])
    def call(images, training=False):
        maps = tf.nn.relu(tf.nn.conv2d(images, kernel, 2, "SAME")) * scale
        return tf.reduce_mean(maps, axis=[1, 2])

    root = tf.train.Checkpoint()
    root.__call__ = call
    root.variables, root.trainable_variables = [kernel, scale], [kernel]
    folder = tmp_path_factory.mktemp("hub") / "hub_feature_vector"
    tf.saved_model.save(root, str(folder))
    return folder, kernel.numpy()


@pytest.fixture(scope="module")
def resnet_preset(tmp_path_factory):
    """A small KerasHub ResNet backbone and its image converter, saved with `save_to_preset`."""
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(None, None, 3),
    )
    folder = tmp_path_factory.mktemp("presets") / "tiny_resnet"
    backbone.save_to_preset(str(folder))
    keras_hub.layers.ResNetImageConverter(
        image_size=(SIZE, SIZE), scale=[1 / 58.4, 1 / 57.1, 1 / 57.4],
        offset=[-2.1, -2.0, -1.8],
    ).save_to_preset(str(folder))
    return folder


# -- SavedModel folders ---------------------------------------------------------------------------

def test_exported_folder_gives_the_source_models_features(exported, lite_features):
    spec = transferkit.get_spec(str(exported))
    assert (spec.kind, spec.default_input_size, spec.feature_dim) == ("saved_model", SIZE, 32)
    assert spec.preprocessing.mode == "range 0,1"  # TF Hub's convention, read as x / 255
    assert "no training endpoint" in spec.why_frozen
    images = _images()
    ours = transferkit.get_backbone(str(exported)).predict(images, verbose=0)
    theirs = lite_features.predict(images / 255.0, verbose=0)
    # Within 1e-5 of the source model (relative for features above 1: x / 255 * 255 rounds).
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=1e-5)


def test_input_range_changes_the_scaling(exported, lite_features):
    images = _images()
    ours = transferkit.get_backbone(str(exported), input_range="0,255").predict(images / 255.0,
                                                                             verbose=0)
    np.testing.assert_allclose(ours, lite_features.predict(images / 255.0, verbose=0), atol=1e-5,
                               rtol=1e-5)
    with pytest.raises(InputError, match="input_range.*0,1, -1,1, 0,255"):
        transferkit.get_backbone(str(exported), input_range="0,2")
    with pytest.raises(InputError, match="for SavedModel folders"):
        transferkit.get_spec("efficientnet_lite0", input_range="0,1")


@pytest.fixture(scope="module")
def saved_model_run(exported, faces, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "saved_model"
    code, out, err = _cli(["train", "images", faces, "--backbone", exported, "--epochs", "3",
                           "--fine-tune-epochs", "2", "--augment", "none", "--output", run,
                           "--json"])
    return code, out, err, run


def test_train_through_an_exported_folder_skips_fine_tuning_with_the_reason(saved_model_run):
    code, out, err, run = saved_model_run
    assert code == 0, err
    assert "Fine-tune: skipped, the backbone cannot be fine-tuned: it has no training endpoint" \
        in err + out
    classifier = transferkit.load(run)
    assert classifier.metadata["image_size"] == [SIZE, SIZE]
    with pytest.raises(InputError, match="cannot be fine-tuned: it has no training endpoint"):
        classifier.fine_tune(epochs=1)


def test_a_feature_vector_folder_cannot_be_drawn_on_and_says_so(saved_model_run, faces):
    code, _, err, run = saved_model_run
    assert code == 0, err
    photo = sorted((faces / "face").iterdir())[0]
    with pytest.raises(InputError, match="its features are not a spatial map"):
        transferkit.load(run).explain([photo])


# Keras follows a layer that refused to load with a warning about its container.
@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_saved_model_file_is_self_contained_and_gated_by_trust(saved_model_run, exported, faces,
                                                                tmp_path):
    from transferkit.files import cache_dir

    run = saved_model_run[3]
    moved = tmp_path / "elsewhere" / "model.keras"  # the SavedModel folder is not needed
    moved.parent.mkdir()
    shutil.copy(run / "model.keras", moved)
    photo = sorted((faces / "face").iterdir())[0]
    expected = transferkit.load(run).predict_proba([photo])
    trusted = cache_dir("trusted-graphs")
    saved = tmp_path / "trusted"
    shutil.copytree(trusted, saved)
    shutil.rmtree(trusted)
    try:
        with pytest.raises(InputError, match="SavedModel graph .* transferkit trust"):
            transferkit.load(moved)
        with pytest.raises(ValueError, match="not trained with"):
            keras.saving.load_model(moved, safe_mode=True)
        code, out, err = _cli(["predict", moved, photo])
        assert code != 0 and "transferkit trust" in err and "Traceback" not in err
        code, out, err = _cli(["trust", moved, "--json"])
        assert code == 0, err
        np.testing.assert_allclose(transferkit.load(moved).predict_proba([photo]), expected,
                                   atol=1e-6)
    finally:
        shutil.copytree(saved, trusted, dirs_exist_ok=True)


def test_hub_style_folder_fine_tunes_its_variables(hub_style, faces, tmp_path):
    folder, kernel = hub_style
    spec = transferkit.get_spec(str(folder))
    assert spec.default_input_size == 0 and spec.why_frozen == ""
    with pytest.raises(InputError, match="any size.*image_size"):
        transferkit.ImageClassifier(backbone=str(folder)).check_settings()
    result = transferkit.train_images(
        faces, backbone=str(folder), image_size=32, epochs=2, fine_tune_epochs=2,
        fine_tune_learning_rate=0.01, augment="none", output=tmp_path / "run", verbose=0,
        log=lambda line: None,
    )
    assert result["fine_tune_validation_accuracy"] is not None
    loaded = transferkit.load(tmp_path / "run")
    (weights,) = [w for w in loaded.model.weights if tuple(w.shape) == kernel.shape]
    assert np.abs(np.asarray(weights) - kernel).max() > 1e-4  # trained, saved, loaded


def test_bad_folders_say_what_is_wrong(tmp_path, lite_features):
    import tensorflow as tf

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="neither a SavedModel folder .* nor a KerasHub preset"):
        transferkit.get_spec(str(empty))
    with pytest.raises(InputError, match="no such backbone folder"):
        transferkit.get_spec(str(tmp_path / "missing"))
    no_endpoint = tmp_path / "no_endpoint"
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(no_endpoint))
    with pytest.raises(InputError, match="without a usable endpoint.*Its signatures: none"):
        transferkit.get_spec(str(no_endpoint))
    pixels = keras.Input((SIZE, SIZE, 3))
    classifier = keras.Model(pixels, keras.layers.Dense(1001)(lite_features(pixels)))
    classifier.export(str(tmp_path / "classifier"), format="tf_saved_model", verbose=False)
    with pytest.raises(InputError, match="1001 values per image: a classification SavedModel.*"
                                         "feature-vector variant"):
        transferkit.get_spec(str(tmp_path / "classifier"))


# -- KerasHub presets -----------------------------------------------------------------------------

def test_preset_folder_uses_its_converter_and_matches_the_backbone(resnet_preset):
    import keras_hub

    spec = transferkit.get_spec(str(resnet_preset))
    assert (spec.kind, spec.default_input_size, spec.feature_dim) == ("keras_hub", SIZE, 16)
    images = _images()
    ours = transferkit.get_backbone(str(resnet_preset)).predict(images, verbose=0)
    source = keras_hub.models.Backbone.from_preset(str(resnet_preset))
    converter = keras_hub.layers.ImageConverter.from_preset(str(resnet_preset))
    theirs = source.predict(np.asarray(converter(images)), verbose=0)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.slow  # ~5 s: head and one fine-tuning epoch
def test_preset_folder_trains_end_to_end_and_loads_in_safe_mode(resnet_preset, faces, tmp_path):
    run = tmp_path / "run"
    code, out, err = _cli(["train", "images", faces, "--backbone", resnet_preset, "--epochs", "2",
                           "--fine-tune-epochs", "1", "--augment", "none", "--output", run,
                           "--json"])
    assert code == 0, err
    assert "Fine-tune: validation accuracy" in err + out
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    photo = sorted((faces / "face").iterdir())[0]
    np.testing.assert_allclose(
        transferkit.load(run).predict_proba([photo]),
        transferkit.ImageClassifier.from_keras_model(model).predict_proba([photo]), atol=1e-6,
    )
    # A KerasHub backbone gives a spatial map: explanations draw on it as on a registered one.
    (why,) = transferkit.load(run).explain([photo])
    assert why["map"].shape == transferkit.data.images.load_image(photo).shape[:2]
    assert why["map"].max() > 0 and why["grid"][0] > 1


def test_text_preset_folder_is_rejected_as_an_image_backbone(tmp_path):
    folder = _bert_preset(tmp_path / "bert")
    with pytest.raises(InputError, match="without an image converter.*train text --encoder"):
        transferkit.get_spec(str(folder))


def test_handles_fail_offline_in_one_line(monkeypatch):
    import keras_hub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(TransferkitError, match="fetched from the network; offline.*save_to_preset"):
        transferkit.get_spec("hf://timm/resnet18.a1_in1k")


def test_backbones_command_lists_every_source():
    code, out, err = _cli(["backbones", "efficientnet_lite*"])
    assert code == 0, err
    for kind in ("SavedModel folder", "KerasHub preset folder", "hf://"):
        assert kind in out


# -- text: a KerasHub preset folder as --encoder ---------------------------------------------------

def _bert_preset(folder):
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCABULARY), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=64,
    )
    backbone.save_to_preset(str(folder))
    keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True).save_to_preset(
        str(folder))
    return folder


def test_keras_hub_text_preset_folder_trains_mean_pooled(tmp_path):
    folder = _bert_preset(tmp_path / "bert_preset")
    texts, labels = toy_texts(60, seed=1)
    classifier = transferkit.TextClassifier(encoder=str(folder), features="sentence")
    classifier.fit(texts, labels, epochs=3, verbose=0)
    info = classifier.get_encoder().info["sentence_encoder"]
    assert (info["backbone"], info["pooling"], info["normalize"]) == ("BertBackbone", "mean",
                                                                      False)
    assert len(classifier.predict(["a great fun film"])) == 1


def test_embed_and_extract_features_take_a_saved_model_folder(exported, faces, tmp_path):
    from transferkit.batch.output import read_output

    paths = sorted((faces / "face").iterdir())[:6]
    code, out, err = _cli(["embed", exported, *paths, "--output", tmp_path / "features.parquet",
                           "--json"])
    assert code == 0, err
    table = read_output(tmp_path / "features.parquet").sort_values("index")
    embedded = np.stack(table["embedding"].to_numpy())
    extracted = transferkit.extract_features(exported, [str(p) for p in paths], cache=False)
    assert embedded.shape == (6, 32)
    np.testing.assert_allclose(embedded, extracted, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # ~80 s: features of 3000 photos through the SavedModel
def test_efficientnet_lite0_as_a_saved_model_folder_trains_like_the_registered_one(
        cats_dogs_run, tmp_path):
    """The issue's bar: the same weights exported TF Hub style ([0, 1] pixels in, pooled features
    out) and passed as a folder reach the registered backbone's validation accuracy within 0.3
    points (same data, seed and settings as `cats_dogs_run`: head only, no augmentation)."""
    from helpers import shared_data
    from transferkit.backbones.registry import get_backbone

    registered, _ = cats_dogs_run
    pixels = keras.Input((224, 224, 3))
    base = get_backbone("efficientnet_lite0")
    pooled = keras.layers.GlobalAveragePooling2D()(base(keras.layers.Rescaling(255.0)(pixels)))
    folder = tmp_path / "efficientnet_lite0_feature_vector"
    keras.Model(pixels, pooled).export(str(folder), format="tf_saved_model", verbose=False)
    result = transferkit.train_images(
        shared_data("cats_and_dogs"), backbone=str(folder), output=tmp_path / "run",
        fine_tune_epochs=0, augment="none", verbose=0, log=lambda line: None,
    )
    assert result["feature_runtime"] == "onnx"  # the SavedModel's graph converts too
    difference = abs(result["validation_accuracy"] - registered["validation_accuracy"])
    assert difference <= 0.003, (result["validation_accuracy"], registered["validation_accuracy"])
