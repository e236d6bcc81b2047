"""Corpus of hostile exports (issue 27, "Nothing lost, nothing stale"): `export` and `trust`.

`--overwrite` replaces only an earlier export, never a run, a model's folder or an ancestor of
them; one export writes a folder at a time; a bad `--output` or `--samples` is one line, not a
traceback; `trust` refuses what is not a model file; the model facts an export ships (and the
server serves) name the training data's folder, not where it sat on the machine; and an export
folder gets the user's umask. Almost every case is refused before the model is loaded, so these
tests are fast; the ones that export for real are marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import _run_cli
from helpers import refused_in_one_line
from transferkit.errors import InputError
from transferkit.export import export
from transferkit.testing import TINY_BACKBONE

ROOT_REASON = "root (and Windows) can write into a folder without write permission"




def _listing(folder) -> list[str]:
    return sorted(os.fspath(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def run(image_run, tmp_path):
    """A copy of the session's image run (hard links: fast, and the shared run stays intact
    even where an old version deletes the copy), in `tmp_path/work/run`."""
    copy = tmp_path / "work" / "run"
    shutil.copytree(image_run[3], copy, copy_function=os.link)
    return copy


def _export_folder(folder, *extra: str):
    """A folder as `transferkit export` leaves it (plus `extra` files)."""
    folder.mkdir(parents=True)
    for name in ("export.json", "input.json", "labels.json", "MODEL_CARD.md", "model.onnx",
                 *extra):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    return folder


# -- 1. `--overwrite` deletes only an earlier export ---------------------------------------------


@pytest.mark.parametrize("where", ["run", "dot in the run", "parent", "dot in the parent",
                                   "link to the run", "folder of a bare model"])
@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "no-overwrite"])
def test_the_folders_that_hold_the_model_are_never_the_output(run, tmp_path, monkeypatch, where,
                                                              overwrite):
    model, output = run, run
    if where == "dot in the run":
        monkeypatch.chdir(run)
        model = output = "."
    elif where == "parent":
        output = run.parent
    elif where == "dot in the parent":
        monkeypatch.chdir(run.parent)
        output = "."
    elif where == "link to the run":
        output = tmp_path / "link"
        output.symlink_to(run, target_is_directory=True)
    elif where == "folder of a bare model":
        bare = tmp_path / "models"
        bare.mkdir()
        os.link(run / "model.keras", bare / "mine.keras")
        model, output = bare / "mine.keras", bare
    before = _listing(tmp_path)
    argv = ["export", model, "--format", "onnx", "--output", output]
    refused_in_one_line(_run_cli(argv + ["--overwrite"] * overwrite), "holds the model being exported",
             "--output")
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("kind", ["notes", "another run", "bare model"])
def test_overwrite_refuses_a_folder_that_is_not_an_export(run, image_run, tmp_path, kind):
    folder = tmp_path / "taken"
    if kind == "notes":
        folder.mkdir()
        (folder / "notes.txt").write_text("someone else's file")
        held = ""
    elif kind == "another run":
        shutil.copytree(image_run[3], folder, copy_function=os.link)
        held = "it holds a training run (config.json, model.keras)"
    else:
        folder.mkdir()
        os.link(run / "model.keras", folder / "best.keras")
        held = "it holds a model file (best.keras)"
    before = _listing(folder)
    with pytest.raises(InputError, match=r"is not an export folder \(no export.json\).*"
                                         r"`overwrite` replaces only an earlier export: nothing "
                                         r"was deleted"):
        export(run, folder, format="onnx", overwrite=True)
    line = refused_in_one_line(_run_cli(["export", run, "--format", "onnx", "--output", folder]),
                    "exists and is not empty, and is not an export folder", held,
                    "Pass a new or empty folder as --output")
    assert "--overwrite" not in line  # it would not help
    assert _listing(folder) == before


def test_overwrite_refuses_an_export_folder_that_holds_a_model(run, tmp_path):
    folder = _export_folder(tmp_path / "onnx", "keep/model.keras")
    before = _listing(folder)
    with pytest.raises(InputError, match=r"is an export folder that also holds a model file "
                                         r"\(keep/model.keras\).*nothing was deleted"):
        export(run, folder, format="onnx", overwrite=True)
    assert _listing(folder) == before


def test_an_earlier_export_is_offered_overwrite(run, tmp_path):
    folder = _export_folder(tmp_path / "onnx")
    refused_in_one_line(_run_cli(["export", run, "--format", "onnx", "--output", folder]),
             "exists and is not empty (an earlier export)", "--overwrite to replace it")


# -- 2. one export at a time ---------------------------------------------------------------------


def _hold_lock(path, pid: int = 4242) -> int:
    """Holds `path` as `transferkit.run_folder.RunLock` does (flock on an open file with the
    holder's JSON); the caller closes the returned descriptor."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": pid, "started": "2024-05-01T12:00:00"}).encode())
    return fd


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_an_export_to_a_folder_another_export_writes_is_refused(run, tmp_path):
    output = tmp_path / "onnx"
    fd = _hold_lock(tmp_path / ".onnx.lock")
    try:
        with pytest.raises(InputError, match=r"onnx is in use by process 4242 \(started "
                                             r"2024-05-01T12:00:00\); wait for it to finish, or "
                                             r"pass another `path`"):
            export(run, output, format="onnx")
        refused_in_one_line(_run_cli(["export", run, "--format", "onnx", "--output", output,
                           "--overwrite"]), "is in use by process 4242", "--output")
    finally:
        os.close(fd)
    assert not output.exists()


@pytest.mark.slow  # a real export in a child process, paused half-way: ~20 s
@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_two_exports_at_once_the_second_is_refused(run, tmp_path):
    from transferkit.files import PAUSE_ENV, PAUSE_FILE_ENV

    output, paused, log = tmp_path / "onnx", tmp_path / "paused", tmp_path / "first.log"
    env = {**os.environ, PAUSE_ENV: "write:labels.json", PAUSE_FILE_ENV: os.fspath(paused),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(log, "wb") as stderr:
        first = subprocess.Popen(
            [sys.executable, "-m", "transferkit.cli", "export", os.fspath(run), "--format",
             "onnx", "--output", os.fspath(output)], env=env, stdout=subprocess.DEVNULL,
            stderr=stderr)
    try:
        deadline = time.monotonic() + 240
        while not paused.exists():  # the first export is written, verified, not yet in place
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        refused_in_one_line(_run_cli(["export", run, "--format", "onnx", "--output", output,
                           "--overwrite"]), f"is in use by process {first.pid}")
        assert not output.exists()  # the first one's folder is still being written
    finally:
        first.kill()
        first.wait()


# -- 3. tracebacks -------------------------------------------------------------------------------


def test_an_output_that_is_a_file(run, tmp_path):
    (tmp_path / "afile.txt").write_text("mine")
    with pytest.raises(InputError, match="afile.txt: is a file; an export is a folder of files"):
        export(run, tmp_path / "afile.txt", format="onnx")
    refused_in_one_line(_run_cli(["export", run, "--format", "onnx", "--output", tmp_path / "afile.txt",
                       "--overwrite"]), "is a file", "--output")
    with pytest.raises(InputError, match=r"sub: cannot be made, .*afile.txt is a file"):
        export(run, tmp_path / "afile.txt" / "sub", format="onnx")
    assert (tmp_path / "afile.txt").read_text() == "mine"


def test_the_root_folder_is_no_output(run):
    # The check itself, not `export(run, "/", overwrite=True)`: run against an older version,
    # that call would export, then delete "/" (as root, everything it can).
    from transferkit.export.destination import check_destination

    with pytest.raises(InputError, match="is the root of the file system"):
        check_destination(Path("/"), run / "model.keras", overwrite=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason=ROOT_REASON)
@pytest.mark.parametrize("output", ["out", "new/out"])
def test_an_output_in_a_read_only_folder(run, tmp_path, output):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(InputError, match=r"locked is not writable by this user \(permission "
                                             r"denied\)"):
            export(run, locked / output, format="onnx")
        refused_in_one_line(_run_cli(["export", run, "--format", "onnx", "--output", locked / output]),
                 "not writable by this user", "--output")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


@pytest.mark.parametrize("samples", [-3, 0, True, 2.5, "10"])
def test_samples_must_be_a_positive_int(run, tmp_path, samples):
    with pytest.raises(InputError, match=rf"`samples` must be a positive int: how many inputs to "
                                         rf"calibrate and verify the export on. Received: "
                                         rf"samples={samples!r}\."):
        export(run, tmp_path / "out", format="onnx", samples=samples)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("samples", ["-3", "0"])
def test_samples_on_the_command_line(run, tmp_path, samples):
    refused_in_one_line(_run_cli(["export", run, "--format", "onnx", "--output", tmp_path / "out",
                       "--samples", samples]),
             "--samples must be a positive int", f"Received: samples={samples}.")


# -- 4. misleading messages ----------------------------------------------------------------------


def test_a_model_from_mlflow_needs_an_output_named_as_the_caller_knows_it(tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing to find: refused before the store is read
    with pytest.raises(InputError, match="no run folder to export into; pass `path`"):
        export("models:/faces/1", format="onnx")
    line = refused_in_one_line(_run_cli(["export", "models:/faces/1", "--format", "onnx"]),
                    "no run folder to export into; pass --output, the folder to write")
    assert "`path`" not in line


def _zip(path, members: dict[str, str]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


@pytest.mark.parametrize("name, fragment", [
    ("afile.txt", "is not a `.keras` file"),
    ("empty.keras", "is empty (0 bytes)"),
    ("notes.keras", "is not a whole `.keras` file"),
    ("other.keras", "zip archive without the `config.json` of a Keras model file"),
    ("lambda.keras", "it has a Lambda layer 'evil': code that would run on load"),
])
def test_trust_refuses_what_is_not_a_model_file(tmp_path, name, fragment, _isolated_cache):
    path = tmp_path / name
    if name == "other.keras":
        _zip(path, {"readme.txt": "hello"})
    elif name == "lambda.keras":
        layer = {"class_name": "Lambda", "config": {"name": "evil", "function": "..."}}
        _zip(path, {"config.json": json.dumps({"class_name": "Functional",
                                                "config": {"layers": [layer]}})})
    else:
        path.write_text("" if name == "empty.keras" else "just some text\n")
    trusted = sorted((_isolated_cache / "trusted-graphs").glob("*"))
    refused_in_one_line(_run_cli(["trust", path]), str(path), fragment)
    assert sorted((_isolated_cache / "trusted-graphs").glob("*")) == trusted


def test_trust_of_a_model_without_graphs_still_says_so(image_run, capsys):
    code, out, err = _run_cli(["trust", image_run[3]])
    assert code == 0, err
    assert "holds no SavedModel graph; it loads in safe mode as it is" in out


# -- 5. disclosure: the model facts name folders, not the machine's layout -----------------------


def _image_classifier(run):
    return SimpleNamespace(task="image", class_names=["face", "not_face"],
                           backbone=TINY_BACKBONE, input_size=(64, 64),
                           resize_policy="center_crop", path=run / "model.keras")


def test_the_facts_and_the_card_name_the_training_data_folder_only(image_run):
    from transferkit.export.card import model_card, model_facts

    run, data = image_run[3], image_run[4]
    facts = model_facts(_image_classifier(run), run / "model.keras")
    text = json.dumps(facts) + model_card(facts)
    assert facts["data"]["source"] == data.name
    assert "Source: `data`" in model_card(facts)
    for local in (os.fspath(data), os.fspath(run), os.fspath(run.parent)):
        assert local not in text  # the model's path and tensorboard line were in `extra`
    assert facts["metrics"]["extra"]["backbone"] == TINY_BACKBONE  # image_run's
    assert facts["metrics"]["accuracy"] is not None and facts["data"]["per_split"]


def test_the_text_facts_name_the_table_and_the_encoder_folder_only(text_run, tmp_path):
    from transferkit.export.card import model_card, model_facts

    run, table = text_run[3], text_run[4]
    encoder_folder = tmp_path / "private" / "my-bert"  # a local sentence encoder folder
    classifier = SimpleNamespace(
        task="text", class_names=["negative", "positive"], encoder=os.fspath(encoder_folder),
        metadata={"encoder": {"kind": "transformer", "source": os.fspath(encoder_folder),
                              "sequence_length": 64}})
    facts = model_facts(classifier, run / "model.keras")
    text = json.dumps(facts) + model_card(facts)
    assert facts["data"]["source"] == table.name and f"Source: `{table.name}`" in text
    assert facts["encoder_source"] == "my-bert"
    for local in (os.fspath(table.parent), os.fspath(run), os.fspath(tmp_path)):
        assert local not in text  # the table, the word vectors, the model, tensorboard
    assert facts["data"]["rows_used"] == 60 and facts["data"]["per_split"]["train"]


def test_the_calibration_description_names_the_folder_only(image_run):
    from transferkit.export.samples import sample_inputs

    run, data = image_run[3], image_run[4]
    items, described = sample_inputs(_image_classifier(run), None, run / "model.keras", 5)
    assert len(items) == 5
    assert described.endswith("from the training images of data/")
    assert os.fspath(data.parent) not in described


# -- 6. an export folder gets the user's umask ---------------------------------------------------


def test_the_export_folder_has_the_users_umask(tmp_path):
    from transferkit.export.destination import writing

    folder = tmp_path / "out"
    old = os.umask(0o022)
    try:
        with writing(folder.resolve(), None, overwrite=False) as partial:
            (partial / "labels.json").write_text("[]")
    finally:
        os.umask(old)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock, no partial left


@pytest.mark.slow  # a real export: seconds
def test_a_real_export_is_readable_names_no_local_path_and_takes_over_a_stale_lock(
        run, image_run, tmp_path):
    output = tmp_path / "shipped" / "onnx"
    output.parent.mkdir()
    (output.parent / ".onnx.lock").write_text('{"pid": 999999, "started": "yesterday"}')
    old = os.umask(0o022)
    try:
        record = export(run, output, format="onnx", samples=8)
    finally:
        os.umask(old)
    assert record["path"] == os.fspath(output)
    assert sorted(p.name for p in output.parent.iterdir()) == ["onnx"]
    for path in (output, *output.rglob("*")):
        expected = 0o755 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == expected, path
    shipped = "".join(p.read_text() for p in output.glob("*.json")) + (
        output / "MODEL_CARD.md").read_text()
    assert os.fspath(tmp_path) not in shipped and os.fspath(image_run[4]) not in shipped
    assert record["source"]["path"] == "run/model.keras"
    assert record["facts"]["data"]["source"] == "data"
