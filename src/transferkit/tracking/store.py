"""Where runs are remembered: MLflow tracking URIs, experiments, and registered models as files.

```
tracking_uri(track)      True/None -> $MLFLOW_TRACKING_URI, else the embedded store
                         sqlite:///<working folder>/mlflow.db (MLflow's own default, beside runs/);
                         a URI is kept; a path is a SQLite file (or a folder holding mlflow.db)
client(uri)              an MlflowClient for tracking and registry (mlflow imported here)
experiment_id(...)       an experiment by name, created on first use (local stores: artifacts in
                         mlartifacts/<name>/ beside the database, as `mlflow server` would put them)
model_file(uri)          models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/model -> the .keras
                         file of that model, downloaded once into the transferkit cache
```

mlflow is the optional extra `transferkit[tracking]`; nothing here imports it until it is used.
A server that went away must not hold a run up for minutes (MLflow retries 7 times with
exponential back-off by default), so unless the user set them, requests are retried twice with a
20 s timeout. A local store (SQLite file, `file://` folder) that cannot be written is said at
once by `check_store` (MLflow would retry opening the database for about 100 s, warning ten
times), and a URI of no scheme MLflow knows, from `track` or `$MLFLOW_TRACKING_URI`, is one
line naming where it came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from transferkit.errors import InputError, TrackingError

__all__ = [
    "MODEL_URI_PREFIXES",
    "check_store",
    "tracking_uri",
    "describe",
    "client",
    "experiment_id",
    "is_model_uri",
    "model_file",
    "talking_to",
    "ui_command",
]

MODEL_URI_PREFIXES = ("models:/", "runs:/")
DEFAULT_STORE = "mlflow.db"
ARTIFACTS_FOLDER = "mlartifacts"

_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: The tracking stores MLflow itself knows (`postgresql+psycopg2` is `postgresql`); plugins add
#: theirs as `mlflow.tracking_store` entry points.
_STORE_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file",
                  "databricks", "databricks-uc", "uc")
_URI_EXAMPLES = "a server (http://127.0.0.1:5000) or a database (sqlite:////abs/path/mlflow.db)"
_SQLITE_HEADER = b"SQLite format 3\0"


def is_model_uri(value) -> bool:
    """Whether `value` names a model in MLflow (`models:/...`, `runs:/...`) rather than a path."""
    return isinstance(value, str) and value.startswith(MODEL_URI_PREFIXES)


def tracking_uri(track: str | os.PathLike | bool | None = None) -> str:
    """The tracking URI that `track` stands for.

    Args:
        track: `None`, `True` or `""`: `$MLFLOW_TRACKING_URI` if set, else the embedded store
            `sqlite:///<working folder>/mlflow.db`. A URI (`http://127.0.0.1:5000`,
            `sqlite:///x.db`) is used as given; a path is a SQLite file, or a folder that holds
            (or will hold) `mlflow.db`.
    """
    if track is None or track is True or track == "":
        environment = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
        if environment:
            return _check_scheme(environment, "MLFLOW_TRACKING_URI")
        return _sqlite(Path.cwd() / DEFAULT_STORE)
    if track is False:
        raise InputError("`track` is False: there is no tracking URI. Pass True or a URI.")
    text = os.fspath(track)
    if _scheme(text):
        return _check_scheme(text, "`track`")
    path = Path(text).expanduser()
    return _sqlite(path if path.suffix == ".db" else path / DEFAULT_STORE)


def _scheme(text: str) -> str:
    """The URI scheme of `text` in lower case (`postgresql+psycopg2:` -> `postgresql`), or `""`
    for a path (`C:\\runs` on Windows included)."""
    match = _SCHEME.match(text)
    if not match or re.match(r"^[A-Za-z]:[\\/]", text):
        return ""
    return match.group(0)[:-1].lower().split("+", 1)[0]


def _check_scheme(uri: str, source: str) -> str:
    """`uri` if MLflow has a tracking store for its scheme; else one error naming `source` (the
    environment variable or the argument it came from)."""
    scheme = _scheme(uri)
    if scheme in _STORE_SCHEMES:
        return uri
    if not scheme and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true"):
        return uri  # MLflow's own reading of a path: a file store folder, allowed by its user
    from importlib.metadata import entry_points

    if scheme and scheme in {e.name for e in entry_points(group="mlflow.tracking_store")}:
        return uri
    shown = uri if len(uri) <= 80 else uri[:77] + "..."
    why = f"MLflow has no {scheme + ':'!r} store" if scheme else "it has no scheme such as http:"
    fix = "or unset it to use ./mlflow.db" if source.isupper() else "or a folder or .db path"
    raise InputError(
        f"{source} is {shown!r}, not a tracking URI ({why}). Use {_URI_EXAMPLES}, {fix}."
    )


def _sqlite(path: Path) -> str:
    return "sqlite:///" + path.resolve().as_posix()  # sqlite:////abs/path/mlflow.db


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):]).resolve()


def describe(uri: str) -> str:
    """The store in words for messages: its file for SQLite, else the URI."""
    local = _local_store(uri)
    if local is not None:
        return f"the MLflow store {local[1] or local[0]}"
    return f"the MLflow server {uri}"


def ui_command(uri: str) -> str:
    """The command that shows the store's runs in MLflow's web page."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"


def _mlflow(purpose: str):
    from transferkit.extras import require

    mlflow = require("mlflow", purpose)
    for name, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # One-off notices ("Creating initial MLflow database tables...") would bury our lines, and
    # MLflow's Keras flavour warns about its own `Any` type hints on every model it saves.
    for name in ("mlflow.store.db.utils", "mlflow.store.model_registry", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType",
                            category=UserWarning)
    return mlflow


def client(uri: str, purpose: str = "Tracking runs with MLflow"):
    """An `MlflowClient` on `uri` for both tracking and the model registry.

    Raises:
        MissingDependencyError: mlflow is not installed (the message has the pip line).
        TrackingError: a local store that cannot be written (`check_store`), or a store MLflow
            cannot open (one line naming it).
    """
    mlflow = _mlflow(purpose)
    check_store(uri)
    with talking_to(uri):
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _local_store(uri: str) -> tuple[Path, Path] | None:
    """`(folder, database file or None)` of a local store: a `sqlite:///` file or a `file://`
    folder; None for a server, an in-memory database, or another scheme."""
    database = _sqlite_path(uri)
    if database is not None and not uri.endswith(":memory:"):
        return database.parent, database
    if _scheme(uri) == "file":
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(uri).path)).resolve(), None
    return None


def check_store(uri: str) -> None:
    """Raises one `TrackingError` at once when `uri` is a local store that cannot be used: its
    folder is under a file, or not writable, or the database is a folder or not SQLite. MLflow
    makes missing folders itself; a server is not checked here (it answers for itself).

    Raises:
        TrackingError: naming the store, what is wrong, and the fix.
    """
    local = _local_store(uri)
    if local is None:
        return
    folder, database = local
    problem = _folder_problem(folder)
    if problem is None and database is not None:
        problem = _database_problem(database)
    if problem is not None:
        raise TrackingError(
            f"{describe(uri)} cannot be used: {problem}. Pass `track` another store (a folder or "
            ".db file you can write to, or a URI), or leave out `track`."
        )


def _folder_problem(folder: Path) -> str | None:
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent  # MLflow makes the missing folders below it
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"no permission to write in {existing}"
    return None


def _database_problem(database: Path) -> str | None:
    if not os.path.lexists(database):
        return None
    if database.is_dir():
        return f"{database} is a folder, not a database file"
    if not os.access(database, os.R_OK | os.W_OK):
        return f"no permission to read and write {database}"
    try:
        with open(database, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        return f"{database} cannot be read ({exc.strerror or exc})"
    if header and header != _SQLITE_HEADER:
        return f"{database} is not an SQLite database"
    return None


@contextlib.contextmanager
def talking_to(uri: str) -> Iterator[None]:
    """Turns MLflow's and the network's errors inside the block into one `TrackingError` that
    names the store."""
    try:
        yield
    except (InputError, TrackingError):
        raise
    except Exception as exc:  # MlflowException, requests' and SQLAlchemy's errors alike
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"{describe(uri)}: {message[:400]}") from exc


def experiment_id(mlflow_client, uri: str, name: str) -> str:
    """The id of experiment `name`, created if missing (for a SQLite store, with its artifacts in
    `mlartifacts/<name>/` beside the database).

    Raises:
        TrackingError: the experiment was deleted, or the store cannot be reached.
    """
    with talking_to(uri):
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            database = _sqlite_path(uri)
            location = None
            if database is not None:
                folder = re.sub(r"[^\w.-]+", "_", name).strip("._") or "experiment"
                location = (database.parent / ARTIFACTS_FOLDER / folder).as_uri()
            try:
                return mlflow_client.create_experiment(name, artifact_location=location)
            except Exception:
                found = mlflow_client.get_experiment_by_name(name)  # made meanwhile by another run
                if found is None:
                    raise
    if found.lifecycle_stage == "deleted":
        raise TrackingError(
            f"Experiment {name!r} was deleted in {describe(uri)}. Restore it (mlflow experiments "
            f"restore --experiment-id {found.experiment_id}) or choose another `experiment`."
        )
    return found.experiment_id


# -- models from the registry -------------------------------------------------------------------


def _model_version(mlflow_client, uri: str):
    """The `ModelVersion` that `models:/NAME@ALIAS` or `models:/NAME/VERSION` names."""
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        try:
            return mlflow_client.get_model_version_by_alias(name, alias)
        except Exception:
            aliases = sorted(_aliases(mlflow_client, name))
            raise InputError(
                f"{uri}: no version of {name!r} has the alias {alias!r}"
                + (f" (aliases: {', '.join(aliases)})" if aliases else "")
                + f". Set one with: transferkit models promote {name} VERSION --alias {alias}"
            ) from None
    name, _, version = rest.rpartition("/")
    if not name or not version.isdigit():
        raise InputError(
            f"{uri}: not a model URI. Use models:/NAME@ALIAS or models:/NAME/VERSION."
        )
    try:
        return mlflow_client.get_model_version(name, version)
    except Exception:
        raise InputError(
            f"{uri}: there is no version {version} of a registered model {name!r}. See "
            "`transferkit models list`."
        ) from None


def _aliases(mlflow_client, name: str) -> dict:
    try:
        return dict(mlflow_client.get_registered_model(name).aliases or {})
    except Exception:
        return {}


def model_file(uri: str, track: str | None = None) -> Path:
    """The `.keras` file of a model in MLflow, downloaded once into the transferkit cache.

    Args:
        uri: `models:/NAME@ALIAS`, `models:/NAME/VERSION` or `runs:/RUN_ID/model`.
        track: the tracking URI. Default `None`: `$MLFLOW_TRACKING_URI`, else the embedded
            store in the working folder.

    Raises:
        InputError: no such model, version, alias or run, or a model without a Keras flavour.
        TrackingError: the store cannot be reached.
    """
    from transferkit.files import cache_dir

    store = tracking_uri(track)
    mlflow_client = client(store, "Loading a model from MLflow")
    with talking_to(store):
        if uri.startswith("models:/"):
            version = _model_version(mlflow_client, uri)
            source = f"models:/{version.name}/{version.version}"
            key = f"{store}|{source}|{version.run_id}|{version.creation_timestamp}"
        else:
            run_id = uri[len("runs:/"):].split("/", 1)[0]
            try:
                started = mlflow_client.get_run(run_id).info.start_time
            except Exception:
                raise InputError(f"{uri}: there is no run {run_id!r} in {describe(store)}.") from None
            source, key = uri, f"{store}|{uri}|{started}"
        folder = cache_dir("mlflow") / hashlib.sha256(key.encode()).hexdigest()[:32]
        if not (folder / "MLmodel").is_file():
            _download(source, store, folder)
    return _keras_file(folder, uri)


def _download(source: str, store: str, folder: Path) -> None:
    """Downloads the MLflow model `source` into `folder`, which appears whole or not at all."""
    import mlflow

    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".download-") as temp:
        mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=temp, tracking_uri=store)
        found = sorted(Path(temp).rglob("MLmodel"), key=lambda p: len(p.parts))
        if not found:
            raise InputError(f"{source}: not an MLflow model (no MLmodel file).")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(found[0].parent, folder)


def _keras_file(folder: Path, uri: str) -> Path:
    import yaml

    flavors = (yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8")) or {}).get(
        "flavors", {}
    )
    keras_flavor = flavors.get("keras")
    path = folder / str((keras_flavor or {}).get("data", "data")) / "model.keras"
    if keras_flavor is None or not path.is_file():
        raise InputError(
            f"{uri}: not a Keras model file (flavours: {', '.join(flavors) or 'none'}). Pass a "
            "model logged by transferkit (`train ... --track`)."
        )
    return path
