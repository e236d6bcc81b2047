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

from transferkit.config import ImageTrainConfig
from transferkit.data.epoch_order import EpochOrder
from transferkit.data.image_inputs import (
    ImageInputs,
    filtered_dataset_warnings,
    image_list,
    is_path,
    unreadable_error,
)
from transferkit.errors import DataError, InputError
from transferkit.layers import InferenceMode
from transferkit.tasks.base import Classifier, Splits
from transferkit.training.distribute import active as distribute_active
from transferkit.training.distribute import even_validation, predict_rows, validation_batch

__all__ = ["ImageClassifier"]

_D = ImageTrainConfig()  # the defaults; `transferkit.config` is where they are written
_FEATURES_VERSION = 2  # bump when the way features are computed changes, to retire old caches


class _TrainingMode(keras.layers.Wrapper):
    """Runs random augmentation layers as in training, also inside `predict` (augmented views for
    the feature cache). Never saved."""

    def call(self, inputs, training=None):
        return self.layer(inputs, training=True)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


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
    ):
        from transferkit.runtimes import check_runtime

        check_runtime(runtime)
        self._store(locals())
        self.feature_seconds = 0.0
        self.feature_runtime: str | None = None  # what ran the backbone for the last features
        self.feature_runtime_reason = ""  # and why (`transferkit.runtimes.FrozenRunner.reason`)
        self._unfreeze_choice = _D.unfreeze

    def get_config(self) -> dict:
        """The constructor arguments as plain data (class names resolved after `fit`)."""
        config = super().get_config()
        config["augment"] = ",".join(self.augmentations) or "none"
        if config["weights"] is not None:
            config["weights"] = str(config["weights"])
        return config

    # -- resolved settings ---------------------------------------------------------------------

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The augmentation layers' names (`augment`, parsed)."""
        from transferkit.data.augmentation import parse_augment

        return parse_augment(self.augment)

    def _spec(self):
        from transferkit.backbones.registry import get_spec

        return get_spec(self.backbone, self.input_range)

    def why_frozen(self) -> str:
        """Why the backbone cannot be fine-tuned (a SavedModel without a training endpoint), or
        `""` when it can."""
        built = self._built("why_frozen")
        return built if built is not None else self._spec().why_frozen

    def _backbone_name(self) -> str:
        return self._built("backbone_name") or self._spec().name

    def _built(self, key: str):
        """A fact of the built model (its metadata), so that a loaded model needs no backbone
        folder; `None` before `build`."""
        return self.metadata.get(key) if getattr(self, "model", None) is not None else None

    @property
    def input_size(self) -> tuple[int, int]:
        """`(height, width)` the backbone sees: `image_size`, or the backbone's own size."""
        if self._built("image_size") is not None:
            return tuple(self._built("image_size"))
        return self._configured_size()

    def _configured_size(self) -> tuple[int, int]:
        from transferkit.backbones.registry import check_input_size, size_unknown

        spec, size = self._spec(), self.image_size
        if size is None:
            if not spec.default_input_size:
                raise InputError(size_unknown(spec))
            size = spec.default_input_size
        return check_input_size(spec, size)

    @property
    def resize_policy(self) -> str:
        """How images are resized for the backbone: `"center_crop"` or `"stretch"`."""
        return self._built("resize") or self._spec().preprocessing.resize

    def _known_names(self) -> list[str] | None:
        if self.class_names is not None:
            return [str(c) for c in self.class_names]
        if self.num_classes is not None:
            return [str(i) for i in range(int(self.num_classes))]
        return None

    def check_settings(self) -> None:
        """Raises `InputError` for settings that cannot work, before any data is read."""
        from transferkit.checks import check_int, check_number

        self.input_size  # an unknown backbone, a bad image size
        self.augmentations
        check_number(self.dropout, "dropout", 0, 1, include_maximum=False)
        check_int(self.augment_views, "augment_views", minimum=0)

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
        if len(names) < 2:
            raise InputError(
                f"A classifier needs at least 2 classes. Received: num_classes={len(names)}."
            )
        return names

    def _source_name(self) -> str:
        return self.backbone

    # -- the model -----------------------------------------------------------------------------

    def build(self):
        """Builds the Keras models (backbone frozen, untrained head). Returns the saved model."""
        from transferkit.backbones.registry import get_backbone
        from transferkit.data.augmentation import build_augmentation

        self.check_settings()
        self.class_names = self._check_classes()
        self.num_classes = len(self.class_names)
        spec = self._spec()
        height, width = self._configured_size()
        keras.utils.set_random_seed(int(self.seed))
        base = get_backbone(self.backbone, weights=self.weights, input_shape=(height, width, 3),
                            input_range=self.input_range)
        base.trainable = False
        images = keras.Input((None, None, 3), name="image")
        x = keras.layers.Resizing(
            height, width, crop_to_aspect_ratio=self.resize_policy == "center_crop",
            antialias=True, name="resize",
        )(images)
        augmentation = build_augmentation(self.augmentations, seed=self.seed)
        if augmentation is not None:
            x = augmentation(x)
        x = InferenceMode(base, name="backbone")(x)
        x = _pooling(len(base.output.shape))(x)
        x = keras.layers.Dropout(self.dropout, name="dropout")(x)
        binary = self.num_classes == 2
        logits = keras.layers.Dense(1 if binary else self.num_classes, name="classifier")(x)
        self.network = keras.Model(images, logits, name="network")
        self.metadata.update(image_size=[height, width], resize=spec.preprocessing.resize,
                             backbone_name=spec.name, why_frozen=spec.why_frozen)
        inputs = keras.Input((None, None, 3), name="image")
        outputs = self._class_labels()(self.network(inputs))
        self.model = keras.Model(inputs, outputs, name="image_classifier")
        return self.model

    def _backbone_model(self):
        self._require_model()
        return self.network.get_layer("backbone").layer

    def _derived(self, name, build):
        """A model over the network's layers, built once per network (so traced once)."""
        models = self.__dict__.setdefault("_derived_models", {})
        key = (id(self.network), name)
        if key not in models:
            models[key] = build()
        return models[key]

    def _head_model(self):
        """Pooled features -> logits, sharing the network's dropout and dense layers."""
        return self._derived("head", self._build_head_model)

    def _build_head_model(self):
        dim = self._backbone_model().output.shape[-1]
        features = keras.Input((dim,), name="features")
        logits = self.network.get_layer("classifier")(self.network.get_layer("dropout")(features))
        return keras.Model(features, logits, name="head")

    def _feature_model(self):
        """Resized images -> pooled backbone features (what `transferkit.runtimes` runs)."""
        return self._derived("features", self._build_feature_model)

    def _build_feature_model(self):
        backbone = self._backbone_model()
        images = keras.Input((*self.input_size, 3), name="image")
        pool = _pooling(len(backbone.output.shape))
        return keras.Model(images, pool(backbone(images, training=False)), name="features")

    def _views_model(self, views: int):
        """Resized images -> `views` randomly augmented copies each, `(batch, views, h, w, 3)`:
        the augmentation layers in training mode, always in Keras; the backbone then runs on
        whichever runtime the features use."""
        return self._derived(("views", views), lambda: self._build_views_model(views))

    def _build_views_model(self, views: int):
        shape = (*self.input_size, 3)
        images = keras.Input(shape, name="image")
        augmentation = _TrainingMode(self.network.get_layer("augmentation"))
        stacked = keras.layers.Concatenate(axis=1, name="views")(
            [keras.layers.Reshape((1, *shape))(augmentation(images)) for _ in range(views)]
        )
        return keras.Model(images, stacked, name="augmented_views")

    def _feature_runner(self, items: int):
        """The frozen feature model on `self.runtime` (see `transferkit.runtimes`), its ONNX graph
        cached beside the feature cache."""
        from transferkit.runtimes import frozen_runner

        cache = self._cache()
        return frozen_runner(
            self._feature_model(), runtime=self.runtime, items=items,
            key={"backbone": self._backbone_name(), "image_size": list(self.input_size),
                 "pooling": "avg"},
            cache=None if cache is None else cache.root,
        )

    # -- features --------------------------------------------------------------------------------

    def _cache(self):
        from transferkit.files import cache_dir
        from transferkit.training.feature_cache import FeatureCache

        if self.cache_dir is False or self.weights is None:
            return None  # random weights: features never repeat, caching them only fills disks
        if self.cache_dir in (None, True):
            return FeatureCache(cache_dir("features", "images"))
        return FeatureCache(self.cache_dir)

    def _features(self, inputs: ImageInputs, *, views: int = 0, batch_size: int = _D.batch_size,
                  decode_log=None, verbose: bool = False,
                  cached: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Pooled features of `inputs` (`(n, dim)`, or `(n, views, dim)`), and a mask of the rows
        that could be read. Cached per image (unless `cached=False`)."""
        from transferkit.data.images import DecodeLog
        from transferkit.training.feature_cache import weights_digest

        cache = self._cache() if cached else None
        log = decode_log if decode_log is not None else DecodeLog()
        keys: list[str | None] = [None] * len(inputs)
        results: list[np.ndarray | None] = [None] * len(inputs)
        if cache is not None:
            common = {
                "kind": "image-features",
                "version": _FEATURES_VERSION,
                "backbone": self._backbone_name(),
                "weights": weights_digest(self._backbone_model()),
                "image_size": list(self.input_size),
                "resize": self.resize_policy,
                "pooling": "avg",
            }
            if views:
                common.update(augment=list(self.augmentations), views=views, seed=self.seed)
            for i, digest in enumerate(inputs.digests()):
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

        batches = inputs.subset(missing).batches(
            self.input_size, self.resize_policy, batch_size=batch_size, decode_log=decode_log,
        )
        runner = self._feature_runner(len(missing) * max(1, views))
        progress = keras.utils.Progbar(len(missing), unit_name="image") if verbose else None
        position = 0
        with ThreadPoolExecutor(max_workers=4) as writer, ThreadPoolExecutor(1) as augmenter:
            if views:  # the next batch is augmented while the backbone runs on this one
                augment = self._views_model(views)
                batches = _one_ahead(batches, lambda x: _pixels(augment.predict_on_batch(x)),
                                     augmenter)
            pending = []
            for images, flags in batches:
                if views:
                    vectors = runner(images.reshape(-1, *images.shape[2:]))
                    vectors = vectors.reshape(len(images), views, -1)
                else:
                    vectors = runner(images)
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
        self.feature_runtime, self.feature_runtime_reason = runner.runtime, runner.reason

    # -- data ------------------------------------------------------------------------------------

    def _items(self, x) -> list:
        return image_list(x)

    def _describe_item(self, item) -> dict:
        return {"path": os.fspath(item)} if is_path(item) else {}

    def _labelled(self, x, y, validation_data, validation_size) -> Splits:
        """Train and validation images from a folder, an `ImageFolder`, or images and labels."""
        from transferkit.data.image_folder import ImageFolder, discover_image_folder
        from transferkit.data.labels import encode_labels, stratified_split

        known = self._known_names()
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
        ints, names = encode_labels(labels, known)
        if len(set(ints.tolist())) < 2:
            raise DataError("The training data has a single class; a classifier needs at least two.")
        inputs = ImageInputs(images)
        if validation_data is None:
            parts = stratified_split(ints, {"validation": validation_size}, self.seed,
                                     groups=inputs.digests())
            if not len(parts["validation"]):
                raise DataError("Too few images to hold some out for validation; pass more images.")
            return Splits(names, {
                "train": (inputs.subset(parts["train"]), ints[parts["train"]]),
                "validation": (inputs.subset(parts["validation"]), ints[parts["validation"]]),
            })
        val_images, val_labels = self._validation_pair(validation_data)
        val_ints, _ = encode_labels(val_labels, names)
        return Splits(names, {
            "train": (inputs, ints), "validation": (ImageInputs(val_images), val_ints)
        })

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
        train_x, train_ok = self._features(train_inputs, **common)
        val_x, val_ok = self._features(val_inputs, **common)
        view_x = self._features(train_inputs, views=views, **common)[0] if views else None
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
        return self._head_model(), train, validation, {"validation_batch_size": 256,
                                                       "shuffle": False}

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
        order = EpochOrder(len(pool_x), self.seed)  # epoch e's draw from (seed, e) alone
        return order.attach(order.slices((pool_x, pool_y)).take(len(features)).batch(
            batch_size, drop_remainder=distribute_active()).prefetch(tf.data.AUTOTUNE))

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
        from transferkit.training.unfreeze import backbone_architecture, unfreeze_layers

        self._backbone_model().trainable = True
        return unfreeze_layers(backbone_architecture(self.network), self._unfreeze_choice)

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

    def _probabilities(self, items: list, batch_size: int) -> tuple[np.ndarray, list[dict]]:
        from transferkit.data.images import DecodeLog
        from transferkit.runtimes import MIN_ITEMS

        inputs = ImageInputs(items)
        log = DecodeLog()
        if self.runtime == "onnx" or (self.runtime == "auto" and len(items) >= MIN_ITEMS) or (
                distribute_active()):  # the Keras model's batches would not split evenly
            # The backbone on the features' runtime (uncached: predictions can be millions of
            # files), the head in Keras: the saved model's numbers, within `runtimes.TOLERANCE`.
            features, _ = self._features(inputs, batch_size=batch_size, decode_log=log,
                                         cached=False)
            logits = predict_rows(self._head_model(), features)
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
        inputs = ImageInputs(items)
        features, ok = self._features(inputs, batch_size=batch_size)
        if not ok.all():
            return None  # unreadable files: let `predict_proba` name them
        return np.asarray(predict_rows(self._head_model(), features))

    def _training_features(self, items: list) -> np.ndarray | None:
        features, ok = self._features(ImageInputs(items))
        return features if ok.all() else None

    def _unreadable_error(self, unreadable: list[dict]) -> Exception:
        return unreadable_error(unreadable)

    def _evaluation_data(self, x, y) -> tuple[list, np.ndarray, list[dict]]:
        from transferkit.data.image_folder import ImageFolder, read_evaluation_folder
        from transferkit.data.labels import encode_labels

        names = list(self.class_names)
        if is_path(x) and y is None:
            found = read_evaluation_folder(x, names)
            return list(found.paths), found.labels, list(found.skipped)
        if isinstance(x, ImageFolder):
            return list(x.validation_paths), x.validation_labels, []
        images, labels = self._with_labels(x, y)
        return images, encode_labels(labels, names)[0], []

    def _write_mistakes(self, report_dir: Path, items, true_names, predicted_names,
                        scores) -> Path:
        from transferkit.reports import plot_image_mistakes

        path = report_dir / "mistakes.png"
        plot_image_mistakes(path, ImageInputs(items).displayable(), true_names, predicted_names,
                            scores)
        return path


def _pooling(rank: int):
    """The layer that averages a backbone's output into one vector per image: over the feature
    map (rank 4), over the tokens (rank 3, a vision transformer), or nothing (rank 2, a
    SavedModel feature vector)."""
    if rank == 4:
        return keras.layers.GlobalAveragePooling2D(name="pool")
    if rank == 3:
        return keras.layers.GlobalAveragePooling1D(name="pool")
    return keras.layers.Identity(name="pool")


def _images_only(images, ok):
    return images


def _pixels(views) -> np.ndarray:
    """Augmented views as the uint8 pixels the feature model takes, like the images it is also
    given: ONNX Runtime's graph takes uint8 (it would truncate floats), and Keras would trace a
    second, float32 graph of the whole backbone for them."""
    return np.clip(np.rint(np.asarray(views)), 0, 255).astype(np.uint8)


def _one_ahead(batches, function, pool):
    """`(function(images), flags)` for each batch, in order; `function` runs in `pool` (one
    thread: calls stay in order, so seeded augmentation stays reproducible) on the next batch
    while the caller works on this one."""
    pending = None
    for images, flags in batches:
        future = pool.submit(function, images)
        if pending is not None:
            yield pending[0].result(), pending[1]
        pending = (future, flags)
    if pending is not None:
        yield pending[0].result(), pending[1]
