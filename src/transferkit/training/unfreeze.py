"""Which layers fine-tuning trains: all of a backbone, its top N layers, or all from a named layer."""

from __future__ import annotations

from transferkit.checks import check_unfreeze
from transferkit.config import ImageTrainConfig
from transferkit.errors import InputError

__all__ = ["unfreeze_layers"]


def unfreeze_layers(model, unfreeze=ImageTrainConfig.unfreeze) -> int:
    """Makes `model`'s layers trainable from the chosen one up; the ones below stay frozen.

    Args:
        model: a Keras model (a backbone architecture); its input layer does not count.
        unfreeze: as `transferkit.checks.check_unfreeze`. Default `ImageTrainConfig.unfreeze` (`"all"`).

    Returns:
        The number of trainable layers.

    Raises:
        InputError: a layer name the model does not have (the message offers the nearest ones).
    """
    import difflib

    choice = check_unfreeze(unfreeze)
    layers = [layer for layer in model.layers if layer.__class__.__name__ != "InputLayer"]
    model.trainable = True
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
                f"`unfreeze` names no layer of {model.name}: {choice!r}.{hint} Pass 'all', a "
                f"number of top layers (1-{len(layers)}), or one of its {len(layers)} layer names."
            )
        start = names.index(choice)
    # Every layer explicitly: a functional model's `trainable` setter does not reach them all.
    for index, layer in enumerate(layers):
        layer.trainable = index >= start
    return len(layers) - start
