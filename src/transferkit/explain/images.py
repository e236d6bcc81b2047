"""Heat maps for image classifiers: where in the photo the explained output's evidence lies.

The map is a class activation map (`transferkit.explain.cams`) on the backbone's last spatial
feature map (7x7 for EfficientNet-Lite0 at 224 px), with the gradient of the explained logit taken
by the backend (`transferkit.explain.gradients`). It is upsampled to the image the model saw (the
centre crop or the stretched photo, as `predict` resizes) and placed back on the photo: pixels the
model never saw (outside a centre crop) get 0, and `seen` says which box it saw.

What is explained: single-label, a class (the predicted one by default); multi-label, a label (the
highest-scoring by default); regression, the value (where the evidence for a larger value is).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from transferkit.errors import InputError

__all__ = ["blend", "explain_images", "overlay", "overlays"]

_BATCH = 16


def _seen_box(shape: tuple[int, int], size: tuple[int, int], policy: str) -> tuple[int, ...]:
    """`(top, left, height, width)` of the photo (`shape`: height, width) that the model saw
    after resizing to `size` with `policy` (as `transferkit.data.images.load_resized` crops)."""
    height, width = shape
    if policy != "center_crop":
        return 0, 0, height, width
    scale = max(size[0] / height, size[1] / width)
    new_w, new_h = max(size[1], round(width * scale)), max(size[0], round(height * scale))
    left, top = (new_w - size[1]) // 2, (new_h - size[0]) // 2
    return (round(top / scale), round(left / scale), min(height, round(size[0] / scale)),
            min(width, round(size[1] / scale)))


def _resize_map(values: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    picture = Image.fromarray(np.asarray(values, dtype=np.float32), mode="F")
    return np.asarray(picture.resize((width, height), Image.BILINEAR), dtype=np.float32)


def _on_photo(cam: np.ndarray, shape: tuple[int, int], box: tuple[int, ...]) -> np.ndarray:
    """The map at the photo's size: the seen box gets the upsampled map, the rest 0."""
    top, left, height, width = box
    full = np.zeros(shape, dtype=np.float32)
    full[top:top + height, left:left + width] = _resize_map(cam, height, width)
    return full


def explain_images(classifier, items: list, label=None, method: str | None = None) -> list[dict]:
    """Heat maps of `items` (paths or RGB arrays) for `classifier` (a fitted image classifier).

    Returns:
        One dict per input: `input`, `prediction` (what `predict` says), `explained` (the class,
        label or target explained), `score` (its probability, or the value), `method`, `map`
        (float32 at the photo's size, 0 outside what the model saw), `seen` (`[top, left,
        height, width]` of the photo the model saw) and `grid` (the feature map's `[h, w]`);
        an unreadable file gets `{"input", "skipped": reason}`, as `predict` gives it.

    Raises:
        InputError: a backbone without a spatial feature map, an unknown `label` or `method`.
    """
    from transferkit.data.images import load_image, load_resized
    from transferkit.explain import logit_weights
    from transferkit.explain.cams import METHODS, class_activation_maps
    from transferkit.explain.gradients import output_gradients
    from transferkit.training.distribute import for_prediction

    method = method or METHODS[0]
    if method not in METHODS:
        raise InputError(f"`method` must be one of {', '.join(METHODS)}. Received: {method!r}.")
    encoder = classifier.get_encoder()
    if encoder.feature_map_models(classifier.network) is None:
        raise InputError(
            f"{classifier.backbone}: its features are not a spatial map (a feature vector or a "
            "transformer's tokens), so there is nothing to draw a heat map on."
        )
    rows = classifier.predict(items, skip_unreadable=True)
    readable = [i for i, row in enumerate(rows) if "skipped" not in row]
    names, weights = logit_weights(classifier, [rows[i] for i in readable], label)
    results = [{"input": _name(items[i], i), **rows[i]} for i in range(len(items))]
    size, policy = classifier.input_size, classifier.resize_policy
    # across training processes, the maps come from this process's copy of the network (as
    # `predict` does): the global one's outputs are spread over the processes
    with for_prediction(classifier.network) as network:
        maps_model, head = encoder.feature_map_models(network)
        for start in range(0, len(readable), _BATCH):
            chunk = readable[start:start + _BATCH]
            photos = [load_image(items[i]) if _is_path(items[i]) else np.asarray(items[i])
                      for i in chunk]
            pixels = np.stack([load_resized(items[i], size, policy) if _is_path(items[i]) else
                               _resized_array(photo, size, policy)
                               for i, photo in zip(chunk, photos)]).astype(np.float32)
            activations = np.asarray(maps_model.predict(pixels, verbose=0))
            _, gradients = output_gradients(head, activations, weights[start:start + len(chunk)])
            cams = class_activation_maps(activations, gradients, method)
            for offset, (i, photo, cam) in enumerate(zip(chunk, photos, cams)):
                box = _seen_box(photo.shape[:2], size, policy)
                row, name = rows[i], names[start + offset]
                results[i] = {
                    "input": _name(items[i], i), "prediction": _prediction(row),
                    "explained": name, "score": _score_of(classifier, row, name), "method": method,
                    "map": _on_photo(cam, photo.shape[:2], box), "seen": list(box),
                    "grid": list(cam.shape),
                }
    return results


def _resized_array(photo: np.ndarray, size, policy: str) -> np.ndarray:
    from transferkit.data.images import resize_image

    return resize_image(np.asarray(photo, dtype=np.uint8), size, policy)


def _prediction(row: dict) -> dict:
    return {key: row[key] for key in ("label", "score", "labels", "value") if key in row}


def _score_of(classifier, row: dict, name: str) -> float:
    if classifier.target == "regression":
        return float(row["value"])
    scores = row.get("scores") or row.get("probabilities")
    return float(scores[name])


def _is_path(item) -> bool:
    return isinstance(item, (str, os.PathLike))


def _name(item, index: int) -> str:
    return os.fspath(item) if _is_path(item) else f"image #{index}"


def blend(photo: np.ndarray, heat: np.ndarray, seen) -> np.ndarray:
    """`photo` (uint8 RGB) with `heat` (scaled to its maximum) over it in the jet colours, and
    the part outside `seen` (not seen by the model) darkened: uint8 RGB of the photo's size."""
    from matplotlib import colormaps

    photo = np.asarray(photo, dtype=np.float32) / 255.0
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=-1)
    peak = float(heat.max())
    scaled = heat / peak if peak > 0 else heat
    colours = colormaps["jet"](scaled)[..., :3]
    top, left, height, width = seen
    mask = np.zeros(heat.shape, dtype=bool)
    mask[top:top + height, left:left + width] = True
    blended = np.where(mask[..., None], 0.55 * photo[..., :3] + 0.45 * colours, 0.35 * photo)
    return np.clip(blended * 255.0, 0, 255).round().astype(np.uint8)


def overlays(classifier, items: list) -> list[np.ndarray | None]:
    """The heat map of each item's predicted output blended onto its photo (`blend`), for
    reports: None for an item that cannot be explained (unreadable), or for every item of a
    backbone without a spatial feature map."""
    from transferkit.data.images import load_image

    try:
        results = explain_images(classifier, items)
    except InputError:
        return [None] * len(items)
    return [None if "map" not in result else
            blend(load_image(item) if _is_path(item) else np.asarray(item), result["map"],
                  result["seen"]) for item, result in zip(items, results)]


def overlay(photo: np.ndarray, heat: np.ndarray, seen, path: str | os.PathLike,
            caption: str = "") -> Path:
    """Writes `photo` with `heat` drawn over it (`blend`) and `caption` above it, as a PNG.
    Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from transferkit.files import atomic_path

    figure, axis = plt.subplots(figsize=(max(3.0, photo.shape[1] / 100),
                                         max(3.0, photo.shape[0] / 100) + 0.4), dpi=100)
    axis.imshow(blend(photo, heat, seen))
    axis.set_axis_off()
    if caption:
        axis.set_title(caption, fontsize=9)
    figure.tight_layout()
    path = Path(path)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
    return path
