"""Class activation maps from a feature map and the gradient of a score with respect to it.

`activations` and `gradients` are `(n, h, w, c)`: the encoder's last spatial feature map and
d(score)/d(map), the score being the explained output's logit. Each method weighs the `c` channels
and sums them into an `(n, h, w)` map, negative evidence clipped (ReLU), not scaled:

* `gradcam` (Selvaraju et al. 2017): a channel's weight is its gradient averaged over the map;
* `gradcam++` (Chattopadhay et al. 2018): pixel-wise weights from second and third powers of the
  gradient (the closed form for an exponential score), which share a map between several
  instances of a class better;
* `layercam` (Jiang et al. 2021): each pixel weighted by its own positive gradient.

The formulas are those of pytorch-grad-cam 1.5.7 (`grad_cam.py`, `grad_cam_plusplus.py`,
`layer_cam.py`), so the maps can be compared one to one with an independent implementation
(Captum's `LayerGradCam` for Grad-CAM: tests/explain). Written here because no maintained
library computes them for Keras 3 models on every backend (tf-keras-vis works on TensorFlow only
and silently moves to the penultimate layer; xplique pins older TensorFlow and SciPy).
"""

from __future__ import annotations

import numpy as np

__all__ = ["METHODS", "class_activation_maps"]

#: The map methods, in the order `--method` lists them; the first is the default.
METHODS = ("gradcam", "gradcam++", "layercam")
_EPSILON = 1e-7


def _gradcam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    weights = gradients.mean(axis=(1, 2), keepdims=True)
    return (weights * activations).sum(axis=-1)


def _gradcam_plus_plus(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    squared = gradients ** 2
    cubed = squared * gradients
    total = activations.sum(axis=(1, 2), keepdims=True)
    alpha = squared / (2 * squared + total * cubed + _EPSILON)
    alpha = np.where(gradients != 0, alpha, 0.0)
    weights = (np.maximum(gradients, 0) * alpha).sum(axis=(1, 2), keepdims=True)
    return (weights * activations).sum(axis=-1)


def _layercam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    return (np.maximum(gradients, 0) * activations).sum(axis=-1)


_METHODS = {"gradcam": _gradcam, "gradcam++": _gradcam_plus_plus, "layercam": _layercam}


def class_activation_maps(activations, gradients, method: str = METHODS[0]) -> np.ndarray:
    """The `(n, h, w)` maps of `method` (one of `METHODS`), ReLU applied, unscaled."""
    activations = np.asarray(activations, dtype=np.float64)
    gradients = np.asarray(gradients, dtype=np.float64)
    return np.maximum(_METHODS[method](activations, gradients), 0.0)
