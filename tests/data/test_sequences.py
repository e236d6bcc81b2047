"""Token sequences in length-sorted, trimmed batches: what makes text training fast on a CPU."""

from __future__ import annotations

from itertools import pairwise

import keras
import numpy as np

from transferkit.data.sequences import (
    length_sorted_batches,
    padded_batches,
    predict_padded,
    sequence_lengths,
)


def test_length_sorted_batches_cover_every_index_once():
    lengths = np.random.default_rng(0).integers(1, 60, size=1000)
    for shuffle in (False, True):
        batches = length_sorted_batches(lengths, 32, shuffle=shuffle, seed=1)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1000))
        # similar lengths together: little padding
        waste = sum(lengths[b].max() * len(b) - lengths[b].sum() for b in batches) / lengths.sum()
        assert waste < 0.1
    sorted_batches = length_sorted_batches(lengths, 32)
    assert all(lengths[a].max() <= lengths[b].min() for a, b in pairwise(sorted_batches))


def _ragged(lengths, width=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), width), np.int32)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(1, 50, length)
    return ids


def test_lengths_come_from_the_mask_or_the_non_zero_ids():
    ids = _ragged([3, 0, 12])
    assert sequence_lengths({"token_ids": ids}).tolist() == [3, 0, 12]
    mask = (ids != 0).astype(np.int32)
    ids[mask == 0] = 7  # a tokenizer whose padding id is not 0
    assert sequence_lengths({"token_ids": ids, "padding_mask": mask}).tolist() == [3, 0, 12]


def test_predictions_in_trimmed_batches_equal_the_full_width_ones():
    lengths = [5, 1, 12, 3, 0, 8, 8, 2]
    ids = _ragged(lengths)
    inputs = keras.Input((None,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(50, 4, mask_zero=True)(inputs)
    model = keras.Model({"token_ids": inputs}, keras.layers.LSTM(3)(x))
    seen = []
    trimmed = predict_padded(model, {"token_ids": ids}, batch_size=3,
                             progress=lambda done, total: seen.append((done, total)))
    full = model.predict({"token_ids": ids}, verbose=0)
    np.testing.assert_allclose(trimmed, full, atol=1e-6)
    assert seen[-1] == (8, 8) and len(seen) == 3
    assert predict_padded(model, {"token_ids": ids[:0]}, batch_size=3).shape == (0, 3)


def test_training_batches_are_trimmed_and_keep_their_targets():
    ids = _ragged([2, 9, 4, 4, 1])
    targets = np.arange(5)
    dataset = padded_batches({"token_ids": ids}, 2, targets=targets)
    seen = {}
    for x, y in dataset:
        x, y = np.asarray(x["token_ids"]), np.asarray(y)
        assert x.shape[1] == max(1, (x != 0).sum(axis=1).max())  # cut to the batch's longest
        for row, target in zip(x, y):
            seen[int(target)] = row[row != 0].tolist()
    assert seen == {i: ids[i][ids[i] != 0].tolist() for i in range(5)}


def test_shuffled_batches_of_an_epoch_come_from_the_seed_and_the_epoch():
    ids = _ragged(list(range(1, 13)) * 4)
    targets = np.arange(len(ids))

    def epoch_targets(dataset):
        return [int(v) for _, y in dataset for v in np.asarray(y)]

    dataset = padded_batches({"token_ids": ids}, 4, targets=targets, shuffle=True, seed=1)
    passes = [epoch_targets(dataset) for _ in range(3)]
    assert passes[0] != passes[1] != passes[2]
    # A resumed process: a new dataset set to epoch 2 gives epoch 2's batches, not epoch 0's.
    resumed = padded_batches({"token_ids": ids}, 4, targets=targets, shuffle=True, seed=1)
    resumed.set_epoch(2)
    assert epoch_targets(resumed) == passes[2]
