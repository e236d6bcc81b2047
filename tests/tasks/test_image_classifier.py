"""ImageClassifier end to end on real faces and non-faces (skimage's bundled lfw_subset): learning
them, predicting, evaluating, saving and ONNX Runtime parity with the real EfficientNet-Lite0
ImageNet weights at 64 px; the mechanics (the feature cache, augmented views, arrays with string
labels, extract_features, resuming a run folder) on the tiny `test_cnn` (`transferkit.testing`):
they need a backbone, not a good one."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import transferkit
from helpers import write_faces
from transferkit.data.image_inputs import ImageInputs
from transferkit.errors import DataError, ImageReadError, InputError
from transferkit.layers import ClassLabels, InferenceMode
from transferkit.tasks.features import extract_features
from transferkit.tasks.image_classifier import ImageClassifier
from transferkit.testing import TINY_BACKBONE, TINY_FEATURE_DIM

SIZE = 64


@pytest.fixture(scope="module")
def trained(faces, tmp_path_factory):
    """A classifier whose head is trained (no fine-tuning), shared by the read-only tests."""
    clf = ImageClassifier(image_size=SIZE, augment="none", seed=0)
    returned = clf.fit(faces, epochs=15, validation_size=0.25, verbose=0,
                       output=tmp_path_factory.mktemp("run"))
    assert returned is clf  # the scikit-learn contract
    return clf


def test_head_is_the_seed_recipe(trained):
    network = trained.network
    assert [layer.name for layer in network.layers[1:]] == [
        "resize", "backbone", "pool", "dropout", "classifier"
    ]
    assert isinstance(network.get_layer("backbone"), InferenceMode)
    assert isinstance(network.get_layer("pool"), keras.layers.GlobalAveragePooling2D)
    assert network.get_layer("dropout").rate == 0.2
    dense = network.get_layer("classifier")
    assert dense.units == 1 and dense.activation.__name__ == "linear"  # one logit, two classes
    assert trained.get_encoder().backbone_model.trainable is False
    labels = trained.model.layers[-1]
    assert isinstance(labels, ClassLabels) and labels.class_names == ["face", "not_face"]
    three = ImageClassifier(image_size=SIZE, num_classes=3, cache_dir=False)
    three.build()
    dense = three.network.get_layer("classifier")
    assert dense.units == 3 and dense.activation.__name__ == "linear"  # logits; softmax after


def test_head_learns_faces(trained):
    rows = trained.history
    assert [r["phase"] for r in rows] == ["head"] * len(rows)
    assert rows[-1]["accuracy"] > 0.9
    assert max(r["val_accuracy"] for r in rows) >= 0.9
    assert trained.skipped == []


@pytest.mark.slow  # ~15 s: trains a backbone end to end
def test_batchnorm_stays_in_inference_mode_when_unfrozen():
    clf = ImageClassifier(image_size=SIZE, num_classes=3, dropout=0.0, augment="none",
                          cache_dir=False)
    clf.build()
    frozen = len(clf.model.trainable_weights)
    clf._unfreeze()  # "all", the default
    assert len(clf.model.trainable_weights) > 100 > frozen
    x = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    # training=True is what fit passes; with BatchNorm in inference mode (and stochastic depth off)
    # the outputs do not change.
    np.testing.assert_allclose(
        np.asarray(clf.model(x, training=True)), np.asarray(clf.model(x, training=False)),
        atol=1e-5,
    )
    bn = next(l for l in clf.get_encoder().backbone_model.get_layer("efficientnet_lite0").layers
              if isinstance(l, keras.layers.BatchNormalization))
    before = np.asarray(bn.moving_mean).copy()
    clf._compile(clf.network, 1e-5)
    clf.network.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), before)


def test_features_are_cached_per_image_and_the_head_is_grafted(faces, tmp_path):
    paths = sorted(str(p) for p in faces.glob("*/*.png"))[:6]
    clf = ImageClassifier(backbone=TINY_BACKBONE, image_size=SIZE, num_classes=2,
                          augment="none", cache_dir=tmp_path / "cache")
    clf.build()
    first, ok = clf.get_encoder().readable_features(ImageInputs(paths))
    assert first.shape == (6, TINY_FEATURE_DIM) and ok.all()
    files = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(files) == 6
    stamps = [f.stat().st_mtime_ns for f in files]
    fresh = ImageClassifier(backbone=TINY_BACKBONE, image_size=SIZE, num_classes=2,
                            augment="none", cache_dir=tmp_path / "cache")
    fresh.build()  # same backbone and weights, so the same keys: read, not recomputed
    again, _ = fresh.get_encoder().readable_features(ImageInputs(paths))
    np.testing.assert_array_equal(first, again)
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "cache").glob("*.npy"))] == stamps
    # Another image size is another key.
    other = ImageClassifier(backbone=TINY_BACKBONE, image_size=48, num_classes=2,
                            augment="none", cache_dir=tmp_path / "cache")
    other.build()
    other.get_encoder().readable_features(ImageInputs(paths[:2]))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 8
    # The head on cached features gives what the whole network gives on the image files.
    head = clf.get_encoder().head(clf.network)
    via_cache = np.asarray(head.predict(first, verbose=0))
    end_to_end = np.asarray(clf.network.predict(
        np.stack([np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC))
                  for p in paths]).astype("float32"), verbose=0))
    np.testing.assert_allclose(via_cache, end_to_end, atol=1e-4)


def test_augmented_views_are_precomputed(faces, tmp_path):
    paths = sorted(str(p) for p in faces.glob("*/*.png"))[:4]
    clf = ImageClassifier(backbone=TINY_BACKBONE, image_size=SIZE, num_classes=2,
                          augment="flip,rotate,zoom", augment_views=3, cache_dir=tmp_path / "cache")
    clf.build()
    plain, _ = clf.get_encoder().readable_features(ImageInputs(paths))
    views, _ = clf.get_encoder().readable_features(ImageInputs(paths), views=3)
    assert views.shape == (4, 3, TINY_FEATURE_DIM)
    assert np.abs(views[:, 0] - views[:, 1]).mean() > 1e-3
    assert np.abs(views[:, 0] - plain).mean() > 1e-3
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 8  # 4 plain + 4 stacks of views
    # The augmentation is in the model and does nothing at inference.
    x = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_allclose(clf.model.predict(x, verbose=0), clf.model.predict(x, verbose=0))


def test_predict_files_and_arrays_of_any_size(trained, faces):
    clf = trained
    paths = [faces / "face" / "face_000.png", faces / "not_face" / "not_face_000.png"]
    results = clf.predict(paths)
    assert [r["path"] for r in results] == [str(p) for p in paths]
    for result in results:
        assert set(result) == {"path", "label", "score", "probabilities"}
        assert result["score"] == max(result["probabilities"].values())
        assert abs(sum(result["probabilities"].values()) - 1) < 1e-6
    assert [r["label"] for r in results] == ["face", "not_face"]
    big = np.asarray(Image.open(paths[0]).convert("RGB").resize((150, 90)))
    (one,) = clf.predict(big)
    assert "path" not in one and one["label"] in ("face", "not_face")
    assert len(clf.predict(np.stack([big, big]))) == 2


def test_predict_names_unreadable_files(trained, tmp_path):
    clf = trained
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match=r"1 image\(s\) could not be read: .*bad\.jpg: not an image"):
        clf.predict([tmp_path / "bad.jpg"])
    with pytest.raises(InputError, match=r"No images given"):
        clf.predict([])


def test_save_and_load_round_trip(trained, faces, tmp_path):
    clf = trained
    path = clf.save(tmp_path / "faces.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["faces.keras"]  # no temporary left behind
    raw = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).uniform(0, 255, (2, 100, 70, 3)).astype("float32")
    np.testing.assert_allclose(raw.predict(x, verbose=0), clf.model.predict(x, verbose=0), atol=1e-5)
    loaded = transferkit.load(path)
    assert isinstance(loaded, ImageClassifier)
    assert loaded.class_names == ["face", "not_face"] and loaded.image_size == SIZE
    image = faces / "face" / "face_001.png"
    assert loaded.predict([image])[0]["score"] == pytest.approx(
        clf.predict([image])[0]["score"], abs=1e-5
    )
    with pytest.raises(InputError, match=r"must end in `\.keras`"):
        clf.save(tmp_path / "faces.h5")


def test_config_round_trip():
    clf = ImageClassifier(backbone="efficientnet_lite0", class_names=["a", "b"], image_size=(48, 64),
                          augment="flip", augment_views=1, seed=3, cache_dir=False)
    config = clf.get_config()
    assert json.loads(json.dumps(config)) == config
    assert ImageClassifier.from_config(config).get_config() == config
    assert config["augment"] == "flip" and config["image_size"] == [48, 64]


def test_a_runtime_set_later_reaches_the_encoder():
    clf = ImageClassifier(backbone=TINY_BACKBONE, num_classes=2)
    assert clf.get_encoder().runtime == "auto"
    clf.runtime = "keras"
    assert clf.get_encoder().runtime == "keras" and clf.get_config()["runtime"] == "keras"


def test_evaluate_folder_with_report(trained, faces, tmp_path):
    clf = trained
    metrics = clf.evaluate(faces, report_dir=tmp_path / "report")
    assert metrics["n"] == 40 and metrics["classes"] == ["face", "not_face"]
    assert metrics["accuracy"] >= 0.9 and metrics["num_skipped"] == 0
    names = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"metrics.json", "summary.txt", "confusion_matrix.png", "mistakes.png"} <= names
    quick = clf.evaluate(faces)
    assert quick["accuracy"] == metrics["accuracy"]


def test_evaluate_skips_and_lists_corrupt_files(trained, faces, tmp_path):
    clf = trained
    data = write_faces(tmp_path / "eval", per_class=3)
    (data / "face" / "broken.png").write_bytes(b"\x89PNG broken")
    metrics = clf.evaluate(data)
    assert metrics["n"] == 6 and metrics["num_skipped"] == 1
    assert metrics["skipped"][0]["path"].endswith("broken.png")


def test_evaluate_rejects_unknown_classes(trained, tmp_path):
    clf = trained
    data = write_faces(tmp_path / "other", per_class=1)
    (data / "face").rename(data / "cat")
    with pytest.raises(DataError, match=r"'cat' are not classes of the model"):
        clf.evaluate(data)


@pytest.mark.slow  # ~10 s; the default suite's image_run also skips a stray file
def test_fit_skips_corrupt_files_and_fine_tunes(faces, tmp_path):
    data = write_faces(tmp_path / "data", per_class=8)
    (data / "face" / "zz_truncated.png").write_bytes(
        (data / "face" / "face_000.png").read_bytes()[:60]
    )
    clf = ImageClassifier(image_size=SIZE, augment="flip", augment_views=1,
                          cache_dir=tmp_path / "cache")
    run = tmp_path / "run"
    clf.fit(data, epochs=2, validation_size=0.25, verbose=0, output=run)
    assert [Path(s["path"]).name for s in clf.skipped] == ["zz_truncated.png"]
    assert clf.fine_tune(epochs=1, unfreeze=10, verbose=0) is clf
    assert [r["phase"] for r in clf.history] == ["head", "head", "fine_tune"]
    assert clf.history[-1]["epoch"] == 1 and "val_accuracy" in clf.history[-1]
    assert (run / "checkpoints" / "fine_tune.weights.h5").is_file()
    assert (run / "logs" / "fine_tune").is_dir()


def test_fit_resumes_a_run_folder(faces, tmp_path):
    run = tmp_path / "run"
    first = ImageClassifier(backbone=TINY_BACKBONE, image_size=SIZE, augment="none",
                            cache_dir=tmp_path / "cache")
    first.fit(faces, epochs=3, verbose=0, output=run)
    second = ImageClassifier(backbone=TINY_BACKBONE, image_size=SIZE, augment="none",
                             cache_dir=tmp_path / "cache")
    second.fit(faces, epochs=3, verbose=0, output=run)
    assert second.history == first.history  # finished phase: loaded, not trained again
    np.testing.assert_array_equal(
        first.network.get_layer("classifier").get_weights()[0],
        second.network.get_layer("classifier").get_weights()[0],
    )


def test_fit_errors(faces, tmp_path):
    with pytest.raises(InputError, match=r"The data has classes \['face', 'not_face'\] but this "
                                         r"classifier was made for \['0', '1', '2'\]"):
        ImageClassifier(image_size=SIZE, num_classes=3).fit(faces, output=tmp_path, verbose=0)
    with pytest.raises(InputError, match=r"`dropout` must be a number in \[0, 1\)"):
        ImageClassifier(image_size=SIZE, dropout=1.5).fit(faces, output=tmp_path, verbose=0)
    with pytest.raises(InputError, match=r"A classifier needs at least 2 classes"):
        ImageClassifier(num_classes=1).build()
    with pytest.raises(InputError, match=r"has no trained model yet\. Call `fit\(\.\.\.\)` first"):
        ImageClassifier().predict(["x.png"])
    x = np.zeros((4, SIZE, SIZE, 3), np.uint8)
    with pytest.raises(DataError, match=r"single class"):
        ImageClassifier(image_size=SIZE).fit(x, [0, 0, 0, 0], output=tmp_path, verbose=0)


def test_fit_on_arrays_with_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    dark = rng.uniform(0, 60, (8, 40, 40, 3))
    bright = rng.uniform(190, 255, (8, 40, 40, 3))
    images = np.concatenate([dark, bright]).astype(np.uint8)
    labels = ["dark"] * 8 + ["bright"] * 8
    clf = ImageClassifier(backbone=TINY_BACKBONE, image_size=SIZE, augment="none",
                          cache_dir=tmp_path / "cache")
    # A high learning rate: the tiny random backbone's features part dark from bright, but by little.
    clf.fit(images, labels, epochs=20, learning_rate=0.05, validation_size=0.25, verbose=0,
            output=tmp_path / "r")
    assert clf.class_names == ["bright", "dark"]
    assert [r["label"] for r in clf.predict(images[[0, -1]])] == ["dark", "bright"]


def test_extract_features(faces):
    paths = sorted(faces.glob("face/*.png"))[:3]
    features = extract_features(TINY_BACKBONE, paths, image_size=SIZE)
    assert features.shape == (3, TINY_FEATURE_DIM) and features.dtype == np.float32
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    np.testing.assert_allclose(
        extract_features(TINY_BACKBONE, arrays, image_size=SIZE), features, atol=1e-4
    )
    assert transferkit.extract_features is extract_features
    with pytest.raises(ImageReadError, match=r"nope\.png: no such file"):
        extract_features(TINY_BACKBONE, [faces / "nope.png"], image_size=SIZE)


@pytest.mark.slow  # ~15 s: the default suite's 10-minute budget
def test_onnx_runtime_features_equal_keras_plain_and_augmented(faces, tmp_path):
    """The backbone on ONNX Runtime gives Keras's features within 1e-4, also for augmented views
    (the augmentation runs in Keras either way, with the same random draws)."""
    from transferkit.runtimes import TOLERANCE

    paths = sorted(str(p) for p in faces.glob("*/*.png"))[:6]
    results = {}
    for runtime in ("keras", "onnx"):
        clf = ImageClassifier(image_size=SIZE, num_classes=2, augment="flip,rotate,zoom",
                              augment_views=2, seed=3, runtime=runtime,
                              cache_dir=tmp_path / runtime)
        clf.build()
        plain, _ = clf.get_encoder().readable_features(ImageInputs(paths))
        views, _ = clf.get_encoder().readable_features(ImageInputs(paths), views=2)
        assert clf.feature_runtime == runtime
        results[runtime] = plain, views
    np.testing.assert_allclose(results["onnx"][0], results["keras"][0], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(results["onnx"][1], results["keras"][1], atol=TOLERANCE, rtol=0)
    assert np.abs(results["onnx"][1][:, 0] - results["onnx"][0]).mean() > 1e-3  # views differ
    graphs = list((tmp_path / "onnx" / "onnx").glob("*.onnx"))
    assert len(graphs) == 1  # one graph for the plain features and the views
    assert json.loads(graphs[0].with_suffix(".json").read_text())["passed"] is True
    assert not (tmp_path / "keras" / "onnx").exists()


def test_predict_on_onnx_runtime_matches_the_saved_model(trained, faces):
    paths = sorted(str(p) for p in faces.glob("*/*.png"))[:8]
    expected = trained.predict_proba(paths)  # few inputs: "auto" keeps the Keras model
    trained.runtime = "onnx"
    try:
        np.testing.assert_allclose(trained.predict_proba(paths), expected, atol=1e-5)
        with pytest.raises(ImageReadError, match=r"1 image\(s\) could not be read: .*nope\.png"):
            trained.predict_proba([*paths[:2], str(faces / "nope.png")])
    finally:
        trained.runtime = "auto"


def test_extract_features_on_either_runtime(faces):
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(faces.glob("*/*.png"))[:4]]
    onnx = extract_features("efficientnet_lite0", arrays, image_size=SIZE, runtime="onnx")
    keras_ = extract_features("efficientnet_lite0", arrays, image_size=SIZE, runtime="keras",
                              cache=False)
    np.testing.assert_allclose(onnx, keras_, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="`runtime` must be one of 'auto', 'keras', 'onnx'"):
        ImageClassifier(runtime="gpu")
