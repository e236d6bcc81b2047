"""`ModelRef`: what a model argument names, resolved once, at the door.

Every command and public function that takes a trained model (`load`, `load_predictor`, the batch
`predict`/`embed`, `export`, `register`, `serve`, `predict`, `trust`) accepts the same things: a
`.keras` file, a run folder (its `model.keras`), an export folder (`transferkit export`'s, with
`input.json`) or an MLflow URI (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/ID/model`).
`ModelRef.resolve(x)` decides which, once (an MLflow URI is asked of MLflow once: a check and a
load can then never see two versions while an alias moves), and the object goes down the call:

    ref = ModelRef.resolve("models:/pets@champion")
    ref.kind, ref.keras_file, ref.run, ref.uri     # what it is, where the file is
    ref.config, ref.task, ref.class_names           # from the archive's config.json, read once
    ref.sha256, ref.graph_digests                   # hashed / walked once

Like KerasHub's `PresetLoader(preset, config)` and httpx's "build the request, send it as is":
whoever gets a `ModelRef` neither re-derives nor re-reads what it already knows. Imports no Keras
(a Ray driver that only hands a model on starts fast).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from transferkit.errors import InputError
from transferkit.run_folder import RunFolder

__all__ = ["ModelRef"]

KINDS = ("keras", "run", "export", "mlflow")


class ModelRef:
    """A resolved model reference (see the module docstring). Make one with `resolve`.

    Attributes:
        given: what the user passed, as text (for messages).
        kind: `"keras"` (a `.keras` file), `"run"` (a run folder), `"export"` (an export folder)
            or `"mlflow"` (a model in MLflow, downloaded into the transferkit cache).
        keras_file: the `.keras` file (`None` for an export folder).
        run: the `RunFolder` the file belongs to, or `None`.
        export_folder: the export folder (kind `"export"`), or `None`.
        uri: the MLflow URI (kind `"mlflow"`), or `None`.
    """

    def __init__(self, given: str, kind: str, keras_file: Path | None = None,
                 run: RunFolder | None = None, export_folder: Path | None = None,
                 uri: str | None = None):
        self.given = given
        self.kind = kind
        self.keras_file = keras_file
        self.run = run
        self.export_folder = export_folder
        self.uri = uri

    def __repr__(self) -> str:
        return f"ModelRef({self.given!r}, kind={self.kind!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.export_folder if self.kind == "export" else self.model_path)

    @classmethod
    def resolve(cls, model, track: str | None = None) -> ModelRef:
        """What `model` names: a `ModelRef` (returned as it is), a `.keras` file, a run folder,
        an export folder, or an MLflow URI (asked of MLflow now, once; `track` is the tracking
        URI, default `$MLFLOW_TRACKING_URI` or the embedded store).

        Raises:
            InputError: nothing there, or an MLflow model that does not exist.
        """
        if isinstance(model, ModelRef):
            return model
        from transferkit.tracking import store

        if store.is_model_uri(model):
            keras_file = store.model_file(model, track)
            return cls(model, "mlflow", keras_file=keras_file, uri=model)
        given = os.fspath(model)
        path = Path(given)
        if path.is_dir():
            if (path / "input.json").is_file():
                return cls(given, "export", export_folder=path)
            run = RunFolder(path)
            if run.model_path.is_file():
                return cls(given, "run", keras_file=run.model_path, run=run)
        elif path.is_file():
            return cls(given, "keras", keras_file=path, run=RunFolder.of_model(path))
        return cls(given, "missing")

    @property
    def model_path(self) -> Path:
        """The `.keras` file.

        Raises:
            InputError: there is none (nothing at the path, or an export folder).
        """
        if self.keras_file is None:
            raise InputError(
                f"{self.given}: no such model file. Pass the `.keras` file (or the run folder) "
                "written by `transferkit train`, or a registered model as models:/NAME@ALIAS."
            )
        return self.keras_file

    @functools.cached_property
    def config(self) -> dict:
        """The archive's `config.json` (read once; `InputError` says what the file is instead)."""
        from transferkit.model_files import read_config

        return read_config(self.model_path)

    @functools.cached_property
    def labels(self) -> dict:
        """The config of the model's `ClassLabels` layer (task, class names, metadata).

        Raises:
            InputError: the file is no transferkit classifier.
        """
        from transferkit.model_files import keras_objects

        for node in keras_objects(self.config):
            if node.get("class_name") == "ClassLabels" and "task" in (node.get("config") or {}):
                return node["config"]
        raise InputError(
            f"{self.model_path}: not a transferkit classifier (it has no ClassLabels layer).")

    @property
    def task(self) -> str:
        """`"image"` or `"text"`."""
        return self.labels["task"]

    @property
    def class_names(self) -> list[str]:
        return list(self.labels["class_names"])

    @property
    def train_config(self) -> dict:
        """The classifier's constructor arguments as saved (`Classifier.get_config()`)."""
        return dict((self.labels.get("metadata") or {}).get("config") or {})

    @functools.cached_property
    def graph_digests(self) -> list[str]:
        """The digests of the SavedModel graphs the file carries (`transferkit.trusted_graphs`)."""
        from transferkit.model_files import keras_objects

        return [str((node.get("config") or {}).get("digest", ""))
                for node in keras_objects(self.config)
                if str(node.get("registered_name", "")).endswith("SavedModelFeatures")]

    @functools.cached_property
    def uses_keras_hub(self) -> bool:
        """Whether the file holds KerasHub layers (then KerasHub must be importable)."""
        import json

        return "keras_hub" in json.dumps(self.config)

    @functools.cached_property
    def sha256(self) -> str:
        """The `.keras` file's sha256 (hashed once)."""
        from transferkit.files import sha256_file

        return sha256_file(self.model_path)
