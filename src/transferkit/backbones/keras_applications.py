"""Every image classification model of `keras.applications` (Keras 3.15), in the registry.

Each model is one `_KerasApp` row of plain data below; the loop at the end registers a
`BackboneSpec` for each at import, which builds nothing (`get_backbone` builds the architecture).

ImageNet weights come from Keras's own downloader, into the Keras cache (`$KERAS_HOME/models`,
default `~/.keras/models`). What this module adds to calling `keras.applications` directly:

- Offline, a download fails fast: a bounded probe of the weights host runs before Keras starts a
  download (Keras's `urlretrieve` has no timeout and can hang for minutes on a network that drops
  packets), and the failure becomes a `WeightsUnavailableError` that says what to do instead.
- Weights already in the cache load without touching the network.
- The model is named after the registry name. EfficientNet, EfficientNetV2 and ConvNeXt derive
  the weights file name (and EfficientNetV2 its block layout) from `name=`, so every model is built
  under Keras's default name and renamed afterwards.
- EfficientNet B0-B7 have one graph whatever the weights (see `_fold_efficientnet_rescaling`).
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transferkit.backbones.preprocessing import PRESETS
from transferkit.backbones.registry import offline_backbones, register
from transferkit.backbones.spec import BackboneSpec
from transferkit.errors import InputError, WeightsError, WeightsUnavailableError

__all__ = [
    "KERAS_APPLICATIONS",
    "keras_cache_dir",
    "weights_file_name",
]

# Every keras.applications weights file is served from this host (checked by a test against the
# Keras source). The probe only asks whether the host answers; any HTTP status counts as "online".
WEIGHTS_HOST = "https://storage.googleapis.com/"
# How long the probe may take before transferkit calls the machine offline, in seconds.
DOWNLOAD_PROBE_TIMEOUT_S = 5.0

IMAGENET_1K = "Keras applications download (ImageNet-1k)"
IMAGENET_21K_1K = "Keras applications download (ImageNet-21k pre-training, ImageNet-1k fine-tuning)"

# Licenses of the weights, as the Keras documentation states them; "unverified" where Keras
# does not state one and we name the license of the upstream release it was converted from.
_LICENSES = {
    "xception": "MIT (trained by the Keras team, per the Keras docs)",
    "vgg": "CC-BY-4.0 (ported from VGG at Oxford, per the Keras docs)",
    "resnet": "MIT (ported from Kaiming He's release, per the Keras docs)",
    "resnet_v2": "BSD (the Keras docs say: ported from facebook/fb.resnet.torch); unverified",
    "inception_v3": "Apache-2.0 per the current Keras docs (older Keras docs said MIT); unverified",
    "apache_tf_models": "Apache-2.0 (tensorflow/models, per the Keras docs)",
    "densenet": "BSD-3-Clause (liuzhuang13/DenseNet, per the Keras docs)",
    "mobilenet_v3": "Apache-2.0 (tensorflow/models release); not stated by Keras, unverified",
    "efficientnet": "Apache-2.0 (tensorflow/tpu release); not stated by Keras, unverified",
    "efficientnet_v2": "Apache-2.0 (google/automl release); not stated by Keras, unverified",
    "convnext": "MIT (facebookresearch/ConvNeXt release); not stated by Keras, unverified",
}


@dataclass(frozen=True)
class _KerasApp:
    """One `keras.applications` constructor and what transferkit knows about it.

    Args:
        name: registry name.
        constructor: attribute of `keras.applications` (`"MobileNetV2"`).
        module: submodule of `keras.applications` whose `preprocess_input` the model expects.
        family: architecture family.
        default_input_size: side of the square images the ImageNet weights were trained at.
        preprocessing: key of `PRESETS` equal to `module.preprocess_input`.
        feature_dim: channels of the last feature map.
        min_input_size: the smallest side Keras accepts for the architecture.
        license: license of the weights.
        weights_stem: what the Keras cache file names are made from (see `weights_file_name`).
        weights_source: where the ImageNet weights come from. Default ImageNet-1k via Keras.
        weight_sizes: input sides with their own ImageNet weights (MobileNet V1/V2); other sizes
            use the `default_input_size` weights, as in Keras. Default: one size.
        description: one line for the table.
    """

    name: str
    constructor: str
    module: str
    family: str
    default_input_size: int
    preprocessing: str
    feature_dim: int
    min_input_size: int
    license: str
    weights_stem: str
    weights_source: str = IMAGENET_1K
    weight_sizes: tuple[int, ...] = ()
    description: str = ""


def _classic(stem: str, include_top: bool, size: int) -> str:
    return f"{stem}_weights_tf_dim_ordering_tf_kernels{'' if include_top else '_notop'}.h5"


def _nasnet(stem: str, include_top: bool, size: int) -> str:
    return f"{stem}{'' if include_top else '_no_top'}.h5"


def _mobilenet(stem: str, include_top: bool, size: int) -> str:
    return f"mobilenet_1_0_{size}_tf{'' if include_top else '_no_top'}.h5"


def _mobilenet_v2(stem: str, include_top: bool, size: int) -> str:
    return (
        f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}"
        f"{'' if include_top else '_no_top'}.h5"
    )


def _mobilenet_v3(stem: str, include_top: bool, size: int) -> str:
    return f"weights_mobilenet_v3_{stem}_224_1.0_float{'' if include_top else '_no_top_v2'}.h5"


def _model_name(stem: str, include_top: bool, size: int) -> str:
    # EfficientNet, EfficientNetV2, ConvNeXt: Keras's default model name plus a suffix.
    return f"{stem}{'' if include_top else '_notop'}.h5"


# How each keras.applications module names its cached weights files (read from the Keras source).
_FILE_NAMERS: dict[str, Callable[[str, bool, int], str]] = {
    "xception": _classic,
    "vgg16": _classic,
    "vgg19": _classic,
    "resnet": _classic,
    "resnet_v2": _classic,
    "inception_v3": _classic,
    "inception_resnet_v2": _classic,
    "densenet": _classic,
    "nasnet": _nasnet,
    "mobilenet": _mobilenet,
    "mobilenet_v2": _mobilenet_v2,
    "mobilenet_v3": _mobilenet_v3,
    "efficientnet": _model_name,
    "efficientnet_v2": _model_name,
    "convnext": _model_name,
}


def _efficientnet(index: int, size: int, dim: int, params: float) -> _KerasApp:
    return _KerasApp(
        f"efficientnet_b{index}", f"EfficientNetB{index}", "efficientnet", "EfficientNet",
        size, "builtin", dim, 32, _LICENSES["efficientnet"], f"efficientnetb{index}",
        description=f"EfficientNet-B{index} (2019), compound-scaled MBConv; {params}M parameters",
    )  # fmt: skip


def _efficientnet_v2(variant: str, size: int, dim: int, params: float) -> _KerasApp:
    return _KerasApp(
        f"efficientnet_v2_{variant}", f"EfficientNetV2{variant.upper()}", "efficientnet_v2",
        "EfficientNetV2", size, "builtin", dim, 32, _LICENSES["efficientnet_v2"],
        f"efficientnetv2-{variant}",
        description=f"EfficientNetV2-{variant.upper()} (2021), fused-MBConv; {params}M parameters",
    )  # fmt: skip


def _convnext(variant: str, dim: int, params: float) -> _KerasApp:
    return _KerasApp(
        f"convnext_{variant}", f"ConvNeXt{'XLarge' if variant == 'xlarge' else variant.title()}",
        "convnext", "ConvNeXt", 224, "builtin", dim, 32, _LICENSES["convnext"],
        f"convnext_{variant}",
        weights_source=IMAGENET_1K if variant in ("tiny", "small") else IMAGENET_21K_1K,
        description=f"ConvNeXt-{variant.title()} (2022), a ConvNet modernised after ViTs; "
        f"{params}M parameters",
    )  # fmt: skip


# Parameter counts are without the top (include_top=False), measured with Keras 3.15.
# fmt: off
KERAS_APPLICATIONS: tuple[_KerasApp, ...] = (
    _KerasApp("xception", "Xception", "xception", "Xception", 299, "tf", 2048, 71,
              _LICENSES["xception"], "xception",
              description="Xception (2017), depthwise-separable Inception; 20.9M parameters"),
    _KerasApp("vgg16", "VGG16", "vgg16", "VGG", 224, "caffe", 512, 32,
              _LICENSES["vgg"], "vgg16",
              description="VGG-16 (2014), plain 3x3 convolutions; 14.7M parameters"),
    _KerasApp("vgg19", "VGG19", "vgg19", "VGG", 224, "caffe", 512, 32,
              _LICENSES["vgg"], "vgg19",
              description="VGG-19 (2014), plain 3x3 convolutions; 20.0M parameters"),
    _KerasApp("resnet50", "ResNet50", "resnet", "ResNet", 224, "caffe", 2048, 32,
              _LICENSES["resnet"], "resnet50",
              description="ResNet-50 (2015), bottleneck residual blocks; 23.6M parameters"),
    _KerasApp("resnet101", "ResNet101", "resnet", "ResNet", 224, "caffe", 2048, 32,
              _LICENSES["resnet"], "resnet101",
              description="ResNet-101 (2015), bottleneck residual blocks; 42.7M parameters"),
    _KerasApp("resnet152", "ResNet152", "resnet", "ResNet", 224, "caffe", 2048, 32,
              _LICENSES["resnet"], "resnet152",
              description="ResNet-152 (2015), bottleneck residual blocks; 58.4M parameters"),
    _KerasApp("resnet50_v2", "ResNet50V2", "resnet_v2", "ResNetV2", 224, "tf", 2048, 32,
              _LICENSES["resnet_v2"], "resnet50v2",
              description="ResNet-50 v2 (2016), pre-activation residual blocks; 23.6M parameters"),
    _KerasApp("resnet101_v2", "ResNet101V2", "resnet_v2", "ResNetV2", 224, "tf", 2048, 32,
              _LICENSES["resnet_v2"], "resnet101v2",
              description="ResNet-101 v2 (2016), pre-activation residual blocks; "
                          "42.6M parameters"),
    _KerasApp("resnet152_v2", "ResNet152V2", "resnet_v2", "ResNetV2", 224, "tf", 2048, 32,
              _LICENSES["resnet_v2"], "resnet152v2",
              description="ResNet-152 v2 (2016), pre-activation residual blocks; "
                          "58.3M parameters"),
    _KerasApp("inception_v3", "InceptionV3", "inception_v3", "InceptionV3", 299, "tf", 2048, 75,
              _LICENSES["inception_v3"], "inception_v3",
              description="Inception v3 (2015), factorised Inception modules; 21.8M parameters"),
    _KerasApp("inception_resnet_v2", "InceptionResNetV2", "inception_resnet_v2",
              "InceptionResNetV2", 299, "tf", 1536, 75,
              _LICENSES["apache_tf_models"], "inception_resnet_v2",
              description="Inception-ResNet v2 (2016), residual Inception modules; "
                          "54.3M parameters"),
    _KerasApp("mobilenet", "MobileNet", "mobilenet", "MobileNet", 224, "tf", 1024, 32,
              _LICENSES["apache_tf_models"], "mobilenet", weight_sizes=(128, 160, 192, 224),
              description="MobileNet v1 (2017), depthwise-separable convolutions; "
                          "3.2M parameters"),
    _KerasApp("mobilenet_v2", "MobileNetV2", "mobilenet_v2", "MobileNetV2", 224, "tf", 1280, 32,
              _LICENSES["apache_tf_models"], "mobilenet_v2",
              weight_sizes=(96, 128, 160, 192, 224),
              description="MobileNet v2 (2018), inverted residuals; 2.3M parameters"),
    _KerasApp("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", "MobileNetV3", 224,
              "builtin", 576, 32, _LICENSES["mobilenet_v3"], "small",
              description="MobileNet v3 Small (2019), searched for phone CPUs; 0.9M parameters"),
    _KerasApp("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", "MobileNetV3", 224,
              "builtin", 960, 32, _LICENSES["mobilenet_v3"], "large",
              description="MobileNet v3 Large (2019), searched for phone CPUs; 3.0M parameters"),
    _KerasApp("densenet121", "DenseNet121", "densenet", "DenseNet", 224, "torch", 1024, 32,
              _LICENSES["densenet"], "densenet121",
              description="DenseNet-121 (2016), densely connected blocks; 7.0M parameters"),
    _KerasApp("densenet169", "DenseNet169", "densenet", "DenseNet", 224, "torch", 1664, 32,
              _LICENSES["densenet"], "densenet169",
              description="DenseNet-169 (2016), densely connected blocks; 12.6M parameters"),
    _KerasApp("densenet201", "DenseNet201", "densenet", "DenseNet", 224, "torch", 1920, 32,
              _LICENSES["densenet"], "densenet201",
              description="DenseNet-201 (2016), densely connected blocks; 18.3M parameters"),
    _KerasApp("nasnet_mobile", "NASNetMobile", "nasnet", "NASNet", 224, "tf", 1056, 32,
              _LICENSES["apache_tf_models"], "nasnet_mobile",
              description="NASNet-A Mobile (2017), architecture search; 4.3M parameters"),
    _KerasApp("nasnet_large", "NASNetLarge", "nasnet", "NASNet", 331, "tf", 4032, 32,
              _LICENSES["apache_tf_models"], "nasnet_large",
              description="NASNet-A Large (2017), architecture search; 84.9M parameters"),
    _efficientnet(0, 224, 1280, 4.0),
    _efficientnet(1, 240, 1280, 6.6),
    _efficientnet(2, 260, 1408, 7.8),
    _efficientnet(3, 300, 1536, 10.8),
    _efficientnet(4, 380, 1792, 17.7),
    _efficientnet(5, 456, 2048, 28.5),
    _efficientnet(6, 528, 2304, 41.0),
    _efficientnet(7, 600, 2560, 64.1),
    _efficientnet_v2("b0", 224, 1280, 5.9),
    _efficientnet_v2("b1", 240, 1280, 6.9),
    _efficientnet_v2("b2", 260, 1408, 8.8),
    _efficientnet_v2("b3", 300, 1536, 12.9),
    _efficientnet_v2("s", 384, 1280, 20.3),
    _efficientnet_v2("m", 480, 1280, 53.2),
    _efficientnet_v2("l", 480, 1280, 117.7),
    _convnext("tiny", 768, 27.8),
    _convnext("small", 768, 49.5),
    _convnext("base", 1024, 87.6),
    _convnext("large", 1536, 196.2),
    _convnext("xlarge", 2048, 348.1),
)
# fmt: on

_BY_NAME = {app.name: app for app in KERAS_APPLICATIONS}


def keras_cache_dir() -> Path:
    """The folder where Keras keeps downloaded application weights.

    `$KERAS_HOME/models`, else `~/.keras/models`, or `/tmp/.keras/models` when that home is not
    writable, the same rule as `keras.utils.get_file`. `KERAS_HOME` is read on each call.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return Path(home) / "models"


def _weights_size(app: _KerasApp, input_shape) -> int:
    """The input side whose ImageNet weights Keras picks for `input_shape` (MobileNet V1/V2)."""
    if app.weight_sizes and input_shape is not None:
        rows, cols = int(input_shape[0]), int(input_shape[1])
        if rows == cols and rows in app.weight_sizes:
            return rows
    return app.default_input_size


def weights_file_name(name: str, include_top: bool = False, input_shape=None) -> str:
    """The file name Keras caches the ImageNet weights of backbone `name` under.

    Args:
        name: a registry name of this module (`"mobilenet_v2"`).
        include_top: the file with the 1000-class classifier. Default `False`.
        input_shape: `(height, width, 3)`; matters for MobileNet V1/V2, which have weights per
            input size. Default: the default input size.
    """
    app = _BY_NAME[name]
    return _FILE_NAMERS[app.module](app.weights_stem, include_top, _weights_size(app, input_shape))


def _cached_weights(app: _KerasApp, include_top: bool, input_shape) -> Path | None:
    path = keras_cache_dir() / weights_file_name(app.name, include_top, input_shape)
    return path if path.is_file() else None


def _weights_available(app: _KerasApp, include_top: bool = False, input_shape=None) -> bool:
    """Whether the ImageNet weights are in the Keras cache (without the top, default size)."""
    return _cached_weights(app, include_top, input_shape) is not None


def _download_blocker(url: str = WEIGHTS_HOST) -> str | None:
    """Why a download from `url` cannot work now, or None when the host answers.

    Asks with a HEAD request (through any proxy set in the environment, as Keras's downloader
    does), for at most `DOWNLOAD_PROBE_TIMEOUT_S` seconds. Runs in a daemon thread so that a DNS
    lookup that hangs (no timeout applies to it) cannot hold the caller past the limit.
    """
    timeout = DOWNLOAD_PROBE_TIMEOUT_S
    done = threading.Event()
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                pass
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # the server answered; a download can be tried
        except (OSError, ValueError) as exc:  # URLError, timeouts, TLS errors; a bad proxy URL
            reason = getattr(exc, "reason", None) or exc
            outcome.append(f"this machine cannot reach {url} ({reason})")
        finally:
            done.set()

    threading.Thread(target=probe, name="transferkit-download-probe", daemon=True).start()
    if not done.wait(timeout):
        return f"{url} did not answer within {timeout:g} s"
    return outcome[0] if outcome else f"the probe of {url} failed"


def _unavailable_message(app: _KerasApp, file_name: str, reason: str) -> str:
    offline = ", ".join(offline_backbones()) or "none on this machine yet"
    return (
        f"The ImageNet weights of {app.name} need a download ({file_name}), and {reason}. "
        "Use weights saved on disk instead: a `.weights.h5` file as `weights`; or copy "
        f"{file_name} into {keras_cache_dir()}. Backbones whose weights load offline: {offline}."
    )


def _check_imagenet_arguments(
    app: _KerasApp, include_top: bool, input_shape, classifier_activation
) -> None:
    if not include_top:
        return
    sizes = app.weight_sizes or (app.default_input_size,)
    rows, cols = int(input_shape[0]), int(input_shape[1])
    if rows != cols or rows not in sizes:
        expected = " or ".join(f"({s}, {s}, 3)" for s in sizes)
        raise InputError(
            f"{app.name} with include_top=True and ImageNet weights needs input_shape={expected}, "
            f"the size its classifier was trained at. Received: input_shape={tuple(input_shape)}. "
            "Pass include_top=False to use other sizes."
        )
    if classifier_activation not in (None, "softmax"):
        raise InputError(
            f"{app.name} with include_top=True and ImageNet weights takes "
            "classifier_activation='softmax' or None (logits). "
            f"Received: classifier_activation={classifier_activation!r}."
        )


# EfficientNet B0-B7 only: with weights="imagenet", Keras inserts a weightless
# `Rescaling(1 / sqrt(std))` after the stem `Normalization` (keras efficientnet.py, after
# tensorflow#49930), so its graph differs from the weights=None graph, and a weights file saved from
# one loads silently into the other with different outputs. transferkit builds the weights=None
# graph for every kind of weights and folds that factor into the Normalization variance:
# (x - mean) / sqrt(variance * std) == Rescaling(1 / sqrt(std))((x - mean) / sqrt(variance)).
_IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def _fold_efficientnet_rescaling(model) -> None:
    import keras
    import numpy as np

    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    variance = keras.ops.convert_to_numpy(norm.adapt_variance)
    norm.adapt_variance.assign(variance * np.asarray(_IMAGENET_STDDEV_RGB, dtype=variance.dtype))
    norm.finalize_state()  # Normalization computes from its variables only here


def _construct(app: _KerasApp, weights, **kwargs):
    """Calls the Keras constructor, turning its errors into transferkit's."""
    import keras

    constructor = getattr(keras.applications, app.constructor)
    try:
        model = constructor(weights=weights, **kwargs)
    except ValueError as exc:
        if "hash does not match" in str(exc):
            raise WeightsError(
                f"The downloaded ImageNet weights of {app.name} are corrupt: {exc} "
                "Run again to download them afresh."
            ) from exc
        raise InputError(f"{app.name}: {exc}") from exc
    except Exception as exc:
        if "URL fetch failure" in str(exc):  # what keras.utils.get_file raises
            file_name = weights_file_name(app.name, kwargs["include_top"], kwargs["input_shape"])
            raise WeightsUnavailableError(
                _unavailable_message(app, file_name, f"Keras could not download it ({exc})")
            ) from exc
        raise
    # Built under Keras's default name (see the module docstring); the registry name from here on.
    model.name = app.name
    return model


def _build(
    app: _KerasApp,
    *,
    include_top: bool,
    weights: str | None,
    input_shape,
    classifier_activation: str | None,
):
    """`BackboneSpec.builder` of a keras.applications model; see `registry.get_backbone`."""
    if input_shape is None:
        input_shape = (app.default_input_size, app.default_input_size, 3)
    kwargs = {
        "include_top": include_top,
        "input_shape": tuple(int(s) for s in input_shape),
        "classifier_activation": classifier_activation,
    }
    if weights is None:
        return _construct(app, None, **kwargs)
    if weights != "imagenet":
        raise InputError(
            f"`weights` must be 'imagenet' or None for {app.name}'s builder (get_backbone loads "
            f"weight files itself). Received: weights={weights!r}."
        )
    _check_imagenet_arguments(app, include_top, input_shape, classifier_activation)
    cached = _cached_weights(app, include_top, input_shape)
    if cached is None:
        file_name = weights_file_name(app.name, include_top, input_shape)
        blocker = _download_blocker()
        if blocker is not None:
            raise WeightsUnavailableError(_unavailable_message(app, file_name, blocker))
        downloaded = _construct(app, "imagenet", **kwargs)
        if app.module != "efficientnet":
            return downloaded
        # Same variables in the same order: only a weightless layer differs (see the fold).
        model = _construct(app, None, **kwargs)
        model.set_weights(downloaded.get_weights())
    else:
        # Already cached: load the file ourselves, as Keras would, without touching the network
        # (on a hash mismatch Keras would download again, which hangs offline).
        model = _construct(app, None, **kwargs)
        try:
            model.load_weights(os.fspath(cached))
        except Exception as exc:
            raise WeightsError(
                f"Could not load the cached ImageNet weights of {app.name} from {cached}: {exc}. "
                "The file may be incomplete: delete it and run again online to download it afresh."
            ) from exc
    if app.module == "efficientnet":
        _fold_efficientnet_rescaling(model)
    return model


for _app in KERAS_APPLICATIONS:
    register(
        BackboneSpec(
            name=_app.name,
            family=_app.family,
            builder=functools.partial(_build, _app),
            default_input_size=_app.default_input_size,
            preprocessing=PRESETS[_app.preprocessing],
            feature_dim=_app.feature_dim,
            weights_source=_app.weights_source,
            license=_app.license,
            weights_available=functools.partial(_weights_available, _app),
            min_input_size=_app.min_input_size,
            description=_app.description,
        )
    )
del _app
