"""The inference graphs that exports are made of: the trained layers, without what only training
uses, with the inputs that deployed runtimes take.

* images: `uint8` RGB `(batch, height, width, 3)` at the model's size (resizing happens outside)
  -> backbone -> pooling -> classifier -> probabilities. The `Resizing`, augmentation and
  `Dropout` layers of the trained network are left out of the graph altogether (keras#19108:
  augmentation layers in the graph block LiteRT conversion);
* text: `int32` token ids `(batch, sequence_length)` per network input -> network ->
  probabilities (the tokenizer travels as `tokenizer.json`); or, for a SavedModel, the whole saved
  model, strings in.

The layers are the trained ones (shared, not copied), so the graphs hold the same weights.
"""

from __future__ import annotations

import keras
import numpy as np

from transferkit.errors import InputError

__all__ = ["image_graph", "token_graph", "token_inputs"]


def image_graph(classifier) -> keras.Model:
    """`uint8 (batch, H, W, 3)` -> class probabilities, from a trained `ImageClassifier`."""
    network = classifier.network
    try:
        backbone, pool, head = (network.get_layer(n) for n in ("backbone", "pool", "classifier"))
    except ValueError:
        raise InputError(
            "This image model was not built by this version of transferkit (its network has no "
            "`backbone`, `pool` and `classifier` layers), so it cannot be exported. Retrain it."
        ) from None
    height, width = classifier.input_size
    images = keras.Input((height, width, 3), dtype="uint8", name="image")
    x = keras.ops.cast(images, "float32")
    probabilities = classifier.model.get_layer("labels")(head(pool(backbone(x))))
    model = keras.Model(images, probabilities, name="image_classifier_export")
    model(np.zeros((1, height, width, 3), dtype=np.uint8))  # Keras exports only called models
    return model


def token_graph(classifier) -> keras.Model:
    """`{input name: int32 (batch, sequence_length)}` -> class probabilities, from a trained
    `TextClassifier`."""
    network = classifier.network
    length = classifier.model.get_layer("tokenize").sequence_length
    names = [tensor.name for tensor in network.inputs]
    inputs = {name: keras.Input((length,), dtype="int32", name=name) for name in names}
    probabilities = classifier.model.get_layer("labels")(network(inputs))
    model = keras.Model(inputs, probabilities, name="text_classifier_export")
    model({name: np.zeros((1, length), dtype=np.int32) for name in names})
    return model


def token_inputs(classifier, texts) -> dict[str, np.ndarray]:
    """The token ids the text model's own tokenizer gives `texts` (the Keras reference)."""
    import tensorflow as tf

    tokens = classifier.model.get_layer("tokenize")(tf.constant([str(t) for t in texts]))
    return {name: np.asarray(value, dtype=np.int32) for name, value in tokens.items()}


