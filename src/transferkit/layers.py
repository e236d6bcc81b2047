"""transferkit's own Keras layers: everything a saved `.keras` file of transferkit may contain.

* `ImagePreprocessing`: a backbone's pixel preprocessing (mean, std, channel order), inside the
  model so that the right `preprocess_input` travels with it;
* `InferenceMode`: runs a backbone with BatchNormalization in inference mode, even while training;
* `TextInputs`: raw strings -> the fixed-length token ids a text network takes (wraps Keras
  `TextVectorization` or a KerasHub preprocessor);
* `ClassLabels`: the last layer of every classifier: logits -> class probabilities, with the class
  names and plain-data metadata in its config.

All are registered with Keras under the package name `transferkit`, so a saved classifier loads
with `keras.saving.load_model(path, safe_mode=True)`. `import transferkit` registers them as soon as
Keras is imported (see `transferkit/__init__.py`); KerasHub's layers register themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

__all__ = ["ClassLabels", "ImagePreprocessing", "InferenceMode", "TextInputs"]


@keras.saving.register_keras_serializable(package="transferkit")
class ImagePreprocessing(keras.layers.Layer):
    """`(x[..., order] - mean) / std` on RGB images in [0, 255], channels last.

    Args:
        mean: three floats, 0-255 scale, in the output channel order. Default `(0, 0, 0)`.
        std: three floats, 0-255 scale. Default `(1, 1, 1)`.
        channel_order: `"rgb"` (default) or `"bgr"` (reverses the channels first).
    """

    def __init__(
        self,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channel_order: str = "rgb",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(
                f"`channel_order` must be 'rgb' or 'bgr'. Received: channel_order={channel_order!r}."
            )
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.channel_order = channel_order

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.channel_order == "bgr":
            x = ops.flip(x, axis=-1)
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(self.std, dtype=self.compute_dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {"mean": list(self.mean), "std": list(self.std), "channel_order": self.channel_order}
        )
        return config


@keras.saving.register_keras_serializable(package="transferkit")
class InferenceMode(keras.layers.Wrapper):
    """Runs the wrapped backbone in inference mode always, also while its weights are trained.

    `base(x, training=False)` in a functional model is not enough in Keras 3: `fit` calls the
    outer model with `training=True` and that overrides the argument recorded for the inner call
    (keras-team/keras#20285), so an unfrozen backbone's BatchNormalization would start using batch
    statistics and updating its moving averages, and its stochastic depth would drop blocks. This
    wrapper passes `training=False` at call time, where nothing overrides it.

    Args:
        layer: the backbone (a Keras model).
    """

    def call(self, inputs, training=None):
        return self.layer(inputs, training=False)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="transferkit")
class TextInputs(keras.layers.Layer):
    """Strings -> `{name: int32 (batch, sequence_length)}`: the inputs of a text network.

    Wraps the layer that tokenizes (Keras `TextVectorization` with `output_sequence_length`, or a
    KerasHub text preprocessor), names its outputs, keeps `names` and casts them to int32. Its
    output shape is declared rather than traced, so a saved model rebuilds before the tokenizer's
    vocabulary (a file asset, restored after the graph) is back.

    Args:
        tokenizer: a Keras layer mapping a batch of strings to token ids (a tensor, taken as
            `token_ids`) or to a dict of them.
        sequence_length: the fixed length of the tokenizer's outputs.
        names: the outputs to keep, e.g. `("token_ids",)` or
            `("token_ids", "segment_ids", "padding_mask")`.
    """

    def __init__(self, tokenizer, sequence_length: int, names: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = int(sequence_length)
        self.names = tuple(names)

    def build(self, input_shape=None):
        self.built = True  # the tokenizer builds itself on its first call

    def call(self, strings):
        outputs = self.tokenizer(strings)
        if not isinstance(outputs, dict):
            outputs = {"token_ids": outputs}
        return {name: ops.cast(outputs[name], "int32") for name in self.names}

    def compute_output_spec(self, strings):
        shape = (strings.shape[0], self.sequence_length)
        return {name: keras.KerasTensor(shape, dtype="int32", name=name) for name in self.names}

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
                "sequence_length": self.sequence_length,
                "names": list(self.names),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="transferkit")
class ClassLabels(keras.layers.Layer):
    """Logits -> class probabilities; the layer that says what a classifier's outputs mean.

    One logit (two classes) becomes `[1 - sigmoid(x), sigmoid(x)]`; more logits go through a
    softmax. So every classifier ends in `(batch, num_classes)` probabilities, columns in
    `class_names` order, and trains on logits (`from_logits=True`) before this layer.

    Args:
        class_names: the label of each class, in output order.
        task: `"image"` or `"text"`: which transferkit classifier wraps the model.
        metadata: plain JSON-serialisable data about how the model was made. Default `{}`.
    """

    def __init__(self, class_names, task: str, metadata: dict | None = None, **kwargs):
        kwargs.setdefault("name", "labels")
        super().__init__(**kwargs)
        self.class_names = [str(c) for c in class_names]
        self.task = task
        self.metadata = dict(metadata or {})

    def call(self, logits):
        logits = ops.cast(logits, self.compute_dtype)
        if logits.shape[-1] == 1:
            positive = ops.sigmoid(logits)
            return ops.concatenate([1.0 - positive, positive], axis=-1)
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.class_names))

    def get_config(self):
        config = super().get_config()
        config.update(
            {"class_names": self.class_names, "task": self.task, "metadata": self.metadata}
        )
        return config
