"""Shuffled training data in an order drawn from `(seed, epoch)` alone, so that a resumed run
sees the uninterrupted run's batches."""

from __future__ import annotations

import numpy as np

from transferkit.data.epoch_order import EpochOrder


def _passes(dataset, count):
    return [[int(v) for v in np.concatenate([np.asarray(b) for b in dataset])]
            for _ in range(count)]


def test_each_pass_is_a_new_order_and_set_epoch_replays_any_epoch():
    order = EpochOrder(12, seed=3)
    dataset = order.attach(order.slices(np.arange(12)).batch(5))
    first = _passes(dataset, 3)  # a plain model.fit: the epoch advances with each pass
    assert all(sorted(p) == list(range(12)) for p in first)
    assert first[0] != first[1] != first[2]
    # A new process resumed at epoch 2 (a new order object): epoch 2's order, not epoch 0's.
    again = EpochOrder(12, seed=3)
    resumed = again.attach(again.slices(np.arange(12)).batch(5))
    resumed.set_epoch(2)
    assert _passes(resumed, 1) == [first[2]]
    dataset.set_epoch(1)
    assert _passes(dataset, 1) == [first[1]]
    other = EpochOrder(12, seed=4)
    assert _passes(other.slices(np.arange(12)).batch(12), 1) != [first[0]]


def test_slices_keep_the_parts_of_an_element_together():
    order = EpochOrder(6, seed=0)
    x, y = np.arange(6) * 10, np.arange(6)
    pairs = [(int(a), int(b)) for a, b in order.slices((x, y))]
    assert sorted(pairs) == [(i * 10, i) for i in range(6)]
    assert order.slices((x, y)).cardinality() == 6  # Keras knows an epoch's length


def test_batches_are_the_batches_of_slices_take_batch_epoch_by_epoch():
    x = np.arange(30, dtype="float32").reshape(15, 2)
    y = np.arange(15)
    for take, drop in ((None, False), (11, False), (11, True)):
        sliced = EpochOrder(15, seed=5)
        reference = sliced.slices((x, y))
        reference = (reference if take is None else reference.take(take)).batch(
            4, drop_remainder=drop)
        gathered = EpochOrder(15, seed=5)
        batches = gathered.attach(gathered.batches((x, y), 4, take=take, drop_remainder=drop))
        assert int(batches.cardinality()) == len(list(reference))  # its first pass: epoch 0
        sliced.set_epoch(0)
        for epoch in range(3):
            want = [(np.asarray(a), np.asarray(b)) for a, b in reference]
            got = [(np.asarray(a), np.asarray(b)) for a, b in batches]
            assert [b.tolist() for _, b in got] == [b.tolist() for _, b in want], (take, epoch)
            assert all(np.array_equal(a, w) for (a, _), (w, _) in zip(got, want, strict=True))
        batches.set_epoch(1)  # a resumed run replays any epoch
        sliced.set_epoch(1)
        assert [np.asarray(b).tolist() for _, b in batches] == \
            [np.asarray(b).tolist() for _, b in reference]
