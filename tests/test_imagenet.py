"""ImageNet class names for mode 1 (predict directly)."""

from __future__ import annotations


def test_imagenet_class_names_are_distinct_and_readable():
    from transferkit.imagenet import imagenet_class_names

    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[282] == "tiger cat" and names[967] == "espresso"
    assert names[134] != names[517]  # the bird and the machine are both "crane" in WordNet
