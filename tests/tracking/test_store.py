"""Where `track` points: the embedded default beside the runs folder, MLFLOW_TRACKING_URI, URIs
and paths (no MLflow import needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from transferkit.tracking.store import is_model_uri, tracking_uri


def test_the_default_store_is_mlflow_db_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert tracking_uri(None) == tracking_uri(True) == tracking_uri("") == expected
    assert expected.startswith("sqlite:////")  # an absolute path: resumed runs find it anywhere


def test_mlflow_tracking_uri_wins_over_the_default(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking_uri(True) == "http://127.0.0.1:5999"
    assert tracking_uri("sqlite:///other.db") == "sqlite:///other.db"  # an explicit URI wins


@pytest.mark.parametrize("given, expected", [
    ("store.db", "store.db"), ("folder", "folder/mlflow.db"),
])
def test_paths_are_sqlite_stores(tmp_path, given, expected):
    assert tracking_uri(tmp_path / given) == f"sqlite:///{(tmp_path / expected).resolve()}"


def test_model_uris_are_told_from_paths():
    assert is_model_uri("models:/faces@champion") and is_model_uri("runs:/0123/model")
    assert not is_model_uri("runs/images-20240501/model.keras")
    assert not is_model_uri(Path("models:/x"))
