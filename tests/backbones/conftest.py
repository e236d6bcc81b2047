"""Fixtures of the backbone tests: a fresh Keras session each, an empty Keras cache, no network."""

from __future__ import annotations

import socket

import keras
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    # Fresh layer names for each test. Without Keras's default `gc.collect()` (free_memory), which
    # took 0.3-0.5 s a call in a full run's heap, twice a test: 160 s of the suite. Python's own
    # collector still frees the models of earlier tests.
    keras.backend.clear_session(free_memory=False)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache, so that no test sees or fills the user's `~/.keras`."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    (tmp_path / "keras-home").mkdir()
    return tmp_path / "keras-home"


@pytest.fixture
def no_network(monkeypatch):
    """Routes HTTP(S) through a proxy port where nothing listens: downloads fail at once, online or
    not, through the same urllib code that Keras's downloader uses."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{port}")
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)


