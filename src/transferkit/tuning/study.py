"""`tune`: an Optuna study over the head's settings on cached features, kept in Optuna's RDB
storage, with its results written as files a user reads and `train` takes.

The study lives in `--storage` (default: SQLite, `tune.db` in the output folder). Running the
command again with the same storage continues it until it holds `trials` finished trials; other
processes, on this machine (one SQLite file) or others (a PostgreSQL or MySQL URL), can run trials
of the same study at the same time: Optuna hands each trial its own number and the sampler reads
every finished trial. A study remembers what it tunes (task, data, candidates) and refuses to
continue on other data. Trials that a killed process left running are marked failed by Optuna's
heartbeat and do not count.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from transferkit.config import ImageTrainConfig
from transferkit.errors import InputError

__all__ = ["STUDY_NAME", "tune"]

#: The study's name in its storage unless `study` says another.
STUDY_NAME = "transferkit-tune"
#: How the best settings are chosen: the defaults' trial is the incumbent, and the best
#: `FINALISTS` trials on the scoring split challenge it on `FOLDS` folds (cross-validation over
#: every example the trials see); a challenger wins only with a lower loss on every fold (a
#: sign test: 5 of 5 by chance is p = 0.03), the lowest mean among winners. One split of a few
#: hundred examples ranks settings whose losses differ by less than its noise: on cats/dogs the
#: split's best, also best in a plain 5-fold mean (0.0217 vs 0.0233), scored 0.987 on the
#: report's split against the defaults' 0.994.
FINALISTS = 2
FOLDS = 5  # images: folds of 80%, as the trials train on
_HEARTBEAT_SECONDS = 10
_GRACE_SECONDS = 30
_OPEN_ATTEMPTS = 5


def tune(kind: str, data: str | os.PathLike, *, trials: int = 50, timeout: float | None = None,
         backbones: list[str] | None = None, output: str | os.PathLike | None = None,
         storage: str | None = None, study: str = STUDY_NAME, seed: int = ImageTrainConfig.seed,
         text_column: str | None = None, label_column: str | None = None,
         train_best: bool = False, track=None, experiment: str | None = None,
         folds: int = FOLDS, jobs: int = 1, log=print) -> dict:
    """Searches the head's settings for `data` with Optuna (TPE, median pruning on each epoch's
    loss), scoring each trial on a split the final report never reads
    (`transferkit.tuning.features`).

    Args:
        kind: `"images"` (a folder of class folders) or `"text"` (a table).
        trials: finished (complete or pruned) trials the study should hold.
        timeout: stop starting trials after this many seconds. Default `None`: no limit.
        backbones: candidates (backbones for images, sentence encoders for text); default the
            default backbone (`efficientnet_lite0`) or encoder for tuning (`minilm`).
        output: the folder for `trials.csv`, `best.toml`, the plots and `summary.json` (and
            `tune.db`). Default: a new `runs/tune-<time>` folder.
        storage: an Optuna storage URL. Default `sqlite:///<output>/tune.db`.
        folds: the defaults' trial stays the best unless one of the `FINALISTS` best trials
            on the scoring split has a lower loss on every one of `folds` folds over every
            example the trials see (cross-validation); 0: the scoring split's best.
        jobs: trials trained at once, in threads of this process (a trial's TensorFlow work
            runs outside Python's lock; each thread keeps its own compiled heads). Other
            processes or machines add trials through `storage`.
        train_best: then train a run with `best.toml` into `<output>/best-run` (tracked too
            with `track`).
        track: log the search to MLflow (`transferkit.tuning.tracking`): True for the default
            store, or a tracking URI. Default `None`: not tracked.
        experiment: the MLflow experiment. Default `"transferkit-tune"`.

    Returns:
        The summary (also `summary.json`): the best trial's value, accuracy and settings, the
        default settings' trial, the trials' states, the split scored on, the files.

    Raises:
        InputError: unknown `kind`, `trials` < 1, `folds` 1 or < 0, `jobs` < 1, an output that
            is a file, an unreachable storage, a study of other data.
    """
    from transferkit.extras import require

    _check_settings(kind, trials, folds, jobs)
    optuna = require("optuna", "`transferkit tune`")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    output = _output_folder(output)
    storage = storage or f"sqlite:///{(output / 'tune.db').resolve()}"
    candidates = list(backbones) if backbones else (
        [ImageTrainConfig.backbone] if kind == "images" else ["minilm"])
    identity = {"task": kind, "data": str(Path(data).resolve()), "candidates": candidates,
                "seed": seed, "target": "single-label"}
    if track is not None:  # a store that cannot be written is said before any work
        from transferkit.extras import require_installed
        from transferkit.tracking.store import check_store, tracking_uri

        require_installed("mlflow", "Tracking a search (`tune --track`)")
        check_store(tracking_uri(track))
    handle = _open_study(optuna, storage, study, identity, seed)  # before the features: fail fast
    started = time.perf_counter()
    prepared = _prepare(kind, data, candidates, seed, log, text_column, label_column)
    log(f"Trials are scored on {prepared.scored_on}; the final report reads "
        f"{prepared.report_split}, which no trial sees.")
    heads = _thread_heads(prepared, seed)
    _run_trials(optuna, handle, prepared, heads, trials, timeout, seed, jobs, log)
    summary = _write_results(optuna, handle, prepared, heads, folds, jobs, output, identity,
                             storage, started, log)
    if track is not None:
        from transferkit.tuning.tracking import log_search

        summary["tracking"] = log_search(handle, summary, output, track, experiment)
        log(f"Tracked: run {summary['tracking']['run_id']} with {summary['tracking']['trials']} "
            f"nested trial runs in {summary['tracking']['uri']}")
    if train_best:
        summary["best_run"] = _train_best(kind, data, output, log, track, experiment)
    if track is not None or train_best:
        (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _check_settings(kind: str, trials: int, folds: int, jobs: int) -> None:
    from transferkit.checks import check_int

    if kind not in ("images", "text"):
        raise InputError(f"`kind` must be 'images' or 'text'. Received: {kind!r}.")
    check_int(trials, "trials", minimum=1)
    check_int(folds, "folds", minimum=0)
    check_int(jobs, "jobs", minimum=1)
    if folds == 1:
        raise InputError("--folds 1 cannot cross-validate: give 2 or more, or 0 to choose "
                         "by the scoring split alone.")


def _output_folder(output) -> Path:
    """`output` (default a new `runs/tune-<time>`), made; refused when it is a file."""
    from transferkit.run_folder import default_run_dir

    output = Path(output) if output is not None else default_run_dir("tune")
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file; give a folder for the search's files.")
    output.mkdir(parents=True, exist_ok=True)
    return output


def _prepare(kind, data, candidates, seed, log, text_column, label_column):
    from transferkit.tuning.features import prepare_images, prepare_text

    if kind == "images":
        return prepare_images(data, candidates, seed, log)
    return prepare_text(data, candidates, seed, log, text_column, label_column)


def _storage(optuna, storage: str):
    """Optuna's RDB storage at `storage`, with a heartbeat (trials of a killed process are
    failed, not counted). Processes that create one database's tables at the same moment collide
    (`_collided`): the losers try again and find the tables made. SQLite waits up to 60 s for a
    lock rather than failing at once."""
    import warnings

    engine = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna 5.1
                warnings.simplefilter("ignore")
                return optuna.storages.RDBStorage(
                    storage, engine_kwargs=engine, heartbeat_interval=_HEARTBEAT_SECONDS,
                    grace_period=_GRACE_SECONDS)
        except Exception as exc:  # SQLAlchemy's errors: a bad URL, a server not reachable
            if _collided(exc) and attempt + 1 < _OPEN_ATTEMPTS:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise InputError(
                f"--storage {storage}: cannot open it ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}). Give a reachable database URL, e.g. "
                "sqlite:///tune.db or postgresql://user@host/db."
            ) from None
    raise AssertionError("unreachable")


def _collided(exc: Exception) -> bool:
    """Whether opening a storage failed only because another process was creating its tables
    at the same moment: Optuna checks for each table, then creates it, so a second creator finds
    a table made between the two ("table studies already exists") or a duplicate
    `alembic_version` row. CI met the first with two `tune` processes on a new SQLite file."""
    name = type(exc).__name__
    return name == "IntegrityError" or (
        name in ("OperationalError", "ProgrammingError") and "already exists" in str(exc))


def _open_study(optuna, storage: str, name: str, identity: dict, seed: int):
    """The study `name` in `storage`, created or continued; refused when it tunes other data."""
    from transferkit.tuning.trials import WARMUP_EPOCHS

    rdb = _storage(optuna, storage)
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=WARMUP_EPOCHS)
    study = optuna.create_study(storage=rdb, study_name=name, direction="minimize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    known = study.user_attrs.get("transferkit")
    if known is None:
        study.set_user_attr("transferkit", identity)
    elif known != identity:
        differs = ", ".join(f"{key} {known.get(key)!r} (this run: {identity[key]!r})"
                            for key in identity if known.get(key) != identity[key])
        raise InputError(
            f"The study {name!r} in {storage} tunes other data: {differs}. Use another "
            "--output (or --storage), or --study NAME for a new study."
        )
    return study


def _finished(optuna, study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def _thread_heads(prepared, seed: int):
    """A function giving this thread's compiled heads (`Heads`): trials running at once
    (`jobs`) each train their own."""
    import threading

    from transferkit.tuning.trials import Heads

    local = threading.local()

    def heads():
        if not hasattr(local, "heads"):
            local.heads = Heads(prepared, seed)
        return local.heads

    return heads


def _run_trials(optuna, study, prepared, heads, trials: int, timeout, seed: int, jobs: int,
                log) -> None:
    from transferkit.tuning.trials import default_params, sample, train_trial

    n_train = len(prepared.train_y)
    candidates = prepared.candidates
    if not study.trials:  # the defaults first: the best is never worse than them here
        study.enqueue_trial(default_params(prepared.kind, candidates, n_train),
                            user_attrs={"defaults": True})
    done = _finished(optuna, study)
    if done >= trials:
        log(f"The study already holds {done} finished trials (of {trials}): nothing to run.")
        return

    def objective(trial):
        params = sample(trial, prepared.kind, candidates, n_train)
        candidate = params.get("candidate", candidates[0])
        result = train_trial(prepared, candidate, params, seed, trial, heads())
        for key in ("accuracy", "epochs"):
            trial.set_user_attr(key, result[key])
        if result["pruned"]:
            raise optuna.TrialPruned()
        log(f"  trial {trial.number}: loss {result['loss']:.4f}, accuracy "
            f"{result['accuracy']:.4f} ({result['epochs']} epochs)")
        return result["loss"]

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
              optuna.trial.TrialState.RUNNING)
    log(f"Running trials until the study holds {trials} (it holds {done})")
    callbacks = [optuna.study.MaxTrialsCallback(trials, states=states)]
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    if jobs > 1 and waiting:
        # Enqueued trials (the defaults') one at a time: two threads of one process can take
        # the same waiting trial from Optuna's storage (both ran trial 0, and the second's
        # result was refused: "Trial#0 has already finished").
        study.optimize(objective, n_trials=len(waiting), timeout=timeout, callbacks=callbacks)
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    if left != 0.0:
        study.optimize(objective, timeout=left, n_jobs=jobs, callbacks=callbacks)


def _confirm(complete: list, prepared, heads, folds: int, seed: int, jobs: int, log) -> tuple:
    """`(best trial, finalists, folds)`: the defaults' trial unless a finalist beats it on every
    one of `folds` folds (`FINALISTS`, `FOLDS`). Without cross-validation (`folds` 0, no
    defaults' trial, a class too small for two folds): the scoring split's best. The defaults'
    folds, then the challengers, run `jobs` at once (`heads()`: this thread's heads)."""
    from concurrent.futures import ThreadPoolExecutor

    from transferkit.tuning.trials import fold_loss, fold_splits, settings_of

    ranked = sorted(complete, key=lambda trial: trial.value)
    defaults = next((t for t in complete if t.user_attrs.get("defaults")), None)
    folds = min(folds, int(np.bincount(prepared.all_y).min()))
    challengers = [t for t in ranked[:FINALISTS] if t is not defaults]
    if defaults is None or folds < 2 or not challengers:
        return ranked[0], [], None
    splits = fold_splits(prepared, folds, seed)

    def loss(trial, split) -> float:
        return fold_loss(prepared, heads(), settings_of(trial.params), seed, split)

    def challenge(trial) -> dict:
        seen = []
        for split, theirs in zip(splits, incumbent, strict=True):
            seen.append(loss(trial, split))
            if seen[-1] >= theirs:  # lost a fold: it cannot win, stop here
                break
        return {"trial": trial.number, "loss": trial.value, "defaults": False,
                "fold_losses": seen,
                "better_on_every_fold": len(seen) == folds and seen[-1] < incumbent[-1]}

    with ThreadPoolExecutor(jobs) as pool:
        incumbent = list(pool.map(lambda split: loss(defaults, split), splits))
        rows = [{"trial": defaults.number, "loss": defaults.value, "defaults": True,
                 "fold_losses": incumbent, "better_on_every_fold": None},
                *pool.map(challenge, challengers)]
    winners = [row for row in rows if row["better_on_every_fold"]]
    chosen = min(winners, key=lambda row: np.mean(row["fold_losses"])) if winners else rows[0]
    log(f"Finalists on {folds} folds of the {len(prepared.all_y)} examples the trials see "
        f"(the defaults' mean loss {np.mean(incumbent):.4f}): " + "; ".join(
            f"trial {row['trial']} " + ("better on every fold, mean "
                                        f"{np.mean(row['fold_losses']):.4f}"
                                        if row["better_on_every_fold"] else
                                        f"not better on fold {len(row['fold_losses'])}")
            for row in rows[1:])
        + (f". Best: trial {chosen['trial']}" if winners else
           ". Best: the defaults (no finalist beat them on every fold)"))
    return next(t for t in complete if t.number == chosen["trial"]), rows, folds


def _write_results(optuna, study, prepared, heads, folds: int, jobs: int, output: Path,
                   identity: dict, storage: str, started: float, log) -> dict:
    from transferkit.tuning.results import best_config, write_plots, write_toml, write_trials

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise InputError("No trial completed (all were pruned or failed): nothing to choose from.")
    best, finalists, folds = _confirm(complete, prepared, heads, folds, identity["seed"], jobs,
                                      log)
    config = best_config(prepared, best.params, identity["seed"])
    files = {"trials": write_trials(study, output / "trials.csv"),
             "best": write_toml(config, output / "best.toml"),
             **write_plots(study, output, log)}
    defaults = next((t for t in complete if t.user_attrs.get("defaults")), None)
    states: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    summary = {
        "task": prepared.kind, "data": identity["data"], "storage": storage,
        "study": study.study_name, "trials": states, "scored_on": prepared.scored_on,
        "report_split": prepared.report_split,
        "best": {"trial": best.number, "loss": best.value,
                 "accuracy": best.user_attrs.get("accuracy"), "settings": config},
        "finalists": finalists, "folds": folds,
        "defaults": None if defaults is None else {
            "trial": defaults.number, "loss": defaults.value,
            "accuracy": defaults.user_attrs.get("accuracy")},
        "seconds": round(time.perf_counter() - started, 1),
        "files": {key: str(path) for key, path in files.items()},
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"Best: trial {best.number}, loss {best.value:.4f}, accuracy "
        f"{best.user_attrs.get('accuracy'):.4f}"
        + ("" if defaults is None else f" (the defaults: loss {defaults.value:.4f}, accuracy "
           f"{defaults.user_attrs.get('accuracy'):.4f})") + f"; {output / 'best.toml'}")
    return summary


def _train_best(kind: str, data, output: Path, log, track, experiment) -> dict:
    from transferkit.config import read_config_file

    settings = read_config_file(output / "best.toml")
    run = output / "best-run"
    log(f"Training with best.toml into {run}")
    tracking = {"track": track, "experiment": experiment} if track is not None else {}
    if kind == "images":
        from transferkit.pipelines.images import train_images

        result = train_images(data, output=run, log=log, verbose=0, **tracking, **settings)
    else:
        from transferkit.pipelines.text import train_text

        result = train_text(data, output=run, log=log, verbose=0, **tracking, **settings)
    return {"run_dir": str(run), **{key: result[key] for key in
                                    ("validation_accuracy", "test_accuracy") if key in result}}
