"""Each epoch's random draws from `(phase, epoch)` alone, so that a resumed run is the same run.

`fit_phase` resumes an interrupted phase at epoch `k + 1` from the checkpoint of epoch `k` (the
weights, the optimizer's variables, early stopping's bookkeeping). For the resumed run to end with
the uninterrupted run's weights, bit for bit, epoch `k + 1` must also draw the same random
numbers. `EpochSeeds`, one of `fit_phase`'s callbacks, sees to both kinds before every epoch:

* the order of the training data: it calls the data's `set_epoch(epoch)`, when it has one
  (`transferkit.data.epoch_order`: epoch `e`'s order comes from `(seed, e)`);
* the random layers (`Dropout`, the augmentation layers, recurrent dropout): each draws from a
  `keras.random.SeedGenerator`, a variable `[seed, counter]` whose counter goes up by one with
  every draw. `model.save_weights` leaves it out, and in an uninterrupted process it holds all
  that came before: the earlier epochs, the head phase (whose `Dropout` layer fine-tuning
  shares), and the augmented views drawn for the feature cache (only for images the cache did
  not have yet). So instead of saving it, `EpochSeeds` sets every counter of the model to a
  value of `(phase, epoch)`, keeping each generator's own seed: epoch `e` of a phase draws the
  same numbers however the process got there.

Nothing else random runs inside an epoch: Keras's random ops are stateless, seeded only by these
generators, and the models' layers are built with seeds (`keras.utils.set_random_seed` before
each build), so a resumed process builds the same generators.
"""

from __future__ import annotations

import zlib

import keras
import numpy as np

__all__ = ["EpochSeeds", "seed_generators", "reseed"]

# Epoch `e` of a phase starts its counters at `e * _EPOCH_STRIDE` plus an offset of the phase's
# name: epochs of a phase never reuse draws while a generator draws fewer than 4 million times an
# epoch (one draw a step for `Dropout`). TensorFlow folds seeds into int32 (mod 2**31 - 2), so
# counters stay below that.
_EPOCH_STRIDE = 2**22
_COUNTER_RANGE = 2**31 - 2


def seed_generators(model) -> list:
    """The `keras.random.SeedGenerator`s of `model` and of every layer inside it."""
    from transferkit.layers import all_layers

    found: dict[int, object] = {}
    for layer in all_layers(model):
        for generator in getattr(layer, "_seed_generators", ()):
            found[id(generator)] = generator
    return list(found.values())


def counter(phase: str, epoch: int) -> int:
    """Where the counters of epoch `epoch` (from 0) of `phase` start."""
    offset = zlib.crc32(phase.encode("utf-8")) % _EPOCH_STRIDE
    return (int(epoch) * _EPOCH_STRIDE + offset) % _COUNTER_RANGE


def reseed(model, phase: str, epoch: int) -> None:
    """Sets the counter of every seed generator of `model` to `counter(phase, epoch)`."""
    start = counter(phase, epoch)
    for generator in seed_generators(model):
        state = generator.state
        seed = keras.ops.convert_to_numpy(state.value)[0]
        state.assign(np.asarray([seed, start], dtype=state.dtype))


class EpochSeeds(keras.callbacks.Callback):
    """Before each epoch: the training data's `set_epoch(epoch)` (if it has one), and `reseed`.

    Args:
        phase: the phase's name (`"head"`, `"fine_tune"`).
        train_data: what `model.fit` trains on.
    """

    def __init__(self, phase: str, train_data):
        super().__init__()
        self.phase = phase
        self.set_data_epoch = getattr(train_data, "set_epoch", None)

    def on_epoch_begin(self, epoch, logs=None):
        if callable(self.set_data_epoch):
            self.set_data_epoch(epoch)
        reseed(self.model, self.phase, epoch)
