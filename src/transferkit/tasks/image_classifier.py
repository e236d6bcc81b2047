"""Image classification by transfer learning: a pretrained backbone, a small head, fine-tuning.

The six steps of the Keras transfer-learning guide, made fast on a CPU:

1. the backbone without its top, frozen; run through `InferenceMode`, so its BatchNormalization
   layers stay in inference mode also after they are unfrozen;
2. a head: global average pooling (over the feature map; over the tokens of a vision
   transformer; none for a SavedModel's feature vector) + `Dropout` + `Dense` (one logit for two
   classes, one per class otherwise), then `ClassLabels`, which gives probabilities and carries
   the class names;
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

What every classifier shares (labels, compiling, the phases, predict, evaluate, save) is in
`transferkit.tasks.base.Classifier`; `transferkit.pipelines.images.train_images` is the whole
`transferkit train images` run.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from transferkit.config import IMAGE_HEAD_EPOCHS, IMAGE_HEAD_PATIENCE, ImageTrainConfig
from transferkit.data.epoch_order import EpochOrder
from transferkit.data.image_inputs import (
    ImageInputs,
    filtered_dataset_warnings,
    image_list,
    is_path,
    unreadable_error,
)
from transferkit.errors import DataError, InputError
from transferkit.tasks.base import Classifier, Splits
from transferkit.training.distribute import active as distribute_active
from transferkit.training.distribute import even_validation, predict_rows, validation_batch

__all__ = ["ImageClassifier"]

_D = ImageTrainConfig()  # the defaults; `transferkit.config` is where they are written


class ImageClassifier(Classifier):
    """A pretrained image backbone with a trained classification head.

    Args:
        backbone: a registered backbone name, a SavedModel folder, a KerasHub preset folder or
            an `hf://` / `kaggle://` handle (`transferkit.backbones.sources`). Default
            `ImageTrainConfig.backbone` (`"efficientnet_lite0"`).
        num_classes: the number of classes; default `None` (from `class_names` or the data).
        class_names: the class names in output order; default `None` (from the data, sorted).
        image_size: the side (or `(height, width)`) images are resized to; default `None` (the
            backbone's own size, 224 for EfficientNet-Lite0).
        input_range: the range a SavedModel folder takes pixels in: `"0,1"`, `"-1,1"` or
            `"0,255"`; default `None` ([0, 1], TF Hub's convention). Only for SavedModels.
        weights: `"imagenet"` (the default), `None` (random, for tests), or a `.weights.h5` path.
        dropout: dropout rate before the last layer. Default `ImageTrainConfig.dropout` (0.2).
        augment: augmentations for training (`"flip,rotate,zoom"`, a list, or `"none"`; see
            `transferkit.data.augmentation.parse_augment`). Default `ImageTrainConfig.augment`.
        augment_views: augmented views per training image precomputed for the head when
            `augment` is set. Default `ImageTrainConfig.augment_views` (2).
        seed: seed of splits, shuffles, augmentation and initial weights. Default `0`.
        cache_dir: folder of the feature cache; default `None` (`features/images` in the
            transferkit cache, see `transferkit.files.cache_dir`); `False` turns caching off.
        runtime: what runs the frozen backbone for features: `"onnx"` (ONNX Runtime),
            `"keras"`, or `"auto"` (see `transferkit.runtimes`). Default
            `ImageTrainConfig.runtime` (`"auto"`). Fine-tuning always runs in Keras.
        calibrate: after `fit` and `fine_tune`, fit a temperature on the validation split
            (`transferkit.reports.calibration`). Default `ImageTrainConfig.calibrate` (True).
        class_weight: `"auto"` (class weights when the largest class is >= 10x the smallest),
            `"balanced"` (whenever the counts differ) or `"none"`. Default
            `ImageTrainConfig.class_weight` (`"auto"`).

    Example:
        >>> clf = ImageClassifier(backbone="efficientnet_lite0")
        >>> clf.fit("data/pets", epochs=10)            # head on cached features
        >>> clf.fine_tune(epochs=3, unfreeze=20)        # top 20 layers, end to end
        >>> clf.predict(["new.jpg"])[0]["label"]
        >>> clf.save("pets.keras"); transferkit.load("pets.keras")
    """

    task = "image"
    config_class = ImageTrainConfig
    item_noun = "images"
    data_forms = "a folder of class sub-folders, an `ImageFolder`"

    def __init__(
        self,
        backbone: str = _D.backbone,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        image_size=_D.image_size,
        input_range: str | None = _D.input_range,
        weights: str | os.PathLike | None = _D.weights,
        dropout: float = _D.dropout,
        augment=_D.augment,
        augment_views: int = _D.augment_views,
        seed: int = _D.seed,
        cache_dir: str | os.PathLike | bool | None = None,
        runtime: str = _D.runtime,
        calibrate: bool = _D.calibrate,
        class_weight: str = _D.class_weight,
        target: str | None = _D.target,
    ):
        from transferkit.runtimes import check_runtime
        from transferkit.tasks.targets import TARGETS, check_target

        check_runtime(runtime)
        # No target: one class per example (a training run reads it from the data instead).
        target = check_target(TARGETS[0] if target is None else target)
        self._encoder = None
        self._store(locals())
        self.feature_seconds = 0.0
        self._unfreeze_choice = _D.unfreeze
        self._columns: tuple[str | None, str | None] = (None, None)  # `evaluate`'s, for a table

    @property
    def runtime(self) -> str:
        """What runs the frozen backbone for features (see the class docstring)."""
        return self._runtime

    @runtime.setter
    def runtime(self, value: str) -> None:
        # Set after the encoder exists (a loaded model, a later `predict` on ONNX Runtime), it
        # applies to the encoder too, as it did when the classifier ran the backbone itself.
        self._runtime = value
        if self._encoder is not None:
            self._encoder.runtime = value

    def get_config(self) -> dict:
        """The constructor arguments as plain data (class names resolved after `fit`)."""
        config = super().get_config()
        config["augment"] = ",".join(self.augmentations) or "none"
        if config["weights"] is not None:
            config["weights"] = str(config["weights"])
        return config

    # -- resolved settings ---------------------------------------------------------------------

    def get_encoder(self):
        """The `ImageEncoder` of this classifier's backbone (made on first use; loads nothing)."""
        from transferkit.backbones.image_encoder import ImageEncoder

        if self._encoder is None:
            self._encoder = ImageEncoder(
                self.backbone, image_size=self.image_size, input_range=self.input_range,
                weights=self.weights, augment=self.augment, augment_views=self.augment_views,
                seed=self.seed, cache_dir=self.cache_dir, runtime=self.runtime,
            )
        return self._encoder

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The augmentation layers' names (`augment`, parsed)."""
        return self.get_encoder().augmentations

    def why_frozen(self) -> str:
        """Why the backbone cannot be fine-tuned (a SavedModel without a training endpoint), or
        `""` when it can."""
        return self.get_encoder().why_frozen

    @property
    def input_size(self) -> tuple[int, int]:
        """`(height, width)` the backbone sees: `image_size`, or the backbone's own size."""
        return self.get_encoder().input_size

    @property
    def resize_policy(self) -> str:
        """How images are resized for the backbone: `"center_crop"` or `"stretch"`."""
        return self.get_encoder().resize_policy

    @property
    def feature_runtime(self) -> str | None:
        """What ran the backbone for the last features (`"onnx"`, `"keras"`), or `None`."""
        return self.get_encoder().info["feature_runtime"]

    @property
    def feature_runtime_reason(self) -> str:
        """Why (`transferkit.runtimes.FrozenRunner.reason`)."""
        return self.get_encoder().info["feature_runtime_reason"]

    def _known_names(self) -> list[str] | None:
        if self.class_names is not None:
            return [str(c) for c in self.class_names]
        if self.num_classes is not None:
            return [str(i) for i in range(int(self.num_classes))]
        return None

    def check_settings(self) -> None:
        """Raises `InputError` for settings that cannot work, before any data is read."""
        from transferkit.checks import check_number

        self.get_encoder().check()
        check_number(self.dropout, "dropout", 0, 1, include_maximum=False)

    def _check_classes(self) -> list[str]:
        """The class names, from `class_names` or `num_classes`; raises if they are unusable."""
        if self.num_classes is not None and self.class_names is not None and (
            int(self.num_classes) != len(self.class_names)
        ):
            raise InputError(
                f"`num_classes` ({self.num_classes}) does not match the {len(self.class_names)} "
                "`class_names`. Pass one of them, or matching values."
            )
        names = self._known_names()
        if names is None:
            raise InputError(
                "The number of classes is unknown: pass `num_classes` or `class_names`, or call "
                "`fit` with labelled data first."
            )
        if len(names) < 2 and self.target != "regression":
            raise InputError(
                f"A classifier needs at least 2 classes. Received: num_classes={len(names)}."
            )
        return names

    def _train_defaults(self):
        """The config's defaults, with the head's epochs and patience of this target."""
        return _D.replace(epochs=IMAGE_HEAD_EPOCHS[self.target],
                          patience=IMAGE_HEAD_PATIENCE[self.target])

    def _source_name(self) -> str:
        return self.backbone

    # -- the model -----------------------------------------------------------------------------

    def build(self):
        """Builds the Keras models (backbone frozen, untrained head). Returns the saved model."""
        self.check_settings()
        self.class_names = self._check_classes()
        self.num_classes = len(self.class_names)
        encoder = self.get_encoder()
        self.network = encoder.build_network(self.num_logits, self.dropout)
        self.metadata.update(encoder.describe())
        inputs = keras.Input((None, None, 3), name="image")
        outputs = self._class_labels()(self.network(inputs))
        self.model = keras.Model(inputs, outputs, name="image_classifier")
        return self.model

    def _attach(self) -> None:
        self.get_encoder().attach(self.network, self.metadata)

    # -- data ------------------------------------------------------------------------------------

    def _explain(self, items: list, label, method) -> list[dict]:
        from transferkit.explain.images import explain_images

        return explain_images(self, items, label, method)

    def _items(self, x) -> list:
        return image_list(x)

    def _describe_item(self, item) -> dict:
        return {"path": os.fspath(item)} if is_path(item) else {}

    def _labelled(self, x, y, validation_data, validation_size) -> Splits:
        """Train and validation images from a folder, an `ImageFolder`, or images and labels."""
        from transferkit.data.image_folder import ImageFolder, discover_image_folder
        from transferkit.data.labels import stratified_split

        known = self._known_names()
        table_skipped: list[dict] = []
        if is_path(x) and y is None and Path(x).is_file():  # a table of paths and labels
            table = self._image_table(x)
            x, y, table_skipped = table.paths, table.labels, table.skipped
            self.metadata.update(path_column=table.path_column, label_column=table.label_column)
        if is_path(x) and y is None:
            x = discover_image_folder(x, validation_size=validation_size, seed=self.seed)
        if isinstance(x, ImageFolder):
            if validation_data is not None:
                raise InputError(
                    "`validation_data` must be None when `x` is a folder: the folder's own split "
                    "(train/ and validation/, or `validation_size`) is used."
                )
            if known is not None and list(x.class_names) != known:
                what = "class_names" if self.class_names is not None else "num_classes"
                raise InputError(
                    f"The data has classes {list(x.class_names)} but this classifier was made "
                    f"for {known} (`{what}`). Pass matching `{what}`, leave it unset, or use a "
                    "new ImageClassifier for other classes."
                )
            return Splits(
                list(x.class_names),
                {
                    "train": (ImageInputs(x.train_paths, x.digests), x.train_labels),
                    "validation": (ImageInputs(x.validation_paths, x.digests),
                                   x.validation_labels),
                },
                skipped=list(x.skipped), source=x,
            )
        images, labels = self._with_labels(x, y)
        images, values, names, skipped = self.usable_targets(images, labels, known)
        skipped = table_skipped + skipped
        if self.target == "single-label" and len(set(values.tolist())) < 2:
            raise DataError("The training data has a single class; a classifier needs at least two.")
        inputs = ImageInputs(images)
        if validation_data is None:
            parts = stratified_split(self.split_keys(values), {"validation": validation_size},
                                     self.seed, groups=inputs.digests())
            if not len(parts["validation"]):
                raise DataError("Too few images to hold some out for validation; pass more images.")
            return Splits(names, {
                "train": (inputs.subset(parts["train"]), values[parts["train"]]),
                "validation": (inputs.subset(parts["validation"]), values[parts["validation"]]),
            }, skipped=skipped)
        val_images, val_labels = self._validation_pair(validation_data)
        val_images, val_values, _, val_skipped = self.usable_targets(val_images, val_labels, names)
        return Splits(names, {
            "train": (inputs, values), "validation": (ImageInputs(val_images), val_values)
        }, skipped=skipped + val_skipped)

    def _image_table(self, path):
        """A table of image paths and labels (`transferkit.data.image_table`), read with the
        columns `evaluate` was given, else those the model was trained with, else `path` and
        the target's."""
        from transferkit.data.image_table import read_image_table

        path_column, label_column = self._columns
        return read_image_table(path, path_column or self.metadata.get("path_column") or "path",
                                label_column or self.metadata.get("label_column"), self.target)

    def _skipped_item(self, item, index: int) -> dict:
        return {"path": os.fspath(item) if is_path(item) else f"image #{index}"}

    def _drop_unreadable(self, splits: Splits, unreadable: list[dict]) -> None:
        """Takes files that failed to decode out of `splits` and lists them as skipped."""
        if not unreadable:
            return
        if splits.source is None:
            raise unreadable_error(unreadable)
        folder = splits.source
        folder.add_unreadable(unreadable)
        splits.parts = {
            "train": (ImageInputs(folder.train_paths, folder.digests), folder.train_labels),
            "validation": (ImageInputs(folder.validation_paths, folder.digests),
                           folder.validation_labels),
        }
        splits.skipped = list(folder.skipped)

    # -- the phases ------------------------------------------------------------------------------

    def _head_phase(self, splits: Splits, settings, run, verbose) -> tuple:
        from transferkit.data.images import DecodeLog

        if self.model is None:
            self.build()
        views = self.augment_views if self.augmentations else 0
        log = DecodeLog()
        show = verbose not in (0, False, "0")
        started = time.perf_counter()
        train_inputs, _ = splits["train"]
        val_inputs, _ = splits["validation"]
        common = {"batch_size": settings.batch_size, "decode_log": log, "verbose": show}
        features = self.get_encoder().readable_features
        train_x, train_ok = features(train_inputs, **common)
        val_x, val_ok = features(val_inputs, **common)
        view_x = features(train_inputs, views=views, **common)[0] if views else None
        self.feature_seconds = time.perf_counter() - started
        self._drop_unreadable(splits, log.items())
        train_x, val_x = train_x[train_ok], val_x[val_ok]
        if view_x is not None:
            view_x = view_x[train_ok]
        train = self._feature_dataset(train_x, splits["train"][1], view_x, settings.batch_size)
        val_x, val_y, self.left_out_of_validation = even_validation(val_x, splits["validation"][1])
        validation = (val_x, val_y)
        if distribute_active():  # Keras shards only tf.data across processes
            import tensorflow as tf

            validation = tf.data.Dataset.from_tensor_slices(validation).batch(
                validation_batch(len(val_y), 256))
        # The dataset shuffles itself; validation features fit in big batches.
        head = self.get_encoder().head(self.network)
        return head, train, validation, {"validation_batch_size": 256, "shuffle": False}

    def _feature_dataset(self, features, labels, views, batch_size):
        """Head training data: each epoch draws one feature vector per image, the plain one or
        one of its precomputed augmented views."""
        import tensorflow as tf

        from transferkit.backbones.image_encoder import feature_pool

        pool_x, pool_y = feature_pool(features, labels, views)
        order = EpochOrder(len(pool_x), self.seed)  # epoch e's draw from (seed, e) alone
        return order.attach(order.batches(
            (pool_x, pool_y), batch_size, take=len(features),
            drop_remainder=distribute_active()).prefetch(tf.data.AUTOTUNE))

    def fine_tune(self, x=None, y=None, validation_data=None, *, unfreeze=None, **settings):
        """Unfreezes the backbone (or part of it) and trains end to end on raw images (step 5).

        Args:
            x, y, validation_data: as in `fit`; default `None`: the data `fit` used.
            unfreeze: `"all"`, an int N (the top N layers of the backbone), or a layer name (that
                layer and all above it). Default `None`: `ImageTrainConfig.unfreeze` (`"all"`).
            **settings: `epochs`, `learning_rate`, `batch_size`, `patience`,
                `validation_size`, `output`, `verbose`: see `Classifier.fine_tune`.

        Returns:
            `self`.
        """
        why = self.why_frozen()
        if why:
            raise InputError(
                f"{self.backbone} cannot be fine-tuned: {why}. Train the head only "
                "(`fine_tune_epochs=0`), or use a SavedModel with a training endpoint."
            )
        self._unfreeze_choice = _D.unfreeze if unfreeze is None else unfreeze
        return super().fine_tune(x, y, validation_data, **settings)

    def _unfreeze(self) -> int:
        """Makes (part of) the backbone trainable. Returns the number of trainable layers."""
        return self.get_encoder().unfreeze(self.network, self._unfreeze_choice)

    @contextlib.contextmanager
    def _fine_tune_data(self, splits: Splits, batch_size: int):
        from transferkit.data.images import DecodeLog

        log = DecodeLog()
        size, policy = self.input_size, self.resize_policy
        (train_inputs, train_y), (val_inputs, val_y) = splits["train"], splits["validation"]
        train = train_inputs.dataset(size, policy, labels=train_y, batch_size=batch_size,
                                     shuffle=True, seed=self.seed, decode_log=log,
                                     drop_remainder=distribute_active())
        val_items, val_y, self.left_out_of_validation = even_validation(val_inputs.items, val_y)
        val_inputs = ImageInputs(val_items)
        validation = val_inputs.dataset(size, policy, labels=val_y, decode_log=log,
                                        batch_size=validation_batch(len(val_y), batch_size))
        with filtered_dataset_warnings():
            yield train, validation
        self._drop_unreadable(splits, log.items())

    # -- using the model -------------------------------------------------------------------------

    def probabilities_and_errors(self, items: list,
                                 batch_size: int) -> tuple[np.ndarray, list[dict]]:
        from transferkit.data.images import DecodeLog
        from transferkit.runtimes import MIN_ITEMS

        inputs = ImageInputs(items)
        log = DecodeLog()
        encoder = self.get_encoder()
        if encoder.runtime == "onnx" or (encoder.runtime == "auto" and len(items) >= MIN_ITEMS) or (
                distribute_active()):  # the Keras model's batches would not split evenly
            # The backbone on the features' runtime (uncached: predictions can be millions of
            # files), the head in Keras: the saved model's numbers, within `runtimes.TOLERANCE`.
            features, _ = encoder.readable_features(inputs, batch_size=batch_size, decode_log=log,
                                                    cached=False)
            logits = predict_rows(encoder.head(self.network), features)
            probabilities = self._scores(logits)
        else:
            dataset = inputs.dataset(self.input_size, self.resize_policy, batch_size=batch_size,
                                     decode_log=log, keep_unreadable=True)
            probabilities = self.model.predict(dataset.map(_images_only), verbose=0)
        errors = log.errors
        unreadable = [
            {"index": i, "path": path, "reason": errors[path]}
            for i, path in enumerate(inputs.items) if inputs.are_paths and path in errors
        ]
        return np.asarray(probabilities, dtype=np.float64), unreadable

    def _cached_logits(self, items: list, batch_size: int) -> np.ndarray | None:
        encoder = self.get_encoder()
        features, ok = encoder.readable_features(ImageInputs(items), batch_size=batch_size)
        if not ok.all():
            return None  # unreadable files: let `predict_proba` name them
        return np.asarray(predict_rows(encoder.head(self.network), features))

    def _training_features(self, items: list) -> np.ndarray | None:
        features, ok = self.get_encoder().readable_features(ImageInputs(items))
        return features if ok.all() else None

    def _unreadable_error(self, unreadable: list[dict]) -> Exception:
        return unreadable_error(unreadable)

    def _evaluation_data(self, x, y) -> tuple[list, np.ndarray, list[dict]]:
        from transferkit.data.image_folder import ImageFolder, read_evaluation_folder

        names = list(self.class_names)
        if is_path(x) and y is None and Path(x).is_file():  # a table of paths and labels
            table = self._image_table(x)
            images, values, _, skipped = self.usable_targets(table.paths, table.labels, names)
            return images, values, table.skipped + skipped
        if is_path(x) and y is None:
            found = read_evaluation_folder(x, names)
            return list(found.paths), found.labels, list(found.skipped)
        if isinstance(x, ImageFolder):
            return list(x.validation_paths), x.validation_labels, []
        images, labels = self._with_labels(x, y)
        images, values, _, skipped = self.usable_targets(images, labels, names)
        return images, values, skipped

    def evaluate(self, x, y=None, *, path_column: str | None = None,
                 label_column: str | None = None, **kwargs) -> dict:
        """Metrics on labelled images: see `Classifier.evaluate`.

        Args:
            x: a folder of class sub-folders, a table of image paths and labels (CSV, TSV,
                JSON Lines, Parquet; paths relative to its folder), or images with `y`.
            y: the labels of `x`. Default `None`.
            path_column, label_column: a table's columns. Default `None`: the training ones,
                else `path` and the target's (`label`, `labels`, `target`).
            **kwargs: `report_dir`, `batch_size`, `title`.
        """
        self._columns = (path_column, label_column)
        try:
            return super().evaluate(x, y, **kwargs)
        finally:
            self._columns = (None, None)

    def _write_mistakes(self, report_dir: Path, items, true_names, predicted_names,
                        scores) -> Path:
        from transferkit.explain.images import overlays
        from transferkit.reports import plot_image_mistakes

        path = report_dir / "mistakes.png"
        plot_image_mistakes(path, ImageInputs(items).displayable(), true_names, predicted_names,
                            scores, beside=lambda shown: overlays(self, shown))
        return path


def _images_only(images, ok):
    return images
