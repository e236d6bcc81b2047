"""What every classifier shares: `load` and what it refuses, settings from the config, the
compile defaults (one logit for two classes)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from transferkit.config import ImageTrainConfig, TextTrainConfig
from transferkit.errors import InputError
from transferkit.layers import ClassLabels
from transferkit.tasks.base import load
from transferkit.tasks.image_classifier import ImageClassifier
from transferkit.tasks.text_classifier import TextClassifier


def test_missing_model_file(tmp_path):
    with pytest.raises(InputError, match=r"no such model file\. Pass the `\.keras` file"):
        load(tmp_path / "model.keras")


def test_not_a_keras_file(tmp_path):
    (tmp_path / "model.keras").write_text("not a zip")
    with pytest.raises(InputError, match=r"is not a whole `\.keras` file: .*truncated"):
        load(tmp_path / "model.keras")


def test_keras_model_without_labels(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.save(tmp_path / "plain.keras")
    with pytest.raises(InputError, match=r"is not a transferkit classifier: it has no `ClassLabels`"):
        load(tmp_path / "plain.keras")


def test_a_model_of_the_other_task_is_refused(tmp_path):
    inputs = keras.Input((3,))
    network = keras.Model(inputs, keras.layers.Dense(1)(inputs), name="network")
    model = keras.Model(inputs, ClassLabels(["a", "b"], task="image")(network(inputs)))
    with pytest.raises(InputError, match=r"is a 'image' classifier, not a 'text' one"):
        TextClassifier.from_keras_model(model)


def test_unset_settings_come_from_the_config():
    image = ImageClassifier()
    assert image._settings({"epochs": "fine_tune_epochs"}, epochs=None).epochs == (
        ImageTrainConfig.fine_tune_epochs
    )
    assert image._settings({"epochs": "epochs"}, epochs=7).epochs == 7
    text = TextClassifier("glove-bilstm")
    defaults = text._train_defaults()
    assert defaults.epochs == 30 and defaults.batch_size == TextTrainConfig.batch_size
    assert TextClassifier("minilm")._train_defaults().learning_rate == 1e-3


def test_binary_models_train_one_logit_from_logits():
    clf = ImageClassifier(class_names=["a", "b"])
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    clf._compile(model, 0.01)
    assert model.loss.from_logits and model.loss.name == "binary_crossentropy"
    x, y = np.zeros((4, 4), "float32"), np.array([0, 1, 1, 0])
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] == 0.5  # logit 0: class 0
    clf.class_names = ["a", "b", "c"]
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    clf._compile(model, 0.01)
    assert model.loss.from_logits and model.loss.name == "sparse_categorical_crossentropy"


def test_config_round_trips_for_both_tasks():
    for clf in (ImageClassifier(class_names=["x", "y"], seed=3),
                TextClassifier("minilm", features="sentence", head_units=8)):
        config = clf.get_config()
        assert type(clf).from_config(config).get_config() == config
    with pytest.raises(InputError, match=r"Unknown TextClassifier argument\(s\) \['backbone'\]"):
        TextClassifier.from_config({"backbone": "x"})
