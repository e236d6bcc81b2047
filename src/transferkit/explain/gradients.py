"""The gradient of a weighted sum of a model's outputs with respect to its input, on whichever
backend Keras runs (TensorFlow's `GradientTape`, `jax.grad`, torch's autograd): what the class
activation maps (`transferkit.explain.cams`) weigh the feature map with."""

from __future__ import annotations

import numpy as np

__all__ = ["function_gradients", "output_gradients"]


def output_gradients(model, inputs: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(outputs, d sum(outputs * weights) / d inputs)` of `model` at `inputs`, in inference mode.

    Args:
        model: a Keras model (here: feature map -> logits).
        inputs: `(n, ...)` float32.
        weights: `(n, outputs)`: which output of each row is explained, and with which sign
            (a one-hot row, or -1 for class 0 of a one-logit binary head).
    """
    return function_gradients(lambda x: model(x, training=False), inputs, weights)


def function_gradients(function, inputs: np.ndarray,
                       weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(outputs, d sum(outputs * weights) / d inputs)` of `function` (backend tensor in,
    backend tensor `(n, outputs)` out) at `inputs`, as `output_gradients`."""
    import keras

    inputs = np.asarray(inputs, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = function(x)
            score = tf.reduce_sum(outputs * weights)
        return np.asarray(outputs), np.asarray(tape.gradient(score, x))
    if backend == "jax":
        import jax

        def score(x):
            outputs = function(x)
            return (outputs * weights).sum(), outputs

        gradients, outputs = jax.grad(score, has_aux=True)(inputs)
        return np.asarray(outputs), np.asarray(gradients)
    if backend == "torch":
        import torch

        x = torch.tensor(inputs, requires_grad=True)
        outputs = function(x)
        (outputs * torch.as_tensor(weights)).sum().backward()
        return outputs.detach().cpu().numpy(), x.grad.cpu().numpy()
    from transferkit.errors import InputError

    raise InputError(
        f"Explanations need gradients, which transferkit takes on TensorFlow, JAX or torch; "
        f"Keras runs on {backend!r}. Set KERAS_BACKEND=tensorflow."
    )
