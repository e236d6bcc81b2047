"""Run folders under stress: one writer at a time (`.lock`), a folder that holds a run, resuming
the wrong or a foreign folder, foreign or truncated checkpoints, and a full disk.

Every case ends in one clear line through the command line (exit 1, no traceback, the file and
the fix named) and leaves what was in the folder as it was.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import _run_cli
from helpers import tiny_data, tiny_model
from transferkit.config import ImageTrainConfig, TextTrainConfig
from transferkit.errors import DiskFullError, InputError
from transferkit.pipelines.run import TrainingRun
from transferkit.run_folder import LOCK_NAME, RunFolder, RunLock, read_history_csv


def _snapshot(folder: Path) -> dict:
    """Every file under `folder` and its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_error_line(code: int, err: str) -> str:
    assert code == 1 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("transferkit: error: "), err
    return lines[-1].removeprefix("transferkit: error: ")


def _new_run(folder: Path, config_class=TextTrainConfig, data="missing.csv") -> Path:
    """A run folder as `train` leaves it once started: config.json (data that is gone)."""
    with TrainingRun(config_class, folder.parent / data, output=folder) as run:
        run.start()
    return folder


# -- one writer at a time ----------------------------------------------------------------------


@pytest.mark.parametrize("first_has_started", [False, True])
def test_a_second_run_on_a_folder_in_use_is_refused(faces, tmp_path, holder, first_has_started):
    run = tmp_path / "run"
    if first_has_started:  # its config.json is written: refused before the data is read
        _new_run(run, ImageTrainConfig)
    else:  # still reading its data: refused when this one would start
        run.mkdir()
    before = _snapshot(run)
    first = holder(run)
    code, out, err = _run_cli(["train", "images", faces, "--output", run, "--epochs", "1"])
    message = _one_error_line(code, err)
    assert re.fullmatch(
        rf"{re.escape(str(run))} is in use by process {first.pid} \(started "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\); wait for it to finish, or pass another "
        r"--output\.", message), message
    after = _snapshot(run)
    after.pop(Path(LOCK_NAME))
    assert after == before  # nothing of the second run written


def test_resuming_a_run_in_use_is_refused_and_changes_nothing(tmp_path, holder):
    run = _new_run(tmp_path / "run")
    before = _snapshot(run)
    first = holder(run)
    code, out, err = _run_cli(["train", "text", "--resume", run])
    message = _one_error_line(code, err)
    assert message.startswith(f"{run} is in use by process {first.pid} (started ")
    assert message.endswith("; wait for it to finish.")
    after = _snapshot(run)
    after.pop(Path(LOCK_NAME))
    assert after == before


def test_a_stale_lock_of_a_killed_process_is_taken_over_with_a_line(tmp_path, holder):
    first = holder(tmp_path)
    first.kill()  # SIGKILL: the file stays, the kernel's lock goes
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == first.pid
    lines = []
    lock = RunLock(tmp_path, log=lines.append)
    assert len(lines) == 1
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}: process {first.pid} \(started [^)]+\) is "
                        r"no longer running \(killed\?\); taking over its lock", lines[0])
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    with pytest.raises(InputError, match=rf"is in use by process {os.getpid()} "):
        RunLock(tmp_path)  # held: even this process cannot take it twice
    lock.release()
    lock.release()  # once is enough
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path, log=lines.append).release()
    assert len(lines) == 1  # a released lock is not stale


def test_a_lock_file_naming_a_dead_process_is_stale(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(gone.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": "h", "started": "then"}))
    lines = []
    RunLock(tmp_path, log=lines.append).release()
    assert lines == [f"{tmp_path}: process {pid} on h (started then) is no longer running "
                     "(killed?); taking over its lock"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, InputError])
def test_the_lock_is_released_when_a_run_stops(tmp_path, stop):
    with pytest.raises(stop):
        with TrainingRun(ImageTrainConfig, tmp_path, output=tmp_path / "run") as run:
            run.start()
            assert (tmp_path / "run" / LOCK_NAME).is_file()
            raise stop("stopped")
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    with pytest.raises(stop):  # and when a resumed run stops
        with TrainingRun(ImageTrainConfig, resume=tmp_path / "run", log=lambda line: None):
            assert (tmp_path / "run" / LOCK_NAME).is_file()
            raise stop("stopped")
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_run_that_finished_while_another_read_its_data_is_not_overwritten(tmp_path):
    second = TrainingRun(ImageTrainConfig, tmp_path, output=tmp_path / "run")  # checks: free
    _new_run(tmp_path / "run", ImageTrainConfig)  # meanwhile the first run starts and ends
    before = _snapshot(tmp_path / "run")
    with pytest.raises(InputError, match=r"already holds a run\. Pass it as `resume`"):
        with second:
            second.start()
    assert _snapshot(tmp_path / "run") == before


# -- a folder that holds a run; resuming the wrong folder ----------------------------------------


@pytest.mark.parametrize("kind", ["images", "text"])
def test_output_of_a_finished_run_is_refused(kind, tmp_path):
    config_class = ImageTrainConfig if kind == "images" else TextTrainConfig
    run = _new_run(tmp_path / "run", config_class)
    before = _snapshot(run)
    code, out, err = _run_cli(["train", kind, tmp_path / "data", "--output", run])
    assert _one_error_line(code, err) == (
        f"{run} already holds a run. Pass it as --resume to continue it (settings of a phase it "
        f"has not begun may be changed there), or start over: pass another --output, or remove "
        f"{run}."
    )
    assert _snapshot(run) == before


@pytest.mark.parametrize("kind", ["images", "text"])
def test_resume_says_which_flags_it_ignored_and_how_to_start_over(kind, tmp_path):
    config_class = ImageTrainConfig if kind == "images" else TextTrainConfig
    run = _new_run(tmp_path / "run", config_class, data="gone")
    RunFolder(run).update_state(head={"epochs_done": 2, "epochs": 20, "finished": False})
    before = _snapshot(run)
    code, out, err = _run_cli(["train", kind, "--resume", run, "--epochs", "6", "--seed", "3"])
    assert ("Resuming uses the run's saved settings for what it has begun; ignored: epochs, "
            f"seed. To train with them, start over: another --output (or remove {run})"
            ) in out.splitlines()
    assert "gone" in _one_error_line(code, err)  # then the data it was trained on is missing
    assert _snapshot(run) == before


@pytest.mark.parametrize("kind, options, saved", [
    ("images", {"unfreeze": "10", "fine_tune_epochs": 2}, {"unfreeze": "10",
                                                            "fine_tune_epochs": 2}),
    ("text", {"fine_tune_epochs": 1, "fine_tune_learning_rate": 1e-4},
     {"fine_tune_epochs": 1, "fine_tune_learning_rate": 1e-4}),
    ("images", {"epochs": 3}, {}),  # the head has begun: kept as it was
])
def test_a_resumed_run_takes_settings_of_phases_it_has_not_begun(tmp_path, kind, options,
                                                                 saved):
    """A run that failed after its head (a bad `unfreeze`, say) is resumed with the setting
    corrected, rather than failing again on its saved one."""
    config_class = ImageTrainConfig if kind == "images" else TextTrainConfig
    run = _new_run(tmp_path / "run", config_class)
    RunFolder(run).update_state(head={"epochs_done": 1, "epochs": 1, "finished": True})
    before = json.loads((run / "config.json").read_text())
    lines = []
    with TrainingRun(config_class, resume=run, options=options, log=lines.append) as resumed:
        resumed.start()
    after = json.loads((run / "config.json").read_text())
    assert after == {**before, **saved} and resumed.config.to_dict() == {
        key: value for key, value in after.items() if key != "task"}
    if saved:
        changed = ", ".join(f"{k} {before[k]!r} -> {v!r}" for k, v in options.items())
        assert f"Resuming with changed settings of phases not begun: {changed}" in lines
    else:
        assert lines[-1].startswith("Resuming uses the run's saved settings for what it has "
                                    "begun; ignored: epochs.")


def test_a_resumed_run_refuses_a_bad_value_of_a_changed_setting(tmp_path):
    run = _new_run(tmp_path / "run", ImageTrainConfig)
    before = _snapshot(run)
    code, out, err = _run_cli(["train", "images", "--resume", run, "--unfreeze", "0"])
    assert _one_error_line(code, err).startswith("--unfreeze as a number of top layers must be "
                                                 ">= 1")
    assert _snapshot(run) == before


def test_resuming_a_run_of_the_other_task_names_the_task(tmp_path):
    run = _new_run(tmp_path / "run", TextTrainConfig)
    code, out, err = _run_cli(["train", "images", "--resume", run])
    assert _one_error_line(code, err) == (
        f"{run} is a run of `train text`, not `train images`. Resume it with the matching command."
    )


@pytest.mark.parametrize("config, expected", [
    (b"{\"task\": \"images\", \"epo", r"config\.json: not valid JSON \(.+\)\. Fix or delete the "
                                      r"file\."),
    (b"\xff\xfe\x00garbage", r"config\.json: not valid JSON \(.+\)\. Fix or delete the file\."),
    (b"[1, 2]", r"config\.json: not a transferkit run config \(a JSON list, not an object\)\. "
                r"Pass a folder written by `transferkit train`\."),
    (json.dumps({"architectures": ["BertModel"], "hidden_size": 384}).encode(),
     r"config\.json was not written by `transferkit train` \(it names no task\)\. Pass a folder "
     r"written by `transferkit train images` as --resume\."),
], ids=["cut JSON", "binary", "a JSON list", "another tool's"])
def test_resuming_a_foreign_config_is_one_line(tmp_path, config, expected):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes(config)
    code, out, err = _run_cli(["train", "images", "--resume", run])
    assert re.fullmatch(re.escape(str(run)) + "/" + expected, _one_error_line(code, err))
    assert (run / "config.json").read_bytes() == config and not (run / LOCK_NAME).exists()


def test_a_history_csv_not_written_by_transferkit_is_one_error(tmp_path):
    (tmp_path / "history.csv").write_bytes(b"phase,epoch\nhead,\xff\xfe\n")
    with pytest.raises(InputError, match=r"history\.csv: not a history\.csv written by "
                                         r"transferkit \(.+\)\. Delete it"):
        read_history_csv(tmp_path / "history.csv")


# -- foreign and truncated checkpoints -----------------------------------------------------------


def _fit(run, epochs=2):
    from transferkit.training.callbacks import fit_phase

    x, y = tiny_data()
    return fit_phase(tiny_model(), x, y=y, validation_data=(x, y), epochs=epochs, run=run,
                     phase="head", patience=5, tensorboard=False, verbose=0)


def _interrupted_after_one_epoch(run):
    """The run folder of a head phase killed in its second epoch (of 2)."""
    from transferkit.training.io import save_weights_atomic

    _fit(run, epochs=1)
    run.update_state(head={**run.state()["head"], "finished": False})
    model = tiny_model()
    save_weights_atomic(model, run.checkpoint_dir / "head.weights.h5",
                        transferkit_epochs_done=1, transferkit_best_epoch=1,
                        transferkit_best_value=0.5)
    save_weights_atomic(model, run.checkpoint_dir / "head.best-0001.weights.h5")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "another model", "best truncated"])
def test_a_damaged_checkpoint_is_one_error_naming_the_file(tmp_path, damage):
    import keras

    run = RunFolder(tmp_path / "run").create()
    weights = run.checkpoint_dir / "head.weights.h5"
    if damage == "best truncated":  # an interrupted phase keeps the best epoch's weights too
        _interrupted_after_one_epoch(run)
        target = run.checkpoint_dir / "head.best-0001.weights.h5"
        target.write_bytes(target.read_bytes()[:300])
    else:
        _fit(run)
        target = weights
        if damage == "truncated":
            weights.write_bytes(weights.read_bytes()[:500])
        elif damage == "garbage":
            weights.write_bytes(b"GIF89a not a checkpoint")
        else:
            other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
            other.save_weights(weights)
    with pytest.raises(InputError) as caught:
        _fit(run)
    assert re.fullmatch(
        re.escape(f"{target}: not a checkpoint of this run (") + r".+"
        + re.escape("). Delete it to train the head phase again from its first epoch, or start "
                    "a new run with another `output`."), str(caught.value), re.S)


def test_a_truncated_checkpoint_on_resume_is_one_line(image_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(image_run[3], run)
    weights = run / "checkpoints" / "head.weights.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    before = _snapshot(run)
    code, out, err = _run_cli(["train", "images", "--resume", run])
    message = _one_error_line(code, err)
    assert message.startswith(f"{weights}: not a checkpoint of this run (OSError: ")
    assert message.endswith("). Delete it to train the head phase again from its first epoch, or "
                            "start a new run with another --output.")
    assert _snapshot(run) == before


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def full_disk_at(monkeypatch):
    """Makes the fsync of a new file whose name matches fail with ENOSPC, as a full disk does
    (with delayed allocation the error often surfaces only there): injected below `atomic_path`,
    which the test then sees handle it."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("finds the file of a descriptor through /proc/self/fd (Linux)")
    real = os.fsync
    names = []

    def fsync(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if any(name.startswith(f".{target}.tmp-") for target in names):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return names.append


_SLOW = pytest.mark.slow  # each resumes a whole run; one of each kind of writer in the default run


@pytest.mark.parametrize("run_fixture, target", [
    ("text_run", "model.keras"), pytest.param("text_run", "state.json", marks=_SLOW),
    ("text_run", "report/summary.txt"),
    pytest.param("text_run", "report/confusion_matrix.png", marks=_SLOW),
    ("text_run", "report/history.csv"),  # a copy, written with shutil.copyfile before
    pytest.param("image_run", "report/label_issues.csv", marks=_SLOW),
])
def test_a_full_disk_while_finishing_keeps_the_previous_files(request, tmp_path, full_disk_at,
                                                              run_fixture, target):
    """A finished run resumed (it only writes its model and report again) on a disk that fills
    up at `target`."""
    source = request.getfixturevalue(run_fixture)[3]
    run = tmp_path / "run"
    shutil.copytree(source, run)
    written = run / target
    before = written.read_bytes()
    full_disk_at(written.name)
    code, out, err = _run_cli(["train", "images" if run_fixture == "image_run" else "text",
                               "--resume", run])
    assert _one_error_line(code, err) == (
        f"no space left on device while writing {written}; free space on that disk, or move "
        f"{run} to a disk with room and resume it there"
    )
    assert written.read_bytes() == before
    assert not list(run.rglob("*.tmp-*")) and not (run / LOCK_NAME).exists()


def test_a_full_disk_as_a_new_run_starts_says_to_pass_another_output(text_run, vectors_file,
                                                                     tmp_path, full_disk_at):
    run = tmp_path / "run"
    full_disk_at("config.json")
    code, out, err = _run_cli(["train", "text", text_run[4], "--word-vectors", vectors_file,
                               "--output", run])
    assert _one_error_line(code, err) == (
        f"no space left on device while writing {run / 'config.json'}; free space on that disk, "
        "or pass another --output"
    )
    assert os.listdir(run) == []  # no config.json, no temporary file, no lock


def test_a_full_disk_while_saving_a_checkpoint(tmp_path, full_disk_at):
    run = RunFolder(tmp_path / "run").create()
    _interrupted_after_one_epoch(run)
    before = _snapshot(run.path)
    full_disk_at("head.weights.h5")
    with pytest.raises(DiskFullError, match=r"no space left on device while writing "
                                            r".+head\.weights\.h5; free space on that disk$"):
        _fit(run, epochs=2)
    after = _snapshot(run.path)
    key = Path("checkpoints/head.weights.h5")
    assert after[key] == before[key] and not list(run.path.rglob("*.tmp-*"))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="mounting a small tmpfs needs root; the injected ENOSPC cases cover it")
def test_a_really_full_tmpfs_while_finishing(text_run, tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    size = sum(p.stat().st_size for p in text_run[3].rglob("*") if p.is_file())
    size += 1 << 20
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        run = mount / "run"
        shutil.copytree(text_run[3], run)
        before = _snapshot(run)
        # room for the small files (the lock, state.json), not for a new model.keras
        (mount / "filler").write_bytes(b"\0" * (shutil.disk_usage(mount).free - (64 << 10)))
        code, out, err = _run_cli(["train", "text", "--resume", run])
        message = _one_error_line(code, err)
        match = re.fullmatch(rf"no space left on device while writing ({re.escape(str(run))}/\S+)"
                             rf"; free space on that disk, or move {re.escape(str(run))} to a "
                             r"disk with room and resume it there", message)
        assert match, message
        named = Path(match.group(1)).relative_to(run)
        after = _snapshot(run)
        assert after[named] == before[named] and after[Path("model.keras")] == before[
            Path("model.keras")]
        assert not list(run.rglob("*.tmp-*")) and not (run / LOCK_NAME).exists()
        print(f"\nfull tmpfs: the first write that failed was {named}")
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# -- tracking stores: said before any work ------------------------------------------------------


@pytest.fixture
def under_a_file(tmp_path) -> Path:
    """A path whose folder cannot be made, even by root: its parent is a regular file. (Tests
    run as root, where a read-only folder would still be written.)"""
    (tmp_path / "a_file").write_text("not a folder")
    return tmp_path / "a_file" / "store"


@pytest.mark.parametrize("store", ["folder", "sqlite", "file", "not sqlite", "a folder"])
def test_train_with_a_store_that_cannot_be_written_fails_at_once(faces, tmp_path, under_a_file,
                                                                 store):
    """MLflow retried opening a bad database for ~100 s (ten warnings) while the run trained."""
    pytest.importorskip("mlflow")
    notes, folder = tmp_path / "notes.db", tmp_path / "folder.db"
    notes.write_text("my notes, not a database")
    folder.mkdir()
    track, database, problem = {
        "folder": (str(under_a_file), under_a_file / "mlflow.db", None),
        "sqlite": (f"sqlite:///{under_a_file}/runs.db", under_a_file / "runs.db", None),
        "file": (under_a_file.as_uri(), under_a_file, None),
        "not sqlite": (str(notes), notes, f"{notes} is not an SQLite database"),
        "a folder": (f"sqlite:///{folder}", folder, f"{folder} is a folder, not a database file"),
    }[store]
    problem = problem or f"{under_a_file.parent} is a file, not a folder"
    run = tmp_path / "run"
    code, out, err = _run_cli(["train", "images", faces, "--image-size", "32", "--epochs", "1",
                               "--fine-tune-epochs", "0", "--output", run, "--track", track])
    assert _one_error_line(code, err) == (
        f"the MLflow store {database} cannot be used: {problem}. Pass --track another store (a "
        "folder or .db file you can write to, or a URI), or leave out --track."
    )
    assert not run.exists() and "Data:" not in out  # before the data was read
    assert notes.read_text() == "my notes, not a database"


@pytest.mark.parametrize("store", ["under a file", "a folder"])
def test_a_resumed_run_whose_store_went_bad_warns_once_at_once(tmp_path, under_a_file, store):
    """A tracked run resumed without `track`: training goes on, tracking stops in one warning
    (MLflow alone retried opening the database for ~100 s, warning ten times)."""
    pytest.importorskip("mlflow")
    import time

    import mlflow.entities  # noqa: F401 (imported by the first step; not what is timed)

    from transferkit.tracking.tracker import TRACKING_FILE, RunTracker

    run = tmp_path / "run"
    run.mkdir()
    database = under_a_file / "mlflow.db" if store == "under a file" else tmp_path / "mlflow.db"
    if store == "a folder":  # not what any permission check would see
        database.mkdir()
    uri = f"sqlite:///{database}"
    (run / TRACKING_FILE).write_text(json.dumps({"uri": uri, "experiment": "faces"}))
    lines = []
    started = time.monotonic()
    tracker = RunTracker.for_run(run, log=lines.append)
    tracker.start({"epochs": 1}, "images")
    assert tracker.close("FAILED")["pending"] is True
    assert time.monotonic() - started < 30  # MLflow alone: ~100 s
    assert len(lines) == 1 and lines[0].startswith(
        f"Warning: tracking stopped (the MLflow store {database} cannot be used: ")
    assert json.loads((run / TRACKING_FILE).read_text())["pending"] is True


@pytest.mark.parametrize("argv, variable, expected", [
    (["runs"], "garbage", "MLFLOW_TRACKING_URI is 'garbage', not a tracking URI (it has no "
     "scheme such as http:). Use a server (http://127.0.0.1:5000) or a database "
     "(sqlite:////abs/path/mlflow.db), or unset it to use ./mlflow.db."),
    (["runs"], "garbage://here", "MLFLOW_TRACKING_URI is 'garbage://here', not a tracking URI "
     "(MLflow has no 'garbage:' store). Use a server (http://127.0.0.1:5000) or a database "
     "(sqlite:////abs/path/mlflow.db), or unset it to use ./mlflow.db."),
    (["models", "list"], "garbage", "MLFLOW_TRACKING_URI is 'garbage', not a tracking URI"),
    (["runs", "--track", "nope://x"], None, "--track is 'nope://x', not a tracking URI (MLflow "
     "has no 'nope:' store). Use a server (http://127.0.0.1:5000) or a database "
     "(sqlite:////abs/path/mlflow.db), or a folder or .db path."),
], ids=["runs", "unknown scheme", "models list", "--track"])
def test_a_tracking_uri_that_is_not_one_is_one_line(monkeypatch, tmp_path, argv, variable,
                                                    expected):
    pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    if variable is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", variable)
    code, out, err = _run_cli(argv)
    assert _one_error_line(code, err).startswith(expected)
    assert os.listdir(tmp_path) == []  # no store made anywhere


def test_train_with_a_tracking_variable_that_is_not_a_uri_fails_before_the_data(
        faces, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "garbage")
    code, out, err = _run_cli(["train", "images", faces, "--image-size", "32", "--epochs", "1",
                               "--fine-tune-epochs", "0", "--output", tmp_path / "run",
                               "--track"])
    assert _one_error_line(code, err).startswith("MLFLOW_TRACKING_URI is 'garbage', not a ")
    assert not (tmp_path / "run").exists()


# -- settings checked before any work; a failed run resumed with a corrected one -----------------


@pytest.mark.parametrize("size", [1, 16])
def test_an_image_size_the_backbone_cannot_take_fails_before_the_data(faces, tmp_path, size):
    run = tmp_path / "run"
    code, out, err = _run_cli(["train", "images", faces, "--image-size", size, "--output", run])
    assert _one_error_line(code, err) == (
        f"--image-size must be at least 32 for efficientnet_lite0 (the smallest input it "
        f"takes). Received: image_size={size}."
    )
    assert not run.exists() and "Data:" not in out


def test_an_unfreeze_layer_name_is_checked_without_changing_the_model():
    import keras

    from transferkit.training.unfreeze import check_unfreeze_layers

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="low"),
                              keras.layers.Dense(2, name="top")], name="tiny")
    model.trainable = False
    assert check_unfreeze_layers(model, "top") == 1 and check_unfreeze_layers(model, 5) == 2
    with pytest.raises(InputError, match=r"^`unfreeze` names no layer of tiny: 'tpo'\. Did you "
                                         r"mean: top\? Pass 'all', a number of top layers "
                                         r"\(1-2\), or one of its 2 layer names\.$"):
        check_unfreeze_layers(model, "tpo")
    assert not model.trainable and not any(layer.trainable for layer in model.layers)


@pytest.mark.slow  # builds EfficientNet-Lite0 before it refuses (~2-5 s)
def test_an_unfreeze_layer_the_backbone_lacks_fails_before_any_training(faces, tmp_path):
    run = tmp_path / "run"
    code, out, err = _run_cli(["train", "images", faces, "--image-size", "32", "--unfreeze",
                               "block6a_expand_cnv", "--output", run])
    assert _one_error_line(code, err).startswith(
        "--unfreeze names no layer of efficientnet_lite0: 'block6a_expand_cnv'. Did you mean: "
        "block6a_expand_conv, ")
    assert not run.exists() and "Head:" not in out


def test_a_max_length_the_encoder_cannot_take_fails_before_the_data(text_run, bert_folder,
                                                                    tmp_path):
    run = tmp_path / "run"
    code, out, err = _run_cli(["train", "text", text_run[4], "--encoder", bert_folder,
                               "--max-length", "100000", "--output", run])
    assert _one_error_line(code, err) == (
        "--max-length must be between 3 and 64 tokens for this encoder. Received: "
        "max_length=100000."
    )
    assert not run.exists() and "texts," not in out


@pytest.mark.slow  # fine-tunes a copy of the shared image run for an epoch (~10-30 s)
def test_a_run_that_failed_before_fine_tuning_resumes_with_a_corrected_unfreeze(image_run,
                                                                               tmp_path):
    """As an older transferkit left a run with a bad `--unfreeze`: its head trained, then it
    failed; the corrected command was refused and `--resume` failed again on the saved value."""
    run = tmp_path / "run"
    shutil.copytree(image_run[3], run)
    folder = RunFolder(run)
    state = folder.state()
    for key in ("fine_tune", "result"):
        state.pop(key)
    write = folder.update_state
    folder.state_path.unlink()
    write(**state)
    config = folder.load_config()
    folder.save_config({**config, "unfreeze": "no_such_layer"})
    shutil.rmtree(run / "report")
    (run / "model.keras").unlink()
    for path in (run / "checkpoints").glob("fine_tune*"):
        path.unlink()
    rows = [row for row in folder.history_rows() if row["phase"] == "head"]

    code, out, err = _run_cli(["train", "images", image_run[4], "--output", run,
                               "--unfreeze", "5"])
    assert _one_error_line(code, err).endswith(
        "or start over: pass another --output, or remove " + f"{run}.")
    code, out, err = _run_cli(["train", "images", "--resume", run])
    assert _one_error_line(code, err).startswith("--unfreeze names no layer of ")
    assert "Head:" not in out  # said before any work
    code, out, err = _run_cli(["train", "images", "--resume", run, "--unfreeze", "5"])
    assert code == 0, err
    assert ("Resuming with changed settings of phases not begun: unfreeze 'no_such_layer' -> "
            "'5'") in out.splitlines()
    assert folder.load_config()["unfreeze"] == "5" and (run / "model.keras").is_file()
    history = folder.history_rows()
    assert history[:len(rows)] == rows and history[-1]["phase"] == "fine_tune"


@pytest.mark.slow  # makes an MLflow SQLite store twice over (its migrations: ~5-10 s)
def test_a_tracked_run_resumed_with_a_changed_setting_keeps_tracking(tmp_path):
    """MLflow keeps a param's first value and refuses another: the changed setting is a tag,
    rather than the error that would stop tracking the resumed run."""
    pytest.importorskip("mlflow")
    from transferkit.tracking.store import client
    from transferkit.tracking.tracker import RunTracker

    store, run = tmp_path / "mlflow.db", tmp_path / "run"
    run.mkdir()
    for unfreeze in ("no_such_layer", "5"):  # the run, then its resume with --unfreeze 5
        lines = []
        tracker = RunTracker.for_run(run, track=store, experiment="faces", log=lines.append)
        tracker.start({"epochs": 1, "unfreeze": unfreeze}, "images")
        assert tracker.close("FINISHED")["pending"] is False, lines
    logged = client(tracker.uri).get_run(tracker.run_id).data
    assert logged.params["unfreeze"] == "no_such_layer" and logged.params["epochs"] == "1"
    assert logged.tags["transferkit.resumed_with.unfreeze"] == "5"
