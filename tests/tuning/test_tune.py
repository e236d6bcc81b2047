"""`transferkit tune` (issue 31) on the tiny backbone and the tiny BERT: the files a search
writes, best.toml read by `train` as is, the defaults as the first trial, resuming a study,
two processes sharing one SQLite study, and bad input in one line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from transferkit.testing import TINY_BACKBONE

optuna = pytest.importorskip("optuna", reason="the tune extra (optuna) is not installed")

SRC = Path(__file__).resolve().parents[2] / "src"


def _cli(argv) -> tuple[int, str, str]:
    from conftest import _run_cli

    return _run_cli([str(a) for a in argv])


def _study(storage: str):
    return optuna.load_study(study_name="transferkit-tune", storage=storage)


@pytest.fixture(scope="module")
def searched(faces, tmp_path_factory):
    """Four trials on the faces: `(summary, output folder)`, searched once for all xdist
    workers (a minute each)."""
    from helpers import once_across_workers

    def search(out: Path) -> dict:
        code, stdout, err = _cli(["tune", "images", faces, "--backbones", TINY_BACKBONE,
                                  "--trials", 4, "--output", out, "--json"])
        assert code == 0, err
        return json.loads(stdout.strip().splitlines()[-1])

    return once_across_workers(tmp_path_factory, "tune-searched", search)


def test_a_search_writes_its_table_best_toml_and_plots(searched):
    summary, out = searched
    assert summary["trials"].get("complete", 0) + summary["trials"].get("pruned", 0) == 4
    with open(out / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["number"]) for row in rows] == [0, 1, 2, 3]
    # The defaults run first, and the best is never worse than them on the scoring split.
    assert rows[0]["user_attrs_defaults"] == "True" and float(rows[0]["params_dropout"]) == 0.2
    assert summary["defaults"]["trial"] == 0
    # The defaults are the incumbent; the two best others on the scoring split challenge them
    # fold by fold, and win only with a lower loss on every fold.
    values = {int(r["number"]): float(r["value"]) for r in rows if r["value"]}
    assert summary["folds"] == 5  # 16 training faces a class
    incumbent, *challengers = summary["finalists"]
    assert incumbent["trial"] == 0 and incumbent["defaults"]
    assert len(incumbent["fold_losses"]) == 5
    assert [row["trial"] for row in challengers] == \
        [t for t in sorted(values, key=values.get)[:2] if t != 0]
    for row in challengers:
        pairs = list(zip(row["fold_losses"], incumbent["fold_losses"]))
        assert all(mine < theirs for mine, theirs in pairs[:-1])  # it went on only while better
        assert row["better_on_every_fold"] == (len(pairs) == 5 and pairs[-1][0] < pairs[-1][1])
    winners = [row for row in challengers if row["better_on_every_fold"]]
    best = summary["best"]["trial"]
    assert best == (min(winners, key=lambda r: sum(r["fold_losses"]))["trial"] if winners else 0)
    assert summary["best"]["loss"] == values[best]
    for name in ("optimization_history", "slice"):
        assert (out / f"{name}.png").stat().st_size > 5_000
    assert "20% of each class of the training split" in summary["scored_on"]
    trials = _study(summary["storage"]).trials
    assert trials[0].state.name == "COMPLETE"  # the defaults' trial: the first, never pruned
    # Each epoch's loss went to the pruner.
    assert all(sorted(t.intermediate_values) == list(range(len(t.intermediate_values)))
               for t in trials) and any(t.intermediate_values for t in trials)
    assert summary["report_split"].startswith("the validation split")


def test_best_toml_is_a_config_file_train_reads_as_is(searched, faces, tmp_path):
    summary, out = searched
    from transferkit.config import read_config_file

    settings = read_config_file(out / "best.toml")
    assert settings["backbone"] == TINY_BACKBONE
    assert settings["learning_rate"] == pytest.approx(summary["best"]["settings"]["learning_rate"])
    code, stdout, err = _cli(["train", "images", faces, "--config", out / "best.toml",
                              "--fine-tune-epochs", 0, "--output", tmp_path / "run", "--json"])
    assert code == 0, err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    for key in ("learning_rate", "weight_decay", "dropout", "batch_size", "patience",
                "class_weight"):
        assert saved[key] == settings[key], key


def test_a_reused_head_trains_as_a_new_one(faces):
    """A search reuses one compiled head per shape (`Heads`); a trial on it, after trials of
    other learning rates, weight decays, batch sizes and patience, must end where a new head's
    trial ends."""
    from transferkit.tuning.features import prepare_images
    from transferkit.tuning.trials import Heads, default_params, train_trial

    prepared = prepare_images(faces, [TINY_BACKBONE], 0, lambda line: None)
    params = default_params("images", [TINY_BACKBONE], len(prepared.train_y))
    fresh = train_trial(prepared, TINY_BACKBONE, params, 0)
    heads = Heads(prepared, 0)
    others = [dict(params, learning_rate=0.02, batch_size=4, patience=2),
              dict(params, learning_rate=3e-4, batch_size=16, class_weight="balanced"),
              dict(params, weight_decay=1.0)]
    for other in others:
        assert train_trial(prepared, TINY_BACKBONE, other, 0, heads=heads)["loss"] != \
            pytest.approx(fresh["loss"])  # they trained something else
    again = train_trial(prepared, TINY_BACKBONE, params, 0, heads=heads)
    assert heads.built == 1  # one shape, built once
    assert again["epochs"] == fresh["epochs"]
    assert again["loss"] == pytest.approx(fresh["loss"], rel=1e-5)
    assert again["accuracy"] == fresh["accuracy"]
    other_shape = train_trial(prepared, TINY_BACKBONE, dict(params, dropout=0.5), 0, heads=heads)
    assert heads.built == 2 and other_shape["loss"] != pytest.approx(fresh["loss"])


def test_a_trials_weight_decay_is_kerass_adamw_weight_decay():
    """A search's heads read the weight decay when each step runs (one compiled head serves
    every value); the weights must come out as Keras's Adam given that decay as a number (what
    `train --weight-decay` compiles) leaves them, and unlike Adam without it."""
    import keras

    from transferkit.tuning.trials import Heads

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    prepared = SimpleNamespace(kind="images", class_names=["a", "b"],
                               features={"f": (x, None)})
    params = {"dropout": 0.0, "learning_rate": 0.01, "weight_decay": 0.3}

    def trained(head):
        head.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        return [np.asarray(v) for v in head.trainable_variables]

    reused = Heads(prepared, 0).get("f", params, steps=4)
    first = [np.asarray(v) for v in reused.trainable_variables]
    reused.steps_per_execution = 1
    reused.train_function = None
    ours = trained(reused)
    for decay in (0.3, None):
        twin = keras.models.clone_model(reused)
        twin.set_weights(first)
        twin.compile(optimizer=keras.optimizers.Adam(0.01, weight_decay=decay),
                     loss=reused.loss, jit_compile=False)
        theirs = trained(twin)
        same = all(np.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs, strict=True))
        assert same == (decay is not None), decay


@pytest.mark.slow  # a second search (~40 s of the default suite's time)
def test_trials_in_threads_train_as_one_at_a_time(searched, faces, tmp_path):
    """--jobs 2: two trials at once, each thread with its own heads; the defaults' trial ends
    where the one-at-a-time search's did, and every trial is numbered and finished once (two
    threads finishing in the same instant may each start one more, as two processes may)."""
    summary, out = searched
    code, stdout, err = _cli(["tune", "images", faces, "--backbones", TINY_BACKBONE, "--trials", 4,
                              "--jobs", 2, "--folds", 0, "--output", tmp_path / "out", "--json"])
    assert code == 0, err
    trials = _study(f"sqlite:///{(tmp_path / 'out' / 'tune.db').resolve()}").trials
    assert sorted(t.number for t in trials) == list(range(len(trials))) and 4 <= len(trials) <= 5
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    alone = _study(f"sqlite:///{(out / 'tune.db').resolve()}").trials[0]
    assert trials[0].value == pytest.approx(alone.value, rel=1e-5)
    assert trials[0].user_attrs["epochs"] == alone.user_attrs["epochs"]


def test_running_again_continues_the_study(faces, tmp_path):
    out = tmp_path / "out"
    args = ["tune", "images", faces, "--backbones", TINY_BACKBONE, "--output", out, "--folds", 0]
    code, _, err = _cli([*args, "--trials", 2])
    assert code == 0, err
    code, stdout, err = _cli([*args, "--trials", 3])
    assert code == 0 and "it holds 2" in stdout, err
    storage = f"sqlite:///{(out / 'tune.db').resolve()}"
    assert [t.number for t in _study(storage).trials] == [0, 1, 2]
    code, stdout, err = _cli([*args, "--trials", 3])
    assert code == 0 and "nothing to run" in stdout, err
    assert len(_study(storage).trials) == 3


def _open_storage(url, barrier, answers):
    from transferkit.tuning.study import _storage

    barrier.wait()  # every process at Optuna's table creation in the same instant
    try:
        _storage(optuna, url)
        answers.put("opened")
    except Exception as exc:  # the one line a user would read
        answers.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_sqlite_file_at_once_all_open_it(tmp_path):
    """Six processes create one new SQLite study file's tables at once (CI met the collision
    with two: "table study_user_attributes already exists"): every one opens it. Without the
    retry on a collision, 4 of 5 such rounds failed here."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no TensorFlow imported: ~5 s a round
    for round_ in range(2):
        url = f"sqlite:///{tmp_path / f'new{round_}.db'}"
        barrier, answers = context.Barrier(6), context.Queue()
        workers = [context.Process(target=_open_storage, args=(url, barrier, answers))
                   for _ in range(6)]
        for worker in workers:
            worker.start()
        got = [answers.get(timeout=120) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
        assert got == ["opened"] * 6, [line for line in got if line != "opened"]


@pytest.mark.slow  # two child processes, each importing TensorFlow (~40 s)
def test_two_processes_share_one_sqlite_study_without_duplicates_or_losses(faces, tmp_path):
    """Two `tune` processes on one SQLite file: every trial finished once, numbered once; the
    study stops at the count asked (a trial started by both in the same instant may add one)."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    children = [subprocess.Popen(
        [sys.executable, "-m", "transferkit.cli", "tune", "images", str(faces), "--backbones",
         TINY_BACKBONE, "--trials", "8", "--folds", "0", "--storage", storage, "--output",
         str(tmp_path / name)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name in ("a", "b")]
    outputs = [child.communicate(timeout=600) for child in children]
    for child, (_, err) in zip(children, outputs):
        assert child.returncode == 0, err[-3000:]
    trials = _study(storage).trials
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials))) and 8 <= len(trials) <= 9
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    ran = [[int(line.split()[1].rstrip(":")) for line in out.splitlines()
            if line.startswith("  trial ")] for out, _ in outputs]
    assert all(ran) and not set(ran[0]) & set(ran[1])  # both worked, never on the same trial


@pytest.mark.slow  # features of both kinds on the tiny BERT
def test_text_search_covers_the_feature_kinds(bert_folder, tmp_path):
    from transferkit.testing import write_table

    table = write_table(tmp_path / "reviews.csv", n=60, bad_rows=False)
    code, stdout, err = _cli(["tune", "text", table, "--backbones", bert_folder, "--trials", 3,
                              "--folds", 0, "--output", tmp_path / "out", "--json"])
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    settings = summary["best"]["settings"]
    assert settings["encoder"] == str(bert_folder) and settings["features"] in ("layers",
                                                                                 "sentence")
    assert summary["scored_on"].startswith("the validation split")
    assert summary["report_split"].startswith("the test split")
    with open(tmp_path / "out" / "trials.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["params_candidate"] == f"{bert_folder}:layers"  # the default kind first
    assert {row["params_candidate"] for row in rows} <= {f"{bert_folder}:layers",
                                                         f"{bert_folder}:sentence"}


@pytest.mark.slow  # a search, then MLflow's store
def test_a_tracked_search_is_a_parent_run_with_a_run_per_trial(faces, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the tracking extra (mlflow) is not installed")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, stdout, err = _cli(["tune", "images", faces, "--backbones", TINY_BACKBONE, "--trials", 3,
                              "--folds", 0, "--output", tmp_path / "out", "--track", store, "--json"])
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    client = mlflow.MlflowClient(tracking_uri=store)
    parent = client.get_run(summary["tracking"]["run_id"])
    assert parent.data.metrics["best_loss"] == pytest.approx(summary["best"]["loss"])
    assert parent.data.params["learning_rate"] == str(summary["best"]["settings"]["learning_rate"])
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.info.run_name for run in children) == ["trial 0", "trial 1", "trial 2"]
    first = next(run for run in children if run.info.run_name == "trial 0")
    assert first.data.params["dropout"] == "0.2"  # the defaults' trial
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "best.toml", "summary.json", "optimization_history.png"} <= artifacts


@pytest.mark.slow  # a whole training run (head and fine-tuning) after the search
def test_train_best_trains_a_run_with_best_toml(faces, tmp_path):
    code, stdout, err = _cli(["tune", "images", faces, "--backbones", TINY_BACKBONE, "--trials", 2,
                              "--folds", 0, "--output", tmp_path / "out", "--train-best", "--json"])
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    run = Path(summary["best_run"]["run_dir"])
    assert (run / "model.keras").is_file() and "validation_accuracy" in summary["best_run"]
    saved = json.loads((run / "config.json").read_text())
    assert saved["learning_rate"] == summary["best"]["settings"]["learning_rate"]
