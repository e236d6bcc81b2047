"""`FeatureCache`: arrays on disk under content keys; a damaged file is a miss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transferkit.errors import InputError
from transferkit.training.feature_cache import FeatureCache


def test_feature_cache_keys():
    key = FeatureCache.key(backbone="b", size=224, files=["a", "b"])
    assert key == FeatureCache.key(files=["a", "b"], size=224, backbone="b")
    assert key != FeatureCache.key(backbone="b", size=225, files=["a", "b"])
    assert key != FeatureCache.key(backbone="b", size=224, files=["b", "a"])
    assert len(key) == 64 and set(key) <= set("0123456789abcdef")  # a sha256 in hex
    assert FeatureCache.key(a=np.arange(3)) != FeatureCache.key(a=np.arange(4))
    assert FeatureCache.key(p=Path("x")) == FeatureCache.key(p="x")
    with pytest.raises(InputError, match="key parts must be JSON data"):
        FeatureCache.key(a=object())
    with pytest.raises(InputError, match="needs at least one part"):
        FeatureCache.key()


def test_feature_cache_put_get(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    key = cache.key(name="x")
    assert cache.get(key) is None and key not in cache
    features = np.arange(12, dtype="float32").reshape(3, 4)
    path = cache.put(key, features)
    assert path == cache.path(key) == tmp_path / "cache" / f"{key}.npy"
    assert key in cache
    np.testing.assert_array_equal(cache.get(key), features)
    assert cache.get(key).dtype == np.float32
    with pytest.raises(InputError, match="numeric arrays only"):
        cache.put(key, np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="A cache key must be letters"):
        cache.path("../escape")


def test_a_truncated_cache_file_is_a_miss_and_is_replaced(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key(name="x")
    features = np.random.default_rng(0).normal(size=(50, 8)).astype("float32")
    path = cache.put(key, features)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert key not in cache  # checked from the header and the file size
    assert cache.get(key) is None
    assert not path.exists()
    cache.put(key, features)
    np.testing.assert_array_equal(cache.get(key), features)
    path.write_bytes(b"garbage")
    assert key not in cache
