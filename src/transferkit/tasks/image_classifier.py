"""Image classification by transfer learning: a pretrained backbone, a small head, fine-tuning.

The six steps of the Keras transfer-learning guide, made fast on a CPU:

1. the backbone without its top, frozen; called with `training=False`, so its BatchNormalization
   layers stay in inference mode also after they are unfrozen;
2. a head: `GlobalAveragePooling2D` + `Dropout(0.2)` + `Dense` (one logit for two classes, a
   softmax otherwise), then the `ClassLabels` layer that carries the class names;
3. the head trains on *cached features*: while the backbone is frozen its pooled output for each
   image is computed once and stored on disk (keyed by backbone, its weights, image size and the
   file's content), so head epochs take seconds. With augmentation, a fixed number of augmented
   views per image are precomputed instead of recomputing the backbone every step;
4. the head's layers *are* the classifier's layers (shared, not copied), so the trained head is
   already grafted onto the backbone: fine-tuning and the saved model work on raw images;
5. fine-tuning unfreezes all of the backbone, its top N layers, or everything from a named layer,
   recompiles at a low learning rate and trains end to end with early stopping (best weights
   restored), TensorBoard logs and a checkpoint every epoch;
6. the saved model is one `.keras` file that takes RGB images of any size (resizing and the
   backbone's preprocessing inside) and loads with `safe_mode=True`.

`train_images(...)` is the whole pipeline behind `transferkit train images`, reports included.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

# Imported for its side effect too: it registers `ImagePreprocessing`, which saved models contain.
from transferkit.backbones.preprocessing import ImagePreprocessing  # noqa: F401
from transferkit.errors import DataError, ImageReadError, InputError

__all__ = [
    "ImageClassifier",
    "InferenceMode",
    "extract_features",
    "train_images",
    "DEFAULT_BACKBONE",
]

DEFAULT_BACKBONE = "efficientnet_lite0"
_FEATURES_VERSION = 1  # bump when the way features are computed changes, to retire old caches


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


class _TrainingMode(keras.layers.Wrapper):
    """Runs random augmentation layers as in training, also inside `predict` (augmented views for
    the feature cache). Never saved."""

    def call(self, inputs, training=None):
        return self.layer(inputs, training=True)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


# -- inputs -------------------------------------------------------------------------------------


def _is_path(value) -> bool:
    return isinstance(value, (str, os.PathLike))


def _array_digest(image: np.ndarray) -> str:
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _to_uint8(image) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InputError(
            "Images must be RGB arrays of shape (height, width, 3) with values in [0, 255]. "
            f"Received: shape {array.shape}."
        )
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    array = array[..., :3]
    if array.dtype != np.uint8:
        array = np.clip(np.rint(np.asarray(array, dtype=np.float64)), 0, 255).astype(np.uint8)
    return array


def _image_list(inputs) -> list:
    """A list of paths or of RGB arrays, from one path, paths, one image or a batch array."""
    if _is_path(inputs):
        return [inputs]
    if isinstance(inputs, np.ndarray) or hasattr(inputs, "numpy"):
        array = np.asarray(inputs)
        if array.ndim == 3:
            return [array]
        if array.ndim == 4:
            return list(array)
        raise InputError(
            "An image array must be (height, width, 3) or a batch (n, height, width, 3). "
            f"Received: shape {array.shape}."
        )
    try:
        items = list(inputs)
    except TypeError:
        raise InputError(
            "Pass image file paths, or RGB arrays of shape (height, width, 3). "
            f"Received: {type(inputs).__name__}."
        ) from None
    if not items:
        raise InputError("No images given. Pass one or more image files or arrays.")
    return items


def _resized_arrays(images: Sequence, size: tuple[int, int], policy: str) -> np.ndarray:
    from transferkit.data.images import resize_image

    out = np.empty((len(images), *size, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        array = _to_uint8(image)
        if array.shape[:2] != tuple(size):
            array = np.clip(np.rint(resize_image(array, size, policy)), 0, 255).astype(np.uint8)
        out[i] = array
    return out


class _Inputs:
    """Images given as file paths or as arrays, with a content digest each (the cache key)."""

    def __init__(self, items: list, digests: dict | None = None):
        self.items = items
        self.are_paths = all(_is_path(i) for i in items)
        if not self.are_paths and any(_is_path(i) for i in items):
            raise InputError("Pass either image paths or image arrays, not a mix of both.")
        if self.are_paths:
            self.items = [os.fspath(p) for p in items]
        self._digests = digests
        self._digest_list = None

    def __len__(self) -> int:
        return len(self.items)

    def digests(self) -> list[str]:
        if self._digest_list is None:
            if self.are_paths:
                from transferkit.training.feature_cache import file_digest

                known = self._digests or {}
                self._digest_list = [
                    known.get(p) or file_digest(p) if os.path.isfile(p) else "missing:" + p
                    for p in self.items
                ]
            else:
                self._digest_list = [_array_digest(_to_uint8(a)) for a in self.items]
        return self._digest_list

    def dataset(self, size, policy, *, labels=None, batch_size=32, shuffle=False, seed=0,
                decode_log=None, keep_unreadable=False):
        """A tf.data pipeline of `uint8` images (and labels)."""
        import tensorflow as tf

        from transferkit.data.images import image_dataset

        if self.are_paths:
            return image_dataset(
                self.items, labels, image_size=size, policy=policy, batch_size=batch_size,
                shuffle=shuffle, seed=seed, decode_log=decode_log,
                keep_unreadable=keep_unreadable,
            )
        arrays = _resized_arrays(self.items, size, policy)
        parts = (arrays,) if labels is None else (arrays, np.asarray(labels))
        if keep_unreadable:  # arrays are always readable; same element shape as for files
            parts += (np.ones(len(arrays), dtype=bool),)
        dataset = tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else arrays)
        if shuffle:
            dataset = dataset.shuffle(len(arrays), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _images_only(images, flags):
    return images


@contextlib.contextmanager
def _filtered_dataset_warnings():
    """Keras warns "Your input ran out of data" at the end of the first epoch of any dataset whose
    length is unknown, as a filtered one (unreadable files dropped) is; that is expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)
        yield


def _unreadable_error(items: list[dict]) -> ImageReadError:
    shown = "; ".join(item["reason"] for item in items[:3])
    more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
    return ImageReadError(f"{len(items)} image(s) could not be read: {shown}{more}")


# -- labelled data ------------------------------------------------------------------------------


class _Split:
    """Train and validation images with int labels, from a folder, an `ImageFolder` or arrays."""

    def __init__(self, train: _Inputs, train_labels, validation: _Inputs, validation_labels,
                 class_names: list[str], folder=None):
        self.train = train
        self.train_labels = np.asarray(train_labels, dtype=np.int64)
        self.validation = validation
        self.validation_labels = np.asarray(validation_labels, dtype=np.int64)
        self.class_names = class_names
        self.folder = folder  # the ImageFolder when the data came from disk

    @property
    def skipped(self) -> list[dict]:
        return list(self.folder.skipped) if self.folder is not None else []

    def drop_unreadable(self, items: list[dict]) -> None:
        if not items:
            return
        if self.folder is not None:
            self.folder.add_unreadable(items)
            self.train = _Inputs(self.folder.train_paths, self.folder.digests)
            self.train_labels = self.folder.train_labels
            self.validation = _Inputs(self.folder.validation_paths, self.folder.digests)
            self.validation_labels = self.folder.validation_labels
        else:
            raise _unreadable_error(items)


def _labels_to_ints(labels, class_names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    labels = list(np.asarray(labels).tolist())
    if labels and all(isinstance(v, str) for v in labels):
        names = class_names or sorted(set(labels))
        unknown = sorted(set(labels) - set(names))
        if unknown:
            raise InputError(
                f"Labels {unknown} are not among the classes {names}. Pass labels from "
                "`class_names`, or leave `class_names` unset."
            )
        return np.asarray([names.index(v) for v in labels], dtype=np.int64), list(names)
    if not all(isinstance(v, (int, bool)) and not isinstance(v, bool) for v in labels):
        raise InputError(
            "Labels must be ints (class indices) or strings (class names). "
            f"Received: {labels[:5]!r}..."
        )
    ints = np.asarray(labels, dtype=np.int64)
    count = len(class_names) if class_names else int(ints.max()) + 1 if len(ints) else 0
    if len(ints) and (ints.min() < 0 or ints.max() >= count):
        raise InputError(
            f"Labels must be in [0, {count - 1}] for {count} classes. Received: "
            f"min {ints.min()}, max {ints.max()}."
        )
    return ints, list(class_names) if class_names else [str(i) for i in range(count)]


def _as_split(data, validation_data, *, class_names, validation_split: float, seed: int) -> _Split:
    from transferkit.data.image_folder import ImageFolder, discover_image_folder

    if _is_path(data):
        data = discover_image_folder(data, validation_split=validation_split, seed=seed)
    if isinstance(data, ImageFolder):
        if validation_data is not None:
            raise InputError(
                "`validation_data` must be None when `data` is a folder: the folder's own split "
                "(train/ and validation/, or `validation_split`) is used."
            )
        return _Split(
            _Inputs(data.train_paths, data.digests), data.train_labels,
            _Inputs(data.validation_paths, data.digests), data.validation_labels,
            list(data.class_names), folder=data,
        )
    if not (isinstance(data, tuple) and len(data) == 2):
        raise InputError(
            "`data` must be a folder of class sub-folders, an `ImageFolder`, or a tuple "
            f"(images, labels). Received: {type(data).__name__}."
        )
    images, labels = _image_list(data[0]), data[1]
    if len(images) != len(labels):
        raise InputError(f"{len(images)} images but {len(labels)} labels; give one label each.")
    train_labels, names = _labels_to_ints(labels, class_names)
    if len(set(train_labels.tolist())) < 2:
        raise DataError("The training data has a single class; a classifier needs at least two.")
    if validation_data is None:
        from transferkit.data.image_folder import _stratified_split

        inputs = _Inputs(images)
        keys = [str(i) for i in range(len(images))]
        digests = dict(zip(keys, inputs.digests()))
        train_idx, val_idx = _stratified_split(keys, train_labels, digests, validation_split, seed)
        if not val_idx:
            raise DataError("Too few images to hold some out for validation; pass more images.")
        pick = lambda idx: [images[i] for i in idx]  # noqa: E731
        return _Split(_Inputs(pick(train_idx)), train_labels[train_idx],
                      _Inputs(pick(val_idx)), train_labels[val_idx], names)
    if not (isinstance(validation_data, tuple) and len(validation_data) == 2):
        raise InputError("`validation_data` must be a tuple (images, labels).")
    val_images = _image_list(validation_data[0])
    val_labels, _ = _labels_to_ints(validation_data[1], names)
    return _Split(_Inputs(images), train_labels, _Inputs(val_images), val_labels, names)


# -- the classifier ----------------------------------------------------------------------------


def _parse_unfreeze(unfreeze) -> str | int:
    if isinstance(unfreeze, bool):
        raise InputError(
            f"`unfreeze` must be 'all', a number of top layers, or a layer name. "
            f"Received: unfreeze={unfreeze!r}."
        )
    if isinstance(unfreeze, (int, np.integer)) or (isinstance(unfreeze, str) and unfreeze.isdigit()):
        count = int(unfreeze)
        if count < 1:
            raise InputError(
                "`unfreeze` as a number of top layers must be >= 1 (to skip fine-tuning, pass "
                f"fine_tune_epochs=0). Received: unfreeze={unfreeze!r}."
            )
        return count
    if isinstance(unfreeze, str) and unfreeze.strip():
        return unfreeze.strip()
    raise InputError(
        f"`unfreeze` must be 'all', a number of top layers, or a layer name. "
        f"Received: unfreeze={unfreeze!r}."
    )


class ImageClassifier:
    """A pretrained backbone with a trained classification head.

    Args:
        backbone: a registered backbone name. Default `"efficientnet_lite0"`.
        num_classes: the number of classes; default `None` (from `class_names` or the data).
        class_names: the class names in output order; default `None` (from the data, sorted).
        image_size: the side (or `(height, width)`) images are resized to; default `None` (the
            backbone's own size, 224 for EfficientNet-Lite0).
        weights: `"imagenet"` (default), `None` (random, for tests), or a `.weights.h5` path.
        dropout: dropout rate before the last layer. Default 0.2.
        augment: augmentations for training, as `transferkit.data.augmentation.parse_augment`
            (`"flip,rotate,zoom"`, a list, or `None`). Default `None`.
        augment_views: augmented views per training image precomputed for head training when
            `augment` is set. Default 2.
        seed: seed of splits, shuffles, augmentation and initial weights. Default 0.
        cache_dir: folder of the feature cache; default `None` (`$TRANSFERKIT_CACHE_DIR` or the
            user cache); `False` turns caching off.

    Example:
        >>> clf = ImageClassifier(backbone="efficientnet_lite0")
        >>> clf.fit("data/pets", epochs=10)           # head on cached features
        >>> clf.fine_tune(epochs=3, unfreeze=20)       # top 20 layers, end to end
        >>> clf.predict(["new.jpg"])[0]["label"]
        >>> clf.save("pets.keras"); transferkit.load("pets.keras")
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        image_size=None,
        weights: str | os.PathLike | None = "imagenet",
        dropout: float = 0.2,
        augment=None,
        augment_views: int = 2,
        seed: int = 0,
        cache_dir: str | os.PathLike | bool | None = None,
    ):
        self.backbone = backbone
        self.num_classes = num_classes
        self.class_names = class_names
        self.image_size = image_size
        self.weights = weights
        self.dropout = dropout
        self.augment = augment
        self.augment_views = augment_views
        self.seed = seed
        self.cache_dir = cache_dir
        self.model = None
        self.history: list[dict] = []
        self.run_dir: Path | None = None
        self._split: _Split | None = None
        self._split_features: dict | None = None
        self.skipped: list[dict] = []

    # -- config --------------------------------------------------------------------------------

    def get_config(self) -> dict:
        """The constructor arguments as plain data (class names resolved after `fit`)."""
        return {
            "backbone": self.backbone,
            "num_classes": self.num_classes,
            "class_names": None if self.class_names is None else list(self.class_names),
            "image_size": list(self.image_size) if isinstance(self.image_size, (tuple, list))
            else self.image_size,
            "weights": None if self.weights is None else str(self.weights),
            "dropout": self.dropout,
            "augment": list(self._augment_names()),
            "augment_views": self.augment_views,
            "seed": self.seed,
            "cache_dir": self.cache_dir if isinstance(self.cache_dir, (bool, type(None)))
            else str(self.cache_dir),
        }

    @classmethod
    def from_config(cls, config: dict) -> "ImageClassifier":
        return cls(**config)

    @classmethod
    def from_keras_model(cls, model) -> "ImageClassifier":
        """Wraps a classifier model (e.g. from `keras.saving.load_model`) again.

        Raises:
            InputError: the model is not an image classifier saved by transferkit.
        """
        from transferkit.tasks.base import labels_layer

        labels = labels_layer(model)
        if labels.task != "image":
            raise InputError(
                f"{model.name!r} is a {labels.task!r} classifier, not an image classifier. Load it "
                "with `transferkit.load(path)`."
            )
        config = dict(labels.metadata.get("config") or {})
        config["class_names"] = list(labels.class_names)
        config["num_classes"] = len(labels.class_names)
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        classifier = cls(**{k: v for k, v in config.items() if k in known})
        classifier.model = model
        return classifier

    # -- resolved settings ---------------------------------------------------------------------

    def _augment_names(self) -> tuple[str, ...]:
        from transferkit.data.augmentation import parse_augment

        return parse_augment(self.augment)

    def _spec(self):
        from transferkit.backbones.registry import get_spec

        return get_spec(self.backbone)

    def _size(self) -> tuple[int, int]:
        from transferkit.data.images import image_size_pair

        size = self.image_size if self.image_size is not None else self._spec().default_input_size
        return image_size_pair(size)

    def _policy(self) -> str:
        return self._spec().preprocessing.resize

    def _names(self) -> list[str]:
        if self.class_names is not None:
            return [str(c) for c in self.class_names]
        if self.num_classes is not None:
            return [str(i) for i in range(int(self.num_classes))]
        raise InputError(
            "The number of classes is unknown: pass `num_classes` or `class_names`, or call "
            "`fit` with labelled data first."
        )

    def _check_settings(self) -> None:
        if isinstance(self.dropout, bool) or not (
            isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1
        ):
            raise InputError(
                f"`dropout` must be a float in [0, 1). Received: dropout={self.dropout!r}."
            )
        if isinstance(self.augment_views, bool) or not isinstance(self.augment_views, int) or (
            self.augment_views < 0
        ):
            raise InputError(
                f"`augment_views` must be an int >= 0. Received: augment_views={self.augment_views!r}."
            )
        if self.num_classes is not None and self.class_names is not None and (
            int(self.num_classes) != len(self.class_names)
        ):
            raise InputError(
                f"`num_classes` ({self.num_classes}) does not match the {len(self.class_names)} "
                "`class_names`. Pass one of them, or matching values."
            )
        names = self._names()
        if len(names) < 2:
            raise InputError(
                f"A classifier needs at least 2 classes. Received: num_classes={len(names)}."
            )

    # -- the model -----------------------------------------------------------------------------

    @property
    def built(self) -> bool:
        return self.model is not None

    def build(self):
        """Builds the Keras model (backbone frozen, untrained head). Returns it."""
        from transferkit.backbones.registry import get_backbone
        from transferkit.data.augmentation import build_augmentation
        from transferkit.tasks.base import ClassLabels

        self._check_settings()
        names = self._names()
        spec = self._spec()
        height, width = self._size()
        keras.utils.set_random_seed(int(self.seed))
        base = get_backbone(spec.name, weights=self.weights, input_shape=(height, width, 3))
        base.trainable = False
        inputs = keras.Input((None, None, 3), name="image")
        x = keras.layers.Resizing(
            height, width, crop_to_aspect_ratio=self._policy() == "center_crop",
            antialias=True, name="resize",
        )(inputs)
        augmentation = build_augmentation(self._augment_names(), seed=self.seed)
        if augmentation is not None:
            x = augmentation(x)
        # BatchNorm in inference mode, also once unfrozen (see InferenceMode for why a wrapper).
        x = InferenceMode(base, name="backbone")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dropout(self.dropout, name="dropout")(x)
        binary = len(names) == 2
        x = keras.layers.Dense(
            1 if binary else len(names), activation=None if binary else "softmax",
            name="classifier",
        )(x)
        metadata = {
            # cache_dir is this machine's business, not the model's
            "config": self.get_config()
            | {"class_names": names, "num_classes": len(names), "cache_dir": None},
            "output": "logit" if binary else "softmax",
            "image_size": [height, width],
            "resize": self._policy(),
            "backbone_layer": "backbone",
        }
        outputs = ClassLabels(names, task="image", metadata=metadata)(x)
        self.model = keras.Model(inputs, outputs, name="image_classifier")
        self.class_names, self.num_classes = names, len(names)
        return self.model

    def _require_model(self):
        if self.model is None:
            raise InputError(
                "This ImageClassifier has no trained model yet. Call `fit(...)` first, or load one "
                "with `transferkit.load(path)`."
            )
        return self.model

    def _backbone_model(self):
        model = self._require_model()
        from transferkit.tasks.base import labels_layer

        name = labels_layer(model).metadata.get("backbone_layer", "backbone")
        return model.get_layer(name).layer

    def _output_kind(self) -> str:
        from transferkit.tasks.base import labels_layer

        return labels_layer(self._require_model()).metadata.get("output", "softmax")

    def _head_model(self):
        """Pooled features -> class outputs, sharing the classifier's dropout and dense layers."""
        model = self._require_model()
        dim = self._backbone_model().output.shape[-1]
        features = keras.Input((dim,), name="features")
        outputs = model.get_layer("classifier")(model.get_layer("dropout")(features))
        return keras.Model(features, outputs, name="head")

    def _feature_model(self, views: int = 0):
        """Resized images -> pooled backbone features; with `views`, augmented views stacked."""
        backbone = self._backbone_model()
        height, width = self._size()
        images = keras.Input((height, width, 3), name="image")
        pool = keras.layers.GlobalAveragePooling2D(name="pool")
        if not views:
            return keras.Model(images, pool(backbone(images, training=False)), name="features")
        augmentation = _TrainingMode(self._require_model().get_layer("augmentation"))
        outputs = [
            pool(backbone(augmentation(images), training=False)) for _ in range(views)
        ]
        dim = backbone.output.shape[-1]
        stacked = keras.layers.Concatenate(axis=1, name="views")(
            [keras.layers.Reshape((1, dim))(output) for output in outputs]
        )
        return keras.Model(images, stacked, name="feature_views")

    def _compile(self, model, learning_rate: float) -> None:
        if self._output_kind() == "logit":
            loss = keras.losses.BinaryCrossentropy(from_logits=True)
            metrics = [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)]
        else:
            loss = keras.losses.SparseCategoricalCrossentropy()
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics,
            jit_compile=False,
        )

    def _probabilities(self, outputs) -> np.ndarray:
        outputs = np.asarray(outputs, dtype=np.float64)
        if self._output_kind() == "logit":
            positive = 1.0 / (1.0 + np.exp(-outputs.reshape(-1)))
            return np.stack([1.0 - positive, positive], axis=1)
        return outputs

    # -- features --------------------------------------------------------------------------------

    def _cache(self):
        from transferkit.training.feature_cache import FeatureCache, default_cache_root

        if self.cache_dir is False or self.weights is None:
            return None  # random weights: features never repeat, caching them only fills disks
        if self.cache_dir in (None, True):
            return FeatureCache(Path(default_cache_root()) / "images")
        return FeatureCache(self.cache_dir)

    def _weights_digest(self) -> str:
        """The sha256 of the backbone's current weights: a fine-tuned backbone gets new keys."""
        digest = hashlib.sha256()
        for weight in self._backbone_model().weights:
            digest.update(np.ascontiguousarray(np.asarray(weight)).tobytes())
        return digest.hexdigest()

    def _features(self, inputs: _Inputs, *, views: int = 0, batch_size: int = 32,
                  decode_log=None, verbose: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features of `inputs` (`(n, dim)`, or `(n, views, dim)`), and a mask of the rows
        that could be read. Cached per image."""
        from transferkit.data.images import DecodeLog

        cache = self._cache()
        log = decode_log if decode_log is not None else DecodeLog()
        digests = inputs.digests()
        keys: list[str | None] = [None] * len(inputs)
        results: list[np.ndarray | None] = [None] * len(inputs)
        if cache is not None:
            common = {
                "kind": "image-features",
                "version": _FEATURES_VERSION,
                "backbone": self._spec().name,
                "weights": self._weights_digest(),
                "image_size": list(self._size()),
                "resize": self._policy(),
                "pooling": "avg",
            }
            if views:
                common.update(augment=list(self._augment_names()), views=views, seed=self.seed)
            for i, digest in enumerate(digests):
                keys[i] = cache.key(**common, file=digest)
                results[i] = cache.get(keys[i])
        missing = [i for i, r in enumerate(results) if r is None]
        ok = np.ones(len(inputs), dtype=bool)
        if missing:
            self._compute_features(inputs, missing, keys, results, ok, cache, views=views,
                                   batch_size=batch_size, decode_log=log, verbose=verbose)
        dim = next((r.shape for r in results if r is not None), None)
        if dim is None:
            return np.zeros((len(inputs), 0), np.float32), ok
        features = np.stack([r if r is not None else np.zeros(dim, np.float32) for r in results])
        return features, ok

    def _compute_features(self, inputs, missing, keys, results, ok, cache, *, views, batch_size,
                          decode_log, verbose):
        """Runs the backbone over `inputs.items[missing]`, fills `results` and `ok`, and writes
        the cache in background threads, so that its fsyncs overlap the next batch."""
        from concurrent.futures import ThreadPoolExecutor

        subset = _Inputs([inputs.items[i] for i in missing])
        dataset = subset.dataset(
            self._size(), self._policy(), batch_size=batch_size, decode_log=decode_log,
            keep_unreadable=True,
        )
        model = self._feature_model(views)
        progress = keras.utils.Progbar(len(missing), unit_name="image") if verbose else None
        position = 0
        with ThreadPoolExecutor(max_workers=4) as writer:
            pending = []
            for images, flags in dataset:
                vectors = np.asarray(model.predict_on_batch(images), dtype=np.float32)
                for vector, readable in zip(vectors, np.asarray(flags)):
                    index = missing[position]
                    position += 1
                    if not readable:
                        ok[index] = False
                        continue
                    results[index] = vector
                    if cache is not None:
                        pending.append(writer.submit(cache.put, keys[index], vector))
                if progress is not None:
                    progress.add(len(vectors))
            for future in pending:
                future.result()  # a failed write (full disk) is an error, not a silent miss

    # -- training --------------------------------------------------------------------------------

    def _run(self, run_dir):
        from transferkit.training.run import RunDirectory

        if run_dir is None:
            if self.run_dir is None:
                self.run_dir = Path(tempfile.mkdtemp(prefix="transferkit-images-"))
            return RunDirectory(self.run_dir)
        run = run_dir if isinstance(run_dir, RunDirectory) else RunDirectory(run_dir)
        self.run_dir = run.path
        return run

    def fit(
        self,
        data,
        validation_data=None,
        *,
        epochs: int = 20,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        patience: int = 5,
        validation_split: float = 0.2,
        run_dir=None,
        verbose: Any = "auto",
    ) -> list[dict]:
        """Trains the head on the frozen backbone's cached features (steps 1-4).

        Args:
            data: a folder (class sub-folders, or train/ and validation/), an `ImageFolder`, or
                `(images, labels)` with images as file paths or RGB arrays and labels as ints or
                class names.
            validation_data: `(images, labels)` when `data` is a tuple; default `None` (split off
                `validation_split` of `data`, stratified and seeded).
            epochs: head epochs (early stopping may end sooner). Default 20.
            batch_size: images per step. Default 32.
            learning_rate: Adam's learning rate for the head. Default 1e-3.
            patience: epochs without a better validation loss before stopping. Default 5.
            validation_split: fraction held out when the data is not split already. Default 0.2.
            run_dir: folder for checkpoints, logs and history (a rerun on the same folder resumes);
                default `None` (a temporary folder).
            verbose: Keras progress output. Default `"auto"`.

        Returns:
            The head phase's history rows (one dict per epoch).
        """
        from transferkit.data.images import DecodeLog
        from transferkit.training.callbacks import fit_phase

        split = self._labelled(data, validation_data, validation_split)
        self.class_names = split.class_names
        self.num_classes = len(split.class_names)
        if self.model is None:
            self.build()
        views = self.augment_views if self._augment_names() else 0
        log = DecodeLog()
        show = verbose not in (0, False, "0")
        started = time.perf_counter()
        train_x, train_ok = self._features(split.train, batch_size=batch_size, decode_log=log,
                                           verbose=show)
        val_x, val_ok = self._features(split.validation, batch_size=batch_size, decode_log=log,
                                       verbose=show)
        view_x = None
        if views:
            view_x, _ = self._features(split.train, views=views, batch_size=batch_size,
                                       decode_log=log, verbose=show)
        self.feature_seconds = time.perf_counter() - started
        split.drop_unreadable(log.items())
        train_x, val_x = train_x[train_ok], val_x[val_ok]
        if view_x is not None:
            view_x = view_x[train_ok]
        self._split = split
        self.skipped = split.skipped
        self._split_features = {"train": train_x, "validation": val_x}

        head = self._head_model()
        self._compile(head, learning_rate)
        train_ds = self._feature_dataset(train_x, split.train_labels, view_x, batch_size)
        val_ds = (val_x, split.validation_labels)
        run = self._run(run_dir)
        rows = fit_phase(
            head, train_ds, val_ds, epochs=epochs, run=run, phase="head", patience=patience,
            verbose=verbose, validation_batch_size=256, shuffle=False,  # the dataset shuffles
        )
        self.history = [r for r in self.history if r.get("phase") != "head"] + list(rows)
        return rows

    def _known_names(self) -> list[str] | None:
        if self.class_names is not None:
            return [str(c) for c in self.class_names]
        if self.num_classes is not None:
            return [str(i) for i in range(int(self.num_classes))]
        return None

    def _labelled(self, data, validation_data, validation_split) -> _Split:
        known = self._known_names()
        split = _as_split(
            data, validation_data, class_names=known, validation_split=validation_split,
            seed=self.seed,
        )
        if known is not None and split.class_names != known:
            what = "class_names" if self.class_names is not None else "num_classes"
            raise InputError(
                f"The data has classes {split.class_names} but this classifier was made for "
                f"{known} (`{what}`). Pass matching `{what}`, leave it unset, or use a new "
                "ImageClassifier for other classes."
            )
        return split

    def _feature_dataset(self, features, labels, views, batch_size):
        """Head training data: each epoch draws one feature vector per image, the plain one or
        one of its precomputed augmented views."""
        import tensorflow as tf

        labels = np.asarray(labels)
        if views is None or views.size == 0:
            pool_x, pool_y = features, labels
        else:
            pool_x = np.concatenate([features[:, None, :], views], axis=1)
            per_image = pool_x.shape[1]
            pool_x = pool_x.reshape(-1, pool_x.shape[-1])
            pool_y = np.repeat(labels, per_image)
        dataset = tf.data.Dataset.from_tensor_slices((pool_x, pool_y))
        dataset = dataset.shuffle(len(pool_x), seed=self.seed, reshuffle_each_iteration=True)
        return dataset.take(len(features)).batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def _unfreeze(self, unfreeze) -> int:
        """Makes (part of) the backbone trainable. Returns the number of trainable layers."""
        import difflib

        choice = _parse_unfreeze(unfreeze)
        wrapper = self._backbone_model()
        arch = next(layer for layer in wrapper.layers if hasattr(layer, "layers"))
        layers = [layer for layer in arch.layers if layer.__class__.__name__ != "InputLayer"]
        wrapper.trainable = True
        arch.trainable = True
        if choice == "all":
            start = 0
        elif isinstance(choice, int):
            start = max(0, len(layers) - choice)
        else:
            names = [layer.name for layer in layers]
            if choice not in names:
                close = difflib.get_close_matches(choice, names, n=5, cutoff=0.5)
                hint = f" Did you mean: {', '.join(close)}?" if close else ""
                raise InputError(
                    f"`unfreeze` names no layer of {arch.name}: {choice!r}.{hint} Pass 'all', a "
                    f"number of top layers (1-{len(layers)}), or one of its {len(layers)} layer "
                    "names."
                )
            start = names.index(choice)
        # Every layer explicitly: a functional model's `trainable` setter does not reach them all.
        for index, layer in enumerate(layers):
            layer.trainable = index >= start
        return len(layers) - start

    def fine_tune(
        self,
        data=None,
        validation_data=None,
        *,
        epochs: int = 10,
        learning_rate: float = 1e-5,
        unfreeze="all",
        batch_size: int = 32,
        patience: int = 3,
        validation_split: float = 0.2,
        run_dir=None,
        verbose: Any = "auto",
    ) -> list[dict]:
        """Unfreezes the backbone (or part of it) and trains end to end on raw images (step 5).

        Args:
            data: as in `fit`; default `None` (the data `fit` used).
            validation_data: as in `fit`. Default `None`.
            epochs: fine-tuning epochs (early stopping may end sooner). Default 10.
            learning_rate: Adam's learning rate; keep it low. Default 1e-5.
            unfreeze: `"all"` (default), an int N (the top N layers of the backbone), or a layer
                name (that layer and all above it).
            batch_size: images per step. Default 32.
            patience: epochs without a better validation loss before stopping. Default 3.
            validation_split: as in `fit`. Default 0.2.
            run_dir: as in `fit`; default the folder `fit` used.
            verbose: Keras progress output. Default `"auto"`.

        Returns:
            The fine-tune phase's history rows.
        """
        from transferkit.data.images import DecodeLog
        from transferkit.training.callbacks import fit_phase

        self._require_model()
        if data is None:
            if self._split is None:
                raise InputError(
                    "`fine_tune()` without data needs a `fit(...)` first; or pass the data."
                )
            split = self._split
        else:
            split = self._labelled(data, validation_data, validation_split)
        self._unfreeze(unfreeze)
        self._compile(self.model, learning_rate)
        log = DecodeLog()
        size, policy = self._size(), self._policy()
        train_ds = split.train.dataset(
            size, policy, labels=split.train_labels, batch_size=batch_size, shuffle=True,
            seed=self.seed, decode_log=log,
        )
        val_ds = split.validation.dataset(
            size, policy, labels=split.validation_labels, batch_size=batch_size, decode_log=log,
        )
        run = self._run(run_dir)
        with _filtered_dataset_warnings():
            rows = fit_phase(
                self.model, train_ds, val_ds, epochs=epochs, run=run, phase="fine_tune",
                patience=patience, verbose=verbose, shuffle=False,  # the dataset shuffles itself
            )
        if len(log):
            split.drop_unreadable(log.items())
            self.skipped = split.skipped
        self._split = split
        self._split_features = None  # the backbone changed: cached features no longer apply
        self.history = [r for r in self.history if r.get("phase") != "fine_tune"] + list(rows)
        return rows

    # -- using the model -------------------------------------------------------------------------

    def predict_proba(self, inputs, batch_size: int = 32) -> np.ndarray:
        """Class probabilities `(n, num_classes)`; raises `ImageReadError` for unreadable files."""
        from transferkit.data.images import DecodeLog

        model = self._require_model()
        items = _Inputs(_image_list(inputs))
        log = DecodeLog()
        dataset = items.dataset(
            self._size(), self._policy(), batch_size=batch_size, decode_log=log,
            keep_unreadable=True,
        )
        outputs = model.predict(dataset.map(_images_only), verbose=0)
        if len(log):
            raise _unreadable_error(log.items())
        return self._probabilities(outputs)

    def predict(self, inputs, batch_size: int = 32) -> list[dict]:
        """Labels images.

        Args:
            inputs: image paths, one path, an RGB array `(h, w, 3)` of any size, a batch
                `(n, h, w, 3)`, or a list of arrays.
            batch_size: images per forward pass. Default 32.

        Returns:
            One dict per image, in order: `label`, `score` (its probability), `probability` (the
            same), `probabilities` (class -> probability), and `path` for files.

        Raises:
            ImageReadError: a file is missing or not a readable image (all such files are named).
        """
        items = _image_list(inputs)
        probabilities = self.predict_proba(items, batch_size=batch_size)
        names = list(self.class_names)
        results = []
        for item, row in zip(items, probabilities):
            best = int(np.argmax(row))
            result = {
                "label": names[best],
                "score": float(row[best]),
                "probability": float(row[best]),
                "probabilities": {name: float(p) for name, p in zip(names, row)},
            }
            if _is_path(item):
                result = {"path": os.fspath(item), **result}
            results.append(result)
        return results

    def evaluate(self, data, report_dir=None, *, batch_size: int = 32, title: str = "") -> dict:
        """Measures the classifier on labelled images.

        Args:
            data: a folder of class sub-folders (or with train/ and validation/: its validation
                images are used), an `ImageFolder` (its validation images), or `(images, labels)`.
            report_dir: also write metrics.json, summary.txt, confusion_matrix.png and
                mistakes.png there. Default `None`.
            batch_size: images per forward pass. Default 32.
            title: report title. Default: "Evaluation of <backbone>".

        Returns:
            `accuracy`, `n`, `classes`, per-class metrics and the confusion matrix
            (`transferkit.reports.classification_metrics`), plus `skipped_files` and `skipped`.

        Raises:
            DataError: a sub-folder that is not one of the model's classes, or no images.
        """
        from transferkit.data.image_folder import ImageFolder, read_class_folders
        from transferkit.data.images import DecodeLog

        self._require_model()
        names = list(self.class_names)
        skipped: list[dict] = []
        if _is_path(data):
            root = Path(data)
            from transferkit.data.image_folder import _find_split_folders, _require_folder

            _require_folder(root, "one sub-folder of images per class")
            pair = _find_split_folders(root)
            found = read_class_folders(pair[1] if pair else root, class_names=names)
            inputs, labels, skipped = _Inputs(found.paths), found.labels, list(found.skipped)
        elif isinstance(data, ImageFolder):
            inputs, labels = _Inputs(data.validation_paths), data.validation_labels
            skipped = list(data.skipped)
        elif isinstance(data, tuple) and len(data) == 2:
            inputs = _Inputs(_image_list(data[0]))
            labels, _ = _labels_to_ints(data[1], names)
        else:
            raise InputError(
                "`data` must be a folder of class sub-folders, an `ImageFolder`, or a tuple "
                f"(images, labels). Received: {type(data).__name__}."
            )
        log = DecodeLog()
        dataset = inputs.dataset(
            self._size(), self._policy(), batch_size=batch_size, decode_log=log,
            keep_unreadable=True,
        )
        outputs = self.model.predict(dataset.map(_images_only), verbose=0)
        probabilities = self._probabilities(outputs)
        ok = np.ones(len(inputs), dtype=bool)
        if len(log):
            bad = set(log.errors)
            ok = np.asarray([p not in bad for p in inputs.items])
            skipped += log.items()
        if not ok.any():
            raise DataError("None of the images could be read; nothing to evaluate.")
        metrics = self._report(
            labels[ok], probabilities[ok], [item for item, k in zip(inputs.items, ok) if k],
            report_dir=report_dir, title=title or f"Evaluation of {self.backbone}",
            extra={"skipped files": len(skipped)},
        )
        metrics.update(classes=names, skipped_files=len(skipped), skipped=skipped)
        return metrics

    def _report(self, y_true, probabilities, images, *, report_dir=None, title="", extra=None,
                history=()) -> dict:
        from transferkit.reports import (
            classification_metrics,
            plot_image_mistakes,
            write_classification_report,
        )

        names = list(self.class_names)
        if report_dir is None:
            return classification_metrics(y_true, probabilities, names)
        metrics = write_classification_report(
            report_dir, y_true=y_true, probabilities=probabilities, class_names=names,
            history=history, title=title, summary_extra=extra,
        )
        predicted = probabilities.argmax(axis=1)
        shown = [
            item if _is_path(item) else _to_uint8(item) for item in images
        ]
        path = Path(report_dir) / "mistakes.png"
        plot_image_mistakes(
            path, shown, [names[i] for i in y_true], [names[i] for i in predicted],
            probabilities.max(axis=1),
        )
        metrics["files"]["mistakes"] = str(path)
        return metrics

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the classifier to one `.keras` file, atomically. Returns the path.

        The file takes RGB images of any size and loads with `transferkit.load(path)` (or
        `keras.saving.load_model(path, safe_mode=True)`); the class names are inside.
        """
        from transferkit.training.io import save_model_atomic

        path = Path(path)
        if path.suffix != ".keras":
            raise InputError(f"The file name must end in `.keras`. Received: path={str(path)!r}.")
        save_model_atomic(self._require_model(), path)
        return path


# -- mode 2: features only -----------------------------------------------------------------------


def extract_features(
    backbone,
    images,
    *,
    weights: str | os.PathLike | None = "imagenet",
    image_size=None,
    batch_size: int = 32,
    cache: bool = True,
) -> np.ndarray:
    """Pooled features of a pretrained backbone: one vector per image (mode 2, "feature extractor").

    Args:
        backbone: a registered backbone name (e.g. `"efficientnet_lite0"`).
        images: image paths, an RGB array, a batch array, or a list of arrays (values 0-255).
        weights: `"imagenet"` (default), `None` or a `.weights.h5` path.
        image_size: resize to this side or `(height, width)`; default the backbone's size.
        batch_size: images per forward pass. Default 32.
        cache: reuse and store features in the feature cache (not with `weights=None`).
            Default `True`.

    Returns:
        `float32` array `(n, feature_dim)`, global-average-pooled.

    Raises:
        ImageReadError: a file is missing or unreadable.
        UnknownBackboneError: `backbone` is not registered.
    """
    from transferkit.data.images import DecodeLog

    if not isinstance(backbone, str):
        raise InputError(
            "`backbone` must be a registered backbone name such as 'efficientnet_lite0'. "
            f"Received: {type(backbone).__name__}."
        )
    classifier = ImageClassifier(
        backbone=backbone, num_classes=2, image_size=image_size, weights=weights,
        cache_dir=None if cache else False,
    )
    classifier.build()
    log = DecodeLog()
    features, ok = classifier._features(_Inputs(_image_list(images)), batch_size=batch_size,
                                        decode_log=log)
    if not ok.all():
        raise _unreadable_error(log.items())
    return features


# -- the pipeline behind `transferkit train images` --------------------------------------------


TRAIN_DEFAULTS = {
    "backbone": DEFAULT_BACKBONE,
    "image_size": None,
    "weights": "imagenet",
    "epochs": 20,
    "fine_tune_epochs": 10,
    "learning_rate": 1e-3,
    "fine_tune_lr": 1e-5,
    "unfreeze": "all",
    "augment": "flip,rotate,zoom",
    "augment_views": 2,
    "batch_size": 32,
    "validation_split": 0.2,
    "patience": 5,
    "fine_tune_patience": 3,
    "dropout": 0.2,
    "seed": 0,
}


def _write_list(path: Path, header: str, rows: list[str]) -> None:
    from transferkit.training.io import atomic_write

    with atomic_write(path, "w") as handle:
        handle.write(header + "\n")
        for row in rows:
            handle.write(row + "\n")


def train_images(
    data_dir: str | os.PathLike | None = None,
    *,
    output: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    verbose: Any = "auto",
    log=print,
    **options: Any,
) -> dict:
    """Trains an image classifier end to end and writes the model and its report.

    Args:
        data_dir: the data folder (see `transferkit.data.image_folder`); default from the run's
            config when resuming.
        output: the run folder; default `runs/images-<time>`.
        resume: an interrupted run folder to continue from its last finished epoch, with its
            saved configuration.
        verbose: Keras progress output. Default `"auto"`.
        log: called with each progress line. Default `print`.
        **options: anything in `TRAIN_DEFAULTS` (`backbone`, `epochs`, `fine_tune_epochs`, ...).

    Returns:
        The results: `classes`, `head_validation_accuracy`, `validation_accuracy`,
        `fine_tune_validation_accuracy` (None without fine-tuning), `model_path`, `report_dir`,
        `run_dir`, `seconds`, `skipped_files`, duplicates and timings.
    """
    from transferkit.data.augmentation import preview_augmentation
    from transferkit.data.image_folder import discover_image_folder
    from transferkit.training.run import RunDirectory, default_run_dir

    started = time.perf_counter()
    unknown = sorted(set(options) - set(TRAIN_DEFAULTS))
    if unknown:
        raise InputError(f"Unknown option(s) {unknown}. Known: {sorted(TRAIN_DEFAULTS)}.")
    if resume is not None:
        run = RunDirectory(resume)
        saved = run.load_config()
        config = {**TRAIN_DEFAULTS, **{k: saved[k] for k in TRAIN_DEFAULTS if k in saved}}
        data_dir = saved.get("data_dir") if data_dir is None else data_dir
        log(f"Resuming {run.path} (state: {_state_line(run.state())})")
        ignored = sorted(k for k, v in options.items() if v is not None and v != config.get(k))
        if ignored:
            log(f"Resuming uses the run's saved settings; ignored: {', '.join(ignored)}")
    else:
        if data_dir is None:
            raise InputError("Pass the data folder (DATA_DIR), or --resume RUN_DIR.")
        run = RunDirectory(output if output is not None else default_run_dir("images"))
        config = {**TRAIN_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    if data_dir is None:
        raise InputError(f"{run.config_path} has no `data_dir`; pass DATA_DIR again.")
    # Settings first, so that a typo fails at once and not after the data is read.
    from transferkit.data.augmentation import parse_augment

    _parse_unfreeze(config["unfreeze"])
    parse_augment(config["augment"])
    for name in ("epochs", "fine_tune_epochs", "batch_size", "augment_views"):
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < (
            1 if name == "batch_size" else 0
        ):
            minimum = 1 if name == "batch_size" else 0
            raise InputError(f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}.")
    folder = discover_image_folder(
        data_dir, validation_split=config["validation_split"], seed=config["seed"]
    )
    log(
        f"Data: {len(folder.train_paths)} train / {len(folder.validation_paths)} validation images, "
        f"{folder.num_classes} classes ({', '.join(folder.class_names)})"
        + (f"; {len(folder.skipped)} files skipped" if folder.skipped else "")
    )
    if folder.duplicates_across_splits:
        log(
            f"Warning: {len(folder.duplicates_across_splits)} images appear in both train and "
            "validation (identical files); validation accuracy is inflated. See "
            "report/duplicates.json."
        )
    classifier = ImageClassifier(
        backbone=config["backbone"], class_names=folder.class_names,
        image_size=config["image_size"], weights=config["weights"], dropout=config["dropout"],
        augment=config["augment"], augment_views=config["augment_views"], seed=config["seed"],
    )
    resolved = {
        **config,
        "data_dir": str(Path(data_dir).resolve()),
        "classifier": None,
        "data": folder.summary(),
    }
    classifier._check_settings()
    resolved["classifier"] = classifier.get_config()
    resolved["image_size"] = list(classifier._size())
    run.save_config(resolved)

    # Head on cached features.
    log(f"Head: {config['backbone']} frozen, features cached; up to {config['epochs']} epochs")
    head_started = time.perf_counter()
    classifier.fit(
        folder, epochs=config["epochs"], batch_size=config["batch_size"],
        learning_rate=config["learning_rate"], patience=config["patience"], run_dir=run,
        verbose=verbose,
    )
    head_seconds = time.perf_counter() - head_started
    split = classifier._split
    feats = classifier._split_features
    head_probabilities = classifier._probabilities(
        classifier._head_model().predict(feats["validation"], batch_size=256, verbose=0)
    )
    y_val = split.validation_labels
    head_accuracy = float((head_probabilities.argmax(axis=1) == y_val).mean())
    log(
        f"Head: validation accuracy {head_accuracy:.4f} ({head_seconds:.0f} s, of which "
        f"{classifier.feature_seconds:.0f} s features)"
    )

    probabilities = head_probabilities
    fine_accuracy = None
    fine_seconds = 0.0
    if config["fine_tune_epochs"] > 0:
        log(
            f"Fine-tune: unfreeze {config['unfreeze']}, lr {config['fine_tune_lr']}, up to "
            f"{config['fine_tune_epochs']} epochs on raw images"
        )
        fine_started = time.perf_counter()
        classifier.fine_tune(
            epochs=config["fine_tune_epochs"], learning_rate=config["fine_tune_lr"],
            unfreeze=config["unfreeze"], batch_size=config["batch_size"],
            patience=config["fine_tune_patience"], run_dir=run, verbose=verbose,
        )
        split = classifier._split
        y_val = split.validation_labels
        probabilities = classifier.predict_proba(split.validation.items, config["batch_size"])
        fine_accuracy = float((probabilities.argmax(axis=1) == y_val).mean())
        fine_seconds = time.perf_counter() - fine_started
        log(f"Fine-tune: validation accuracy {fine_accuracy:.4f} ({fine_seconds:.0f} s)")

    classifier.save(run.model_path)
    report_dir = Path(run.report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    extra = {
        "backbone": config["backbone"],
        "image size": "x".join(map(str, classifier._size())),
        "head validation accuracy": round(head_accuracy, 4),
        "fine-tune validation accuracy": None if fine_accuracy is None else round(fine_accuracy, 4),
        "train / validation images": f"{len(split.train)} / {len(split.validation)}",
        "skipped files": len(classifier.skipped),
        "duplicates across splits": len(folder.duplicates_across_splits),
        "model": str(run.model_path),
        "tensorboard": f"tensorboard --logdir {run.log_dir}",
    }
    metrics = classifier._report(
        y_val, probabilities, split.validation.items, report_dir=report_dir,
        title=f"{config['backbone']} on {Path(data_dir).name}", extra=extra,
        history=run.history_rows(),
    )
    preview_augmentation(
        split.train.items[0], report_dir / "augmentation.png", classifier._augment_names(),
        image_size=classifier._size(), policy=classifier._policy(), seed=config["seed"],
    )
    from transferkit.training.io import write_json

    write_json(report_dir / "skipped_files.json", classifier.skipped)
    write_json(report_dir / "duplicates.json", folder.duplicates)
    shutil.copyfile(run.config_path, report_dir / "config.json")
    if Path(run.history_path).is_file():
        shutil.copyfile(run.history_path, report_dir / "history.csv")
    seconds = time.perf_counter() - started
    return {
        "classes": list(classifier.class_names),
        "head_validation_accuracy": head_accuracy,
        "validation_accuracy": metrics["accuracy"],
        "fine_tune_validation_accuracy": fine_accuracy,
        "model_path": str(run.model_path),
        "report_dir": str(report_dir),
        "run_dir": str(run.path),
        "seconds": round(seconds, 1),
        "head_seconds": round(head_seconds, 1),
        "feature_seconds": round(classifier.feature_seconds, 1),
        "fine_tune_seconds": round(fine_seconds, 1),
        "skipped_files": len(classifier.skipped),
        "duplicates_across_splits": len(folder.duplicates_across_splits),
        "train_images": len(split.train),
        "validation_images": len(split.validation),
        "backbone": config["backbone"],
        "summary": (report_dir / "summary.txt").read_text(encoding="utf-8"),
    }


def _state_line(state: dict) -> str:
    if not state:
        return "nothing finished yet"
    return ", ".join(
        f"{phase} {info.get('epochs_done', 0)}/{info.get('epochs', '?')} epochs"
        + (" (finished)" if info.get("finished") else "")
        for phase, info in state.items()
        if isinstance(info, dict)
    )
