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

from transferkit.errors import InputError

__all__ = [
    "ClassLabels", "ImagePreprocessing", "InferenceMode", "SavedModelFeatures",
    "StandardisedHuber", "StandardisedMAE", "TextInputs", "labels_layer",
    "register_keras_hub_layers",
]

#: Modules of transferkit's layers built on KerasHub's (imported only with KerasHub: a model file
#: that names them holds KerasHub layers too). A saved text model on MPNet holds its backbone.
KERAS_HUB_LAYER_MODULES = ("transferkit.backbones.mpnet",)


def register_keras_hub_layers() -> None:
    """Registers transferkit's KerasHub-based layers with Keras, for loading a model file that
    holds KerasHub layers (call once KerasHub is known to be installed)."""
    import importlib

    for module in KERAS_HUB_LAYER_MODULES:
        importlib.import_module(module)


def all_layers(model, include_self: bool = True) -> list:
    """Every layer inside `model`, nested ones too (layers of sub-models, wrapped layers, layers
    kept as attributes), each once; `model` itself first when `include_self`.

    Keras 3 has no public way to list them: `Model.layers` gives the top level only, and Keras
    itself walks `Layer._flatten_layers` (what `trainer.model_supports_jit` and the seed
    generators use). This is the one place transferkit calls it.
    """
    return list(model._flatten_layers(include_self=include_self, recursive=True))  # noqa: SLF001


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

    @classmethod
    def of(cls, preprocessing, name: str | None = None) -> ImagePreprocessing:
        """The layer that applies a backbone's `Preprocessing` (`backbones/preprocessing.py`)."""
        return cls(mean=preprocessing.mean, std=preprocessing.std,
                   channel_order=preprocessing.channel_order, name=name)

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
    `class_names` order, and trains on logits (`from_logits=True`) before this layer. The logits
    are divided by `temperature` first (temperature scaling, fitted on the validation split:
    `transferkit.reports.calibration`), a non-trainable weight, so that calibrated scores are in
    the saved file and in every export.

    What the outputs mean depends on `target` (`transferkit.tasks.targets`): for
    `"multi-label"` each logit goes through its own sigmoid (a probability per label; the
    thresholds that make a label set are in `metadata["thresholds"]`); for `"regression"` the one
    output is `logit * target_scale + target_mean`, the network having learned standardised
    targets, so the model answers in the user's units.

    Args:
        class_names: the label of each class, in output order (regression: the target's name).
        task: `"image"` or `"text"`: which transferkit classifier wraps the model.
        metadata: plain JSON-serialisable data about how the model was made. Default `{}`.
        temperature: what the logits are divided by. Default `1.0` (uncalibrated).
        target: `"single-label"`, `"multi-label"` or `"regression"`. Default `None`:
            single-label.
        target_mean, target_scale: the regression target's standardisation (the training
            split's mean and standard deviation). Default `0.0` and `1.0`.
    """

    def __init__(self, class_names, task: str, metadata: dict | None = None,
                 temperature: float = 1.0, target: str | None = None,
                 target_mean: float = 0.0, target_scale: float = 1.0, **kwargs):
        kwargs.setdefault("name", "labels")
        super().__init__(**kwargs)
        self.class_names = [str(c) for c in class_names]
        self.task = task
        self.target = target or "single-label"  # files from before targets have none
        self.target_mean = float(target_mean)
        self.target_scale = float(target_scale)
        self.metadata = dict(metadata or {})
        self._initial_temperature = float(temperature)
        self._temperature = None

    def build(self, input_shape=None):
        self._temperature = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self._initial_temperature),
            trainable=False, name="temperature",
        )
        self.built = True

    @property
    def temperature(self) -> float:
        """The temperature the logits are divided by (1.0: not calibrated)."""
        if self._temperature is None:
            return self._initial_temperature
        return float(keras.ops.convert_to_numpy(self._temperature.value))

    @temperature.setter
    def temperature(self, value: float) -> None:
        if self._temperature is None:
            self._initial_temperature = float(value)
        else:
            self._temperature.assign(float(value))

    def load_own_variables(self, store):
        if len(store.keys()) == 0:  # a file from before temperatures: its config's value stays
            return
        super().load_own_variables(store)

    def call(self, logits):
        logits = ops.cast(logits, self.compute_dtype)
        if self._temperature is not None:
            logits = logits / ops.cast(self._temperature, self.compute_dtype)
        if self.target == "regression":
            return logits * self.target_scale + self.target_mean
        if self.target == "multi-label":
            return ops.sigmoid(logits)
        if logits.shape[-1] == 1:
            positive = ops.sigmoid(logits)
            return ops.concatenate([1.0 - positive, positive], axis=-1)
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.class_names))

    def get_config(self):
        config = super().get_config()
        config.update(
            {"class_names": self.class_names, "task": self.task, "metadata": self.metadata,
             "temperature": self.temperature, "target": self.target,
             "target_mean": self.target_mean, "target_scale": self.target_scale}
        )
        return config


@keras.saving.register_keras_serializable(package="transferkit")
class StandardisedHuber(keras.losses.Loss):
    """Huber loss of logits against standardised targets: `y` comes in the user's units and is
    standardised here with the training split's `mean` and `scale`, so labels stay in their
    units everywhere else (splits, reports) and the network learns values near 0."""

    def __init__(self, mean: float = 0.0, scale: float = 1.0, delta: float = 1.0,
                 name: str = "standardised_huber", **kwargs):
        super().__init__(name=name, **kwargs)
        self.mean, self.scale, self.delta = float(mean), float(scale), float(delta)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
        return keras.losses.huber((y_true - self.mean) / self.scale, y_pred, delta=self.delta)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "scale": self.scale,
                "delta": self.delta}


@keras.saving.register_keras_serializable(package="transferkit")
class StandardisedMAE(keras.metrics.MeanMetricWrapper):
    """Mean absolute error in the user's units, of logits that are standardised predictions."""

    def __init__(self, mean: float = 0.0, scale: float = 1.0, name: str = "mae", **kwargs):
        self.mean, self.scale = float(mean), float(scale)
        super().__init__(fn=self._error, name=name, **kwargs)

    def _error(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), ops.shape(y_pred))
        return ops.mean(ops.abs(y_pred * self.scale + self.mean - y_true), axis=-1)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "mean": self.mean, "scale": self.scale}


def labels_layer(model) -> ClassLabels:
    """The `ClassLabels` layer of a transferkit model (raises InputError if there is none)."""
    for layer in reversed(model.layers):
        if isinstance(layer, ClassLabels):
            return layer
    raise InputError(
        f"{model.name!r} is not a transferkit classifier: it has no `ClassLabels` layer. "
        "Load models saved by transferkit (`transferkit train ...` or `.save(path)`)."
    )


class _LoadedGraph:
    """A restored SavedModel and its endpoints, held outside TensorFlow's object tracking (a
    tracked dict of restored functions cannot be saved again, e.g. for an ONNX export)."""

    def __init__(self, obj=None, inference=None, training=None):
        self.obj, self.inference, self.training = obj, inference, training


@keras.saving.register_keras_serializable(package="transferkit")
class SavedModelFeatures(keras.layers.Layer):
    """A TensorFlow SavedModel (a TF Hub feature vector, `model.export` output) as a layer, with
    the SavedModel's files inside the saved `.keras` file (TensorFlow backend only).

    Like `keras.layers.TFSMLayer`, its variables are the SavedModel's own (tracked as this layer's
    weights, so they save, load and fine-tune); unlike it, the `.keras` file is self-contained and
    loads in safe mode when the graph is trusted on this machine (see
    `transferkit.backbones.saved_model`: a graph is code).

    Args:
        digest: sha256 of the SavedModel's files (`saved_model.folder_digest`).
        endpoint: the inference endpoint: `"serve"`, `"__call__"` or `"serving_default"`.
        output_shape: the output's shape without the batch axis.
        input_key: the keyword a signature takes the images by. Default `None` (positional).
        output_key: the output's key when the endpoint returns a dict. Default `None`.
        training_endpoint: `"__call__"` (called with `training=True`) or `"call_training"`.
            Default `None`: the inference endpoint always.
        source: where the folder was, for humans. Default `""`.
        folder: a SavedModel folder to load now (when a backbone is built). Default `None`: the
            files come from the `.keras` file's assets. Not saved.
    """

    def __init__(self, digest: str, endpoint: str, output_shape, input_key: str | None = None,
                 output_key: str | None = None, training_endpoint: str | None = None,
                 source: str = "", folder=None, **kwargs):
        super().__init__(**kwargs)
        from keras.src.saving import serialization_lib

        self.digest = str(digest)
        self.endpoint = endpoint
        self.output_shape_ = tuple(output_shape)
        self.input_key = input_key
        self.output_key = output_key
        self.training_endpoint = training_endpoint
        self.source = str(source)
        self._safe = folder is None and serialization_lib.in_safe_mode() is not False
        self._files: dict | None = None
        self._graph = _LoadedGraph()
        self._pending: dict | None = None
        if folder is not None:
            self._load(folder)
        self.built = True

    def _load(self, folder) -> None:
        from transferkit.backbones.saved_model import load_saved_model
        from transferkit.errors import InputError
        from transferkit.trusted_graphs import folder_digest, read_files

        files = read_files(folder)
        if folder_digest(files) != self.digest:
            raise InputError(
                f"The SavedModel {self.source or folder} changed since this layer was made "
                "(its files have another sha256)."
            )
        obj = load_saved_model(folder)
        self._files = files
        inference = self._function(obj, self.endpoint, False)
        training = (self._function(obj, self.training_endpoint, True)
                    if self.training_endpoint else inference)
        self._graph = _LoadedGraph(obj, inference, training)
        trainable = list(getattr(obj, "trainable_variables", ()) or ())
        seen = {id(v) for v in trainable}
        others = [v for v in (getattr(obj, "variables", ()) or ()) if id(v) not in seen]
        locked = self._tracker.locked
        self._tracker.unlock()
        for variable in trainable + others:
            self._track_variable(keras.Variable(
                initializer=variable, trainable=variable.trainable, dtype=variable.dtype.name,
                shape=variable.shape, name=variable.name.split(":")[0].replace("/", "_"),
            ))
        if locked:
            self._tracker.lock()

    def _function(self, obj, name: str, training: bool):
        if name == "__call__":
            return lambda x: obj(x, training=training)
        function = getattr(obj, name, None)
        if function is None:
            function = obj.signatures[name]
        if self.input_key:
            return lambda x: function(**{self.input_key: x})
        return function

    def call(self, inputs, training=False):
        function = self._graph.training if training else self._graph.inference
        if function is None:
            raise RuntimeError("The SavedModel of this layer is not loaded yet.")
        outputs = function(ops.cast(inputs, "float32"))
        if self.output_key is not None:
            outputs = outputs[self.output_key]
        return outputs

    def compute_output_spec(self, inputs, training=False):
        return keras.KerasTensor((inputs.shape[0], *self.output_shape_), dtype="float32")

    def save_assets(self, dir_path):
        import os

        for name, data in (self._files or {}).items():
            path = os.path.join(dir_path, "saved_model", *name.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as file:
                file.write(data)

    def load_own_variables(self, store):
        if self._graph.inference is None:  # the graph comes with the assets, after the variables
            self._pending = {key: store[key][...] for key in store.keys()}
            return
        super().load_own_variables(store)

    def load_assets(self, dir_path):
        import os

        from transferkit.trusted_graphs import (
            folder_digest,
            is_trusted,
            read_files,
            untrusted_message,
        )

        folder = os.path.join(dir_path, "saved_model")
        if folder_digest(read_files(folder)) != self.digest:
            raise ValueError("The SavedModel inside this file does not match its recorded sha256.")
        if self._safe and not is_trusted(self.digest):
            raise ValueError(untrusted_message("This model file", [self.digest]))
        self._load(folder)
        if self._pending is not None:
            super().load_own_variables(self._pending)
            self._pending = None

    def get_config(self):
        config = super().get_config()
        config.update({
            "digest": self.digest, "endpoint": self.endpoint,
            "output_shape": list(self.output_shape_), "input_key": self.input_key,
            "output_key": self.output_key, "training_endpoint": self.training_endpoint,
            "source": self.source,
        })
        return config
