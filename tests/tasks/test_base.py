"""`transferkit.load`: what it accepts and the errors for what it does not."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from transferkit.errors import InputError
from transferkit.tasks.base import ClassLabels, labels_layer, load


def test_missing_model_file(tmp_path):
    with pytest.raises(InputError, match=r"no such model file\. Pass the `\.keras` file"):
        load(tmp_path / "model.keras")


def test_not_a_keras_file(tmp_path):
    (tmp_path / "model.keras").write_text("not a zip")
    with pytest.raises(InputError, match=r"could not load it as a Keras model"):
        load(tmp_path / "model.keras")


def test_keras_model_without_labels(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.save(tmp_path / "plain.keras")
    with pytest.raises(InputError, match=r"is not a transferkit classifier: it has no `ClassLabels`"):
        load(tmp_path / "plain.keras")


def test_class_labels_round_trip_in_safe_mode(tmp_path):
    inputs = keras.Input((3,))
    outputs = ClassLabels(["cat", "dog"], task="image", metadata={"backbone": "x"})(
        keras.layers.Dense(1)(inputs)
    )
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    layer = labels_layer(loaded)
    assert layer.class_names == ["cat", "dog"] and layer.task == "image"
    assert layer.metadata == {"backbone": "x"}
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
