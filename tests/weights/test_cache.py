"""Converted weights in the cache: written atomically, checked against a recorded sha256."""

from __future__ import annotations

import hashlib

from transferkit.weights.cache import cached, invalidate, is_valid, record_hash, recorded_hash


def test_cached_builds_once_and_rebuilds_what_no_longer_matches(tmp_path):
    target = tmp_path / "w" / "model.weights.h5"
    calls = []

    def build(temp):
        calls.append(temp)
        temp.write_bytes(b"converted")

    assert cached(target, build) == target and len(calls) == 1
    assert calls[0].name.startswith(".model.weights.h5.tmp-")  # written beside, then renamed
    assert recorded_hash(target) == hashlib.sha256(b"converted").hexdigest() and is_valid(target)
    cached(target, build)
    assert len(calls) == 1  # valid: not built again
    target.write_bytes(b"damaged")
    assert not is_valid(target)
    cached(target, build)
    assert len(calls) == 2 and target.read_bytes() == b"converted"
    invalidate(target)
    assert recorded_hash(target) is None and not is_valid(target)
    assert record_hash(target) == recorded_hash(target)
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "model.weights.h5", "model.weights.h5.sha256"
    ]


def test_packaged_files_are_checked_against_their_pinned_hashes(tmp_path):
    import pytest

    from transferkit.errors import WeightsError
    from transferkit.weights.cache import check_packaged_files

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "v.npy").write_bytes(b"vectors")
    good = hashlib.sha256(b"vectors").hexdigest()
    check_packaged_files(tmp_path, {"data/v.npy": good}, "toy", "toy-pkg==1.0")
    with pytest.raises(WeightsError, match=r"v\.npy: sha256 [0-9a-f]{12}\.\.\. does not match the "
                                           r"expected 000000000000\.\.\. for toy\. Reinstall it: "
                                           r"pip install --force-reinstall toy-pkg==1\.0"):
        check_packaged_files(tmp_path, {"data/v.npy": "0" * 64}, "toy", "toy-pkg==1.0")
