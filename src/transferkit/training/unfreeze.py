"""Which layers fine-tuning trains: all of a backbone, its top N layers, or all from a named layer.

`unfreeze_layers` sets them; `check_unfreeze_layers` only says whether a choice fits a model (a
layer name it has), so that a run checks it once the model is built, before features, training
and the run folder, instead of failing after the head phase.
"""

from __future__ import annotations

from transferkit.checks import check_unfreeze
from transferkit.config import ImageTrainConfig
from transferkit.errors import InputError

__all__ = ["backbone_architecture", "check_unfreeze_layers", "unfreeze_layers"]


def backbone_architecture(network):
    """The backbone architecture inside an image classifier's Keras `network`: the nested model
    whose layers `unfreeze` counts (the `"backbone"` wrapper holds its preprocessing too)."""
    wrapper = network.get_layer("backbone").layer
    return next(layer for layer in wrapper.layers if hasattr(layer, "layers"))


def _layers(model) -> list:
    return [layer for layer in model.layers if layer.__class__.__name__ != "InputLayer"]


def _first_trainable(model, layers: list, unfreeze) -> int:
    """The index in `layers` from which `unfreeze` trains (see `unfreeze_layers`)."""
    import difflib

    choice = check_unfreeze(unfreeze)
    if choice == "all":
        return 0
    if isinstance(choice, int):
        return max(0, len(layers) - choice)
    names = [layer.name for layer in layers]
    if choice not in names:
        close = difflib.get_close_matches(choice, names, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise InputError(
            f"`unfreeze` names no layer of {model.name}: {choice!r}.{hint} Pass 'all', a "
            f"number of top layers (1-{len(layers)}), or one of its {len(layers)} layer names."
        )
    return names.index(choice)


def check_unfreeze_layers(model, unfreeze=ImageTrainConfig.unfreeze) -> int:
    """How many of `model`'s layers `unfreeze` would train; changes nothing.

    Raises:
        InputError: a layer name the model does not have (the message offers the nearest ones).
    """
    layers = _layers(model)
    return len(layers) - _first_trainable(model, layers, unfreeze)


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
    layers = _layers(model)
    start = _first_trainable(model, layers, unfreeze)
    model.trainable = True
    # Every layer explicitly: a functional model's `trainable` setter does not reach them all.
    for index, layer in enumerate(layers):
        layer.trainable = index >= start
    return len(layers) - start
