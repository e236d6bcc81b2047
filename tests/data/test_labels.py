"""Labels and splits, shared by images and texts: class names, int labels, stratified splits."""

from __future__ import annotations

import numpy as np
import pytest

from transferkit.data.labels import encode_labels, sort_class_names, stratified_split
from transferkit.errors import DataError, InputError


def test_class_names_sort_numbers_numerically():
    assert sort_class_names(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert sort_class_names(["pos", "neg", "neutral"]) == ["neg", "neutral", "pos"]


def test_stratified_split_is_seeded_stratified_and_complete():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    splits = stratified_split(labels, {"test": 0.2, "validation": 0.1}, seed=3)
    everything = np.concatenate(list(splits.values()))
    assert sorted(everything.tolist()) == list(range(100))  # each index exactly once
    labels = np.array(labels)
    for name, share in (("test", 0.2), ("validation", 0.1)):
        for cls, count in (("a", 50), ("b", 30), ("c", 20)):
            assert (labels[splits[name]] == cls).sum() == round(count * share)
    again = stratified_split(labels, {"test": 0.2, "validation": 0.1}, seed=3)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = stratified_split(labels, {"test": 0.2, "validation": 0.1}, seed=4)
    assert not np.array_equal(splits["test"], other["test"])


def test_tiny_classes_still_reach_every_split():
    splits = stratified_split(["a"] * 3 + ["b"] * 40, {"test": 0.2, "validation": 0.1}, seed=0,
                              min_per_split=True)
    labels = np.array(["a"] * 3 + ["b"] * 40)
    assert all((labels[idx] == "a").sum() == 1 for idx in splits.values())


def test_split_errors_name_the_classes():
    sizes = {"test": 0.2, "validation": 0.1}
    with pytest.raises(DataError, match=r"only one class \('pos'\) after dropping unusable rows"):
        stratified_split(["pos"] * 10, sizes, 0, min_per_split=True)
    with pytest.raises(
        DataError,
        match=r"Classes too rare to split: 'b' \(2 examples\), 'c' \(1 example\)\. "
        r"Each class needs at least 3 examples",
    ):
        stratified_split(["a"] * 10 + ["b"] * 2 + ["c"], sizes, 0, min_per_split=True)
    with pytest.raises(
        InputError,
        match=r"`test_size` must be a number in \(0, 1\)\. Received: test_size=1\.5",
    ):
        stratified_split(["a", "b"] * 5, {"test": 1.5}, 0)
    with pytest.raises(InputError, match=r"held-out shares must add up to less than 1.*"
                                         r"Received: test_size=0\.6, validation_size=0\.5"):
        stratified_split(["a", "b"] * 5, {"test": 0.6, "validation": 0.5}, 0)


def test_without_min_per_split_a_single_example_stays_for_training():
    splits = stratified_split(["a"] + ["b"] * 9, {"validation": 0.2}, seed=0)
    assert 0 in splits["train"] and len(splits["validation"]) == 2


def test_identical_files_stay_on_one_side():
    labels = [0] * 6
    groups = ["x", "x", "x", "y", "z", "w"]  # three copies of one file
    splits = stratified_split(labels, {"validation": 0.5}, seed=0, groups=groups)
    copies = {0, 1, 2}
    assert copies <= set(splits["train"].tolist()) or copies <= set(splits["validation"].tolist())
    only = stratified_split([0] * 4, {"validation": 0.5}, seed=0, groups=["x"] * 4)
    assert len(only["train"]) == 4  # one file in four copies: kept for training


def test_labels_become_indices_of_sorted_class_names():
    ints, names = encode_labels(["pos", "neg", "pos"])
    assert names == ["neg", "pos"] and ints.tolist() == [1, 0, 1] and ints.dtype == np.int64
    assert encode_labels([5, 1, 5])[1] == ["1", "5"]  # values, sorted numerically
    ints, names = encode_labels([1, 0, 2], class_names=["cat", "dog", "owl"])
    assert ints.tolist() == [1, 0, 2] and names == ["cat", "dog", "owl"]  # ints: indices
    assert encode_labels(["dog"], class_names=["cat", "dog"])[0].tolist() == [1]
    with pytest.raises(DataError, match=r"Labels not among the classes \['cat', 'dog'\]: \['owl'\]"):
        encode_labels(["owl"], class_names=["cat", "dog"])
    with pytest.raises(DataError, match=r"must be in \[0, 1\] for the 2 classes"):
        encode_labels([0, 2], class_names=["cat", "dog"])
