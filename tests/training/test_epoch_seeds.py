"""Random layers draw epoch `e` of a phase from `(phase, e)`: their seed generators' counters are
set before each epoch, their own seeds kept."""

from __future__ import annotations

import keras
import numpy as np

from transferkit.training.epoch_seeds import counter, reseed, seed_generators


def _model():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5, seed=11)], name="inner")
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2)(keras.layers.Dropout(0.5, seed=5)(inner(inputs)))
    return keras.Model(inputs, outputs)


def _states(model):
    return [keras.ops.convert_to_numpy(g.state.value).tolist() for g in seed_generators(model)]


def test_reseed_sets_every_counter_of_nested_layers_and_keeps_the_seeds():
    model = _model()
    assert sorted(_states(model)) == [[5, 0], [11, 0]]
    x = np.ones((4, 3), "float32")
    model(x, training=True)  # draws: the counters move on
    assert sorted(_states(model)) == [[5, 1], [11, 1]]
    reseed(model, "fine_tune", 3)
    assert sorted(_states(model)) == [[5, counter("fine_tune", 3)], [11, counter("fine_tune", 3)]]
    first = np.asarray(model(x, training=True))
    reseed(model, "fine_tune", 3)
    assert np.array_equal(np.asarray(model(x, training=True)), first)  # the same draws again


def test_counters_differ_by_epoch_and_phase_and_fit_in_an_int32():
    starts = {counter(phase, epoch) for phase in ("head", "fine_tune") for epoch in range(500)}
    assert len(starts) == 1000 and all(0 <= start < 2**31 - 2 for start in starts)
    assert counter("head", 1) - counter("head", 0) == 2**22  # room for 4M draws an epoch
