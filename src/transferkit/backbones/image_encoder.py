"""`ImageEncoder`: images -> what an image classifier's head learns from; the twin of
`transferkit.backbones.text_encoders.TextEncoder`.

One object answers everything about the frozen backbone of an image model:

* what it is (`spec`, `name`, `input_size`, `resize_policy`, `why_frozen`, `describe()`);
* the network a head is trained in (`build_network`): resize, augmentation, the backbone inside
  `InferenceMode` (its BatchNormalization stays in inference mode also once unfrozen), pooling,
  dropout and the last `Dense`;
* features (`features`, `readable_features`): pooled backbone outputs, computed on the runtime
  `transferkit.runtimes` picks (ONNX Runtime or Keras), cached on disk per image content, with
  augmented views precomputed for the head;
* fine-tuning (`unfreeze`).

`ImageClassifier` holds one; `transferkit.extract_features`, `rank`, `check` and the batch jobs
use one directly, without a classifier.
"""

from __future__ import annotations

import os
from typing import Any

import keras
import numpy as np

from transferkit.config import ImageTrainConfig
from transferkit.data.image_inputs import ImageInputs, image_list, unreadable_error
from transferkit.errors import InputError
from transferkit.layers import InferenceMode

__all__ = ["ImageEncoder", "feature_pool", "head_layers"]

_D = ImageTrainConfig()  # the defaults; `transferkit.config` is where they are written
_FEATURES_VERSION = 2  # bump when the way features are computed changes, to retire old caches


class _TrainingMode(keras.layers.Wrapper):
    """Runs random augmentation layers as in training, also inside `predict` (augmented views for
    the feature cache). Never saved."""

    def call(self, inputs, training=None):
        return self.layer(inputs, training=True)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def head_layers(outputs: int, dropout: float) -> list:
    """The head on pooled features, in order: `Dropout` then `Dense(outputs)` (logits), named
    as a network built by `ImageEncoder.build_network` names them (and `tune` trains them)."""
    return [keras.layers.Dropout(dropout, name="dropout"),
            keras.layers.Dense(outputs, name="classifier")]


def feature_pool(features: np.ndarray, labels, views: np.ndarray | None):
    """`(x, y)`: the rows a head's epoch on cached features draws from: each image's plain
    features and its augmented views (`views`, `(n, views, dim)` as `readable_features` gives
    them), image by image, each row with its image's label (or label set, or value)."""
    labels = np.asarray(labels)
    if views is None or views.size == 0:
        return features, labels
    pool_x = np.concatenate([features[:, None, :], views], axis=1)
    pool_y = np.repeat(labels, pool_x.shape[1], axis=0)
    return pool_x.reshape(-1, pool_x.shape[-1]), pool_y


class ImageEncoder:
    """A pretrained image backbone as a feature extractor, and the network a head is trained in.

    The constructor stores its arguments and loads nothing (`build` or `attach` does).

    Args:
        backbone: a registered backbone name, a SavedModel folder, a KerasHub preset folder or an
            `hf://` / `kaggle://` handle (`transferkit.backbones.sources`). Default
            `ImageTrainConfig.backbone`.
        image_size: the side (or `(height, width)`) images are resized to; default `None`: the
            backbone's own size.
        input_range: the range a SavedModel folder takes pixels in; default `None` ([0, 1]).
        weights: `"imagenet"` (default), `None` (random) or a `.weights.h5` path.
        augment: augmentations for training (see `transferkit.data.augmentation.parse_augment`).
            Default `None`: none (features of the images as they are).
        augment_views: augmented views per training image precomputed for the head. Default
            `ImageTrainConfig.augment_views`.
        seed: seed of augmentation and initial weights. Default `ImageTrainConfig.seed`.
        cache_dir: the feature cache's folder; `None` (default): `features/images` in the
            transferkit cache; `False`: no cache.
        runtime: `"auto"`, `"onnx"` or `"keras"`: what runs the frozen backbone for features.
            Default `ImageTrainConfig.runtime`.

    Attributes:
        backbone_model: the frozen backbone (`keras.Model`, preprocessing inside), once built.
        info: facts for reports: `feature_seconds`, `feature_runtime`, `feature_runtime_reason`.
    """

    def __init__(self, backbone: str | os.PathLike = _D.backbone, *, image_size=_D.image_size,
                 input_range: str | None = _D.input_range,
                 weights: str | os.PathLike | None = _D.weights, augment=None,
                 augment_views: int = _D.augment_views, seed: int = _D.seed,
                 cache_dir: str | os.PathLike | bool | None = None, runtime: str = _D.runtime):
        from transferkit.runtimes import check_runtime

        check_runtime(runtime)
        self.backbone = os.fspath(backbone) if isinstance(backbone, os.PathLike) else backbone
        self.image_size = image_size
        self.input_range = input_range
        self.weights = weights
        self.augment = augment
        self.augment_views = augment_views
        self.seed = seed
        self.cache_dir = cache_dir
        self.runtime = runtime
        self.backbone_model = None
        self.augmentation = None
        self.facts: dict[str, Any] = {}  # what a loaded model recorded (no backbone folder needed)
        self.info: dict[str, Any] = {"feature_seconds": 0.0, "feature_runtime": None,
                                     "feature_runtime_reason": ""}
        self._models: dict = {}

    def __repr__(self) -> str:
        return f"ImageEncoder({self.backbone!r})"

    # -- what it is ------------------------------------------------------------------------------

    @property
    def spec(self):
        """The backbone's `BackboneSpec` (registered, or of a SavedModel/KerasHub source)."""
        from transferkit.backbones.registry import get_spec

        return get_spec(self.backbone, self.input_range)

    @property
    def name(self) -> str:
        """The backbone's registry name (`"efficientnet_lite0"`)."""
        return self.facts.get("backbone_name") or self.spec.name

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The augmentation layers' names (`augment`, parsed)."""
        from transferkit.data.augmentation import parse_augment

        return parse_augment(self.augment)

    @property
    def input_size(self) -> tuple[int, int]:
        """`(height, width)` the backbone sees: `image_size`, or the backbone's own size."""
        if self.facts.get("image_size") is not None:
            return tuple(self.facts["image_size"])
        from transferkit.backbones.registry import check_input_size, size_unknown

        spec, size = self.spec, self.image_size
        if size is None:
            if not spec.default_input_size:
                raise InputError(size_unknown(spec))
            size = spec.default_input_size
        return check_input_size(spec, size)

    @property
    def resize_policy(self) -> str:
        """How images are resized for the backbone: `"center_crop"` or `"stretch"`."""
        return self.facts.get("resize") or self.spec.preprocessing.resize

    @property
    def why_frozen(self) -> str:
        """Why the backbone cannot be fine-tuned, or `""` when it can."""
        if "why_frozen" in self.facts:
            return self.facts["why_frozen"]
        return self.spec.why_frozen

    @property
    def feature_dim(self) -> int:
        """How many numbers a feature vector has."""
        return int(self._backbone().output.shape[-1])

    def check(self) -> None:
        """Raises `InputError` for settings that cannot work (loads no weights)."""
        from transferkit.checks import check_int

        self.input_size  # an unknown backbone, a bad image size
        self.augmentations
        check_int(self.augment_views, "augment_views", minimum=0)

    def describe(self) -> dict[str, Any]:
        """Plain data about the backbone, for the model's metadata (read back by `attach`)."""
        spec = self.spec
        return {"image_size": list(self.input_size), "resize": spec.preprocessing.resize,
                "backbone_name": spec.name, "why_frozen": spec.why_frozen}

    # -- the network -----------------------------------------------------------------------------

    def build(self):
        """Builds the frozen backbone (and the augmentation layers). Returns the backbone."""
        from transferkit.backbones.registry import get_backbone
        from transferkit.data.augmentation import build_augmentation

        self.check()
        height, width = self.input_size
        keras.utils.set_random_seed(int(self.seed))
        base = get_backbone(self.backbone, weights=self.weights, input_shape=(height, width, 3),
                            input_range=self.input_range)
        base.trainable = False
        self.backbone_model = base
        self.augmentation = build_augmentation(self.augmentations, seed=self.seed)
        self.facts = self.describe()
        return base

    def build_network(self, outputs: int, dropout: float = _D.dropout):
        """The trainable network (a `keras.Model` named `"network"`): RGB images of any size ->
        `outputs` logits (`Classifier.num_logits`: one for two classes). Builds the backbone."""
        base = self.build()
        height, width = self.input_size
        images = keras.Input((None, None, 3), name="image")
        x = keras.layers.Resizing(
            height, width, crop_to_aspect_ratio=self.resize_policy == "center_crop",
            antialias=True, name="resize",
        )(images)
        if self.augmentation is not None:
            x = self.augmentation(x)
        x = InferenceMode(base, name="backbone")(x)
        x = _pooling(len(base.output.shape))(x)
        for layer in head_layers(outputs, dropout):
            x = layer(x)
        return keras.Model(images, x, name="network")

    def attach(self, network, facts: dict) -> None:
        """Uses the backbone inside a built or loaded `network`; `facts` are `describe()`'s
        data as the model recorded it (so a loaded model needs no backbone folder)."""
        self.backbone_model = network.get_layer("backbone").layer
        names = {layer.name for layer in network.layers}
        self.augmentation = network.get_layer("augmentation") if "augmentation" in names else None
        self.facts = {key: facts[key] for key in ("image_size", "resize", "backbone_name",
                                                  "why_frozen") if key in facts}

    def _backbone(self):
        if self.backbone_model is None:
            self.build()
        return self.backbone_model

    def _derived(self, name, build):
        """A model over the backbone's layers, built once per backbone (so traced once)."""
        key = (id(self._backbone()), name)
        if key not in self._models:
            self._models[key] = build()
        return self._models[key]

    def head(self, network):
        """Pooled features -> logits, sharing `network`'s dropout and dense layers: what the head
        phase trains on cached features."""
        def build():
            features = keras.Input((self.feature_dim,), name="features")
            logits = network.get_layer("classifier")(network.get_layer("dropout")(features))
            return keras.Model(features, logits, name="head")

        return self._derived(("head", id(network)), build)

    def feature_map_models(self, network):
        """`(maps, head)` for explanations, sharing `network`'s layers: resized images -> the
        backbone's last spatial feature map `(n, h, w, c)`, and that map -> logits (pooling,
        dropout, dense). No augmentation in either (a direct call of `network` would augment).

        Returns:
            None when the backbone gives no spatial map (a vision transformer's tokens, a
            SavedModel's feature vector).
        """
        backbone = network.get_layer("backbone")
        if len(backbone.output.shape) != 4:
            return None

        def build():
            images = keras.Input((*self.input_size, 3), name="image")
            maps = keras.Model(images, backbone(images, training=False), name="feature_maps")
            spatial = keras.Input(backbone.output.shape[1:], name="feature_map")
            pooled = network.get_layer("pool")(spatial)
            logits = network.get_layer("classifier")(network.get_layer("dropout")(pooled))
            return maps, keras.Model(spatial, logits, name="map_head")

        return self._derived(("feature_maps", id(network)), build)

    def feature_model(self):
        """Resized images -> pooled backbone features (what `transferkit.runtimes` runs)."""
        def build():
            backbone = self._backbone()
            images = keras.Input((*self.input_size, 3), name="image")
            pool = _pooling(len(backbone.output.shape))
            return keras.Model(images, pool(backbone(images, training=False)), name="features")

        return self._derived("features", build)

    def _views_model(self, views: int):
        """Resized images -> `views` randomly augmented copies each, `(batch, views, h, w, 3)`:
        the augmentation layers in training mode, always in Keras; the backbone then runs on
        whichever runtime the features use."""
        def build():
            shape = (*self.input_size, 3)
            images = keras.Input(shape, name="image")
            augmentation = _TrainingMode(self.augmentation)
            stacked = keras.layers.Concatenate(axis=1, name="views")(
                [keras.layers.Reshape((1, *shape))(augmentation(images)) for _ in range(views)]
            )
            return keras.Model(images, stacked, name="augmented_views")

        return self._derived(("views", views), build)

    def unfreeze(self, network, choice=_D.unfreeze) -> int:
        """Makes (part of) the backbone inside `network` trainable: `"all"`, the top N layers,
        or a layer name and all above it. Returns the number of trainable layers."""
        from transferkit.training.unfreeze import backbone_architecture, unfreeze_layers

        self._backbone().trainable = True
        return unfreeze_layers(backbone_architecture(network), choice)

    # -- features --------------------------------------------------------------------------------

    def runner(self, items: int):
        """The frozen feature model on `runtime` (see `transferkit.runtimes`), its ONNX graph
        cached beside the feature cache."""
        from transferkit.runtimes import frozen_runner

        cache = self.cache()
        return frozen_runner(
            self.feature_model(), runtime=self.runtime, items=items,
            key={"backbone": self.name, "image_size": list(self.input_size), "pooling": "avg"},
            cache=None if cache is None else cache.root,
        )

    def settle_runtime(self, items: int) -> str:
        """Decides `"auto"` once for `items` images (ONNX Runtime or Keras, exporting the graph
        now if needed), so that later calls, small or large, run on the same runtime."""
        if self.runtime == "auto":
            self.runtime = self.runner(items).runtime
        return self.runtime

    def cache(self):
        """The `FeatureCache`, or `None` (caching off, or random weights: features never repeat,
        caching them would only fill disks)."""
        from transferkit.files import cache_dir
        from transferkit.training.feature_cache import FeatureCache

        if self.cache_dir is False or self.weights is None:
            return None
        if self.cache_dir in (None, True):
            return FeatureCache(cache_dir("features", "images"))
        return FeatureCache(self.cache_dir)

    def features(self, images, *, batch_size: int = _D.batch_size, cached: bool = True,
                 verbose: bool = False) -> np.ndarray:
        """Pooled features of `images` (paths, an RGB array, a batch, a list of arrays), one
        `float32` vector each.

        Raises:
            ImageReadError: files that cannot be read; all of them are named.
        """
        from transferkit.data.images import DecodeLog

        log = DecodeLog()
        inputs = images if isinstance(images, ImageInputs) else ImageInputs(image_list(images))
        features, ok = self.readable_features(inputs, batch_size=batch_size, decode_log=log,
                                              cached=cached, verbose=verbose)
        if not ok.all():
            raise unreadable_error(log.items())
        return features

    def readable_features(self, inputs: ImageInputs, *, views: int = 0,
                          batch_size: int = _D.batch_size, decode_log=None,
                          verbose: bool = False, cached: bool = True):
        """`(features, ok)`: pooled features of `inputs` (`(n, dim)`, or `(n, views, dim)`
        augmented views), and a mask of the rows that could be read (the others are zeros and
        listed in `decode_log`). Cached per image content unless `cached=False`."""
        from transferkit.data.images import DecodeLog
        from transferkit.training.feature_cache import weights_digest

        cache = self.cache() if cached else None
        log = decode_log if decode_log is not None else DecodeLog()
        keys: list[str | None] = [None] * len(inputs)
        results: list[np.ndarray | None] = [None] * len(inputs)
        if cache is not None:
            common = {
                "kind": "image-features",
                "version": _FEATURES_VERSION,
                "backbone": self.name,
                "weights": weights_digest(self._backbone()),
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
            self._compute(inputs, missing, keys, results, ok, cache, views=views,
                          batch_size=batch_size, decode_log=log, verbose=verbose)
        dim = next((r.shape for r in results if r is not None), None)
        if dim is None:
            return np.zeros((len(inputs), 0), np.float32), ok
        features = np.stack([r if r is not None else np.zeros(dim, np.float32) for r in results])
        return features, ok

    def _compute(self, inputs, missing, keys, results, ok, cache, *, views, batch_size,
                 decode_log, verbose):
        """Runs the backbone over `inputs.items[missing]`, fills `results` and `ok`, and writes
        the cache in background threads, so that its fsyncs overlap the next batch."""
        from concurrent.futures import ThreadPoolExecutor

        batches = inputs.subset(missing).batches(
            self.input_size, self.resize_policy, batch_size=batch_size, decode_log=decode_log,
        )
        runner = self.runner(len(missing) * max(1, views))
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
        self.info.update(feature_runtime=runner.runtime, feature_runtime_reason=runner.reason)


def _pooling(rank: int):
    """The layer that averages a backbone's output into one vector per image: over the feature
    map (rank 4), over the tokens (rank 3, a vision transformer), or nothing (rank 2, a
    SavedModel feature vector)."""
    if rank == 4:
        return keras.layers.GlobalAveragePooling2D(name="pool")
    if rank == 3:
        return keras.layers.GlobalAveragePooling1D(name="pool")
    return keras.layers.Identity(name="pool")


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
