"""transferkit's Keras layers: what they compute, and that saved models with them load in safe
mode, also in a fresh process that only imported transferkit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np

from transferkit.layers import ClassLabels, ImagePreprocessing, TextInputs
from transferkit.tasks.base import labels_layer


def test_class_labels_turn_logits_into_probabilities():
    two = ClassLabels(["cat", "dog"], task="image")
    logits = np.array([[0.0], [2.0], [-1.0]], "float32")
    expected = 1 / (1 + np.exp(-logits[:, 0]))
    np.testing.assert_allclose(np.asarray(two(logits)), np.stack([1 - expected, expected], 1),
                               rtol=1e-6)
    three = ClassLabels(["a", "b", "c"], task="text")
    logits = np.array([[1.0, 2.0, 3.0]], "float32")
    softmax = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(np.asarray(three(logits)), softmax, rtol=1e-6)
    assert three.compute_output_shape((None, 3)) == (None, 3)


def test_a_model_with_every_layer_round_trips_in_safe_mode(tmp_path):
    strings = keras.Input(shape=(), dtype="string", name="text")
    vectorizer = keras.layers.TextVectorization(vocabulary=["good", "bad"],
                                                output_sequence_length=4)
    ids = TextInputs(vectorizer, 4, ("token_ids",), name="tokenize")(strings)
    x = keras.layers.Embedding(4, 3, mask_zero=True)(ids["token_ids"])
    logits = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(x))
    outputs = ClassLabels(["neg", "pos"], task="text", metadata={"kind": "x"})(logits)
    model = keras.Model(strings, outputs)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    texts = np.asarray(["good good", "bad", "good bad zzz"], dtype=object)
    np.testing.assert_allclose(loaded.predict(texts, verbose=0), model.predict(texts, verbose=0))
    assert labels_layer(loaded).metadata == {"kind": "x"} and labels_layer(loaded).task == "text"
    ids = loaded.get_layer("tokenize")(texts)["token_ids"]
    assert np.asarray(ids).tolist() == [[2, 2, 0, 0], [3, 0, 0, 0], [2, 3, 1, 0]]


def test_image_preprocessing_is_mean_and_std_in_the_channel_order():
    layer = ImagePreprocessing(mean=(1.0, 2.0, 3.0), std=(2.0, 2.0, 2.0), channel_order="bgr")
    pixels = np.array([[[[10.0, 20.0, 30.0]]]], "float32")
    np.testing.assert_allclose(np.asarray(layer(pixels)), [[[[14.5, 9.0, 3.5]]]])


def test_import_transferkit_registers_the_layers_when_keras_loads():
    """`import transferkit` stays light (no Keras), yet Keras knows the layers once it loads."""
    code = textwrap.dedent(
        """
        import sys
        import transferkit
        assert "keras" not in sys.modules
        import keras
        print(keras.saving.get_registered_object("transferkit>ClassLabels").__module__)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "transferkit.layers"
