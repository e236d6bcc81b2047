"""Batch jobs: `batch_predict` and `batch_embed` over many inputs (`transferkit predict ...
--output`, `transferkit embed`): local streaming, or Ray Data, into resumable Parquet.

    transferkit.batch_predict("runs/cats/model.keras", "photos/", "predictions.parquet")
    transferkit.batch_embed("efficientnet_lite0", "photos/", "features.parquet", ray=True,
                            workers=2)

Both read the inputs' paths (or texts) only (`transferkit.batch.inputs`), split the ones not done
yet into shards of `shard_size`, and hand the shards to `ShardWorker`s
(`transferkit.batch.workers`), which load the model once, compute and each write one Parquet
piece of the output folder (`transferkit.batch.output`). Locally one worker runs in this process,
one shard in memory at a time; with `ray`, Ray Data runs them as an actor pool on a cluster
(`transferkit.batch.on_ray`). Either way the output is the same and a rerun resumes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transferkit.checks import check_int
from transferkit.config import ImageTrainConfig
from transferkit.errors import InputError

__all__ = ["EMBED_FEATURES", "SHARD_SIZE", "batch_embed", "batch_predict"]

#: Inputs per shard (one Parquet piece each): big enough for few files and fast forward passes,
#: small enough that a killed run loses little and the progress bar moves.
SHARD_SIZE = 512
#: What `embed` takes from a sentence encoder: its sentence vector (the usual embedding; training
#: a head defaults to every layer's mean, `TextTrainConfig.features`).
EMBED_FEATURES = "sentence"
_RUNTIME = ImageTrainConfig.runtime


def batch_predict(model, inputs, output, *, batch_size: int | None = None,
                  shard_size: int = SHARD_SIZE, ray=False, workers: int | None = None,
                  runtime: str = _RUNTIME, text_column: str | None = None,
                  progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Labels every input with a trained classifier and writes a Parquet dataset.

    Args:
        model: a `.keras` file, run folder, or `models:/NAME@ALIAS` (see `transferkit.load`).
        inputs: a folder of images (recursive), a `.txt` file of image paths, image files, or
            for a text model a table of texts or a `.txt` file of texts
            (`transferkit.batch.inputs.read_inputs`).
        output: the output folder, e.g. `"predictions.parquet"`: one row an input with `index`,
            `path` (images) or `text`, `label`, `score`, `prob_<class>` for each class, and
            `error` (why an input could not be read; its scores are NaN).
        batch_size: inputs per forward pass. Default `None`: the model's training batch size.
        shard_size: inputs per piece of the output. Default `SHARD_SIZE` (512).
        ray: `False` (the default) runs here; `True` on a local Ray started for the job, or a
            Ray address (`"auto"`, `"127.0.0.1:6379"`, `"ray://host:10001"`).
        workers: Ray actors, one model each. Default `None`: one per two CPUs of the cluster.
        runtime: what runs an image backbone: `"auto"`, `"onnx"` or `"keras"`
            (`transferkit.runtimes`). Default `"auto"`.
        text_column: a table's text column. Default `None`: `text`, `sentence` or `review`.
        progress: show a progress bar. Default `True`.
        log: called with the line saying that the output's lock, left by a killed job, was
            taken over. Default `print`.

    Returns:
        A summary: `output`, `inputs`, `done` (rows written by this call), `resumed` (rows
        already there and kept: their input has the content they were computed from),
        `changed` (inputs whose rows were there but were computed again: their content changed
        since), `errors`, `skipped` (inputs left out before the job, with why), `seconds`,
        `items_per_second`, `runtime`, `engine` (`"local"` or `"ray"`).

    Raises:
        InputError: among others, `output` holds another job's output, or another job is
            writing it now (its process id is named).
    """
    from transferkit.model_files import check_model_file
    from transferkit.model_ref import ModelRef

    ref = ModelRef.resolve(model)
    check_model_file(ref.model_path, ref.config)  # a Lambda layer or a damaged file, said before a worker loads it
    if batch_size is None:  # only None means the default: 0 is refused by `_run`, as -1 is
        batch_size = ref.train_config.get("batch_size") or ImageTrainConfig.batch_size
    job = {"command": "predict", "source_kind": "model", "model": ref.given,
           "model_path": os.fspath(ref.model_path), "task": ref.task,
           "class_names": ref.class_names, "batch_size": batch_size,
           "target": ref.labels.get("target", "single-label"),
           "thresholds": (ref.labels.get("metadata") or {}).get("thresholds")}
    return _run(job, inputs, output, shard_size=shard_size, ray=ray, workers=workers,
                runtime=runtime, text_column=text_column, progress=progress, log=log)


def batch_embed(source, inputs, output, *, features: str = EMBED_FEATURES,
                batch_size: int | None = None, shard_size: int = SHARD_SIZE, ray=False,
                workers: int | None = None, runtime: str = _RUNTIME,
                text_column: str | None = None, progress: bool = True,
                log: Callable[[str], None] = print) -> dict:
    """Feature vectors of every input (the "feature extractor" use), as a Parquet dataset.

    Args:
        source: an image backbone name (`"efficientnet_lite0"`, `transferkit backbones`), a
            sentence encoder (`"minilm"` or a model folder), or a trained model (`.keras`, run
            folder, `models:/...`): its backbone's pooled features (images) or what its last
            layer sees (text).
        inputs: as in `batch_predict`.
        output: the output folder: `index`, `path` or `text`, `embedding` (a fixed-size list of
            float32) and `error`.
        features: for a sentence encoder: `"sentence"` (its sentence vector, the default) or
            `"layers"` (each layer's mean, concatenated).
        batch_size, shard_size, ray, workers, runtime, text_column, progress, log: as in
            `batch_predict`.

    Returns:
        The summary of `batch_predict`, with `dim` (numbers a vector).
    """
    job = _embed_source(source, features)
    job["batch_size"] = ImageTrainConfig.batch_size if batch_size is None else batch_size
    return _run(job, inputs, output, shard_size=shard_size, ray=ray, workers=workers,
                runtime=runtime, text_column=text_column, progress=progress, log=log)


def _embed_source(source, features: str) -> dict:
    """The job's source: a trained model, an image backbone, or a sentence encoder."""
    from transferkit.backbones.registry import list_backbones
    from transferkit.backbones.sentence_encoders import check_features, list_sentence_encoders
    from transferkit.backbones.sources import is_image_backbone_folder
    from transferkit.model_ref import ModelRef

    name = os.fspath(source)
    ref = ModelRef.resolve(name)
    if ref.kind in ("run", "mlflow") or name.endswith(".keras"):
        return {"command": "embed", "source_kind": "model", "model": name,
                "model_path": os.fspath(ref.model_path), "task": ref.task}
    if name in list_backbones() or is_image_backbone_folder(name):
        return {"command": "embed", "source_kind": "backbone", "model": name, "task": "image"}
    if name in list_sentence_encoders() or Path(name).is_dir():
        return {"command": "embed", "source_kind": "encoder", "model": name, "task": "text",
                "features": check_features(features)}
    raise InputError(
        f"`source` must be an image backbone (`transferkit backbones`, or a SavedModel or "
        f"KerasHub image preset folder), a sentence encoder "
        f"({', '.join(list_sentence_encoders())} or a model folder) or a trained model "
        f"(.keras, run folder, models:/...). Received: {name!r}."
    )


def _run(job: dict, inputs, output, *, shard_size, ray, workers, runtime, text_column,
         progress, log) -> dict:
    from transferkit.batch.inputs import read_inputs
    from transferkit.batch.output import ShardedParquet
    from transferkit.files import sha256_file
    from transferkit.runtimes import check_runtime

    check_int(shard_size, "shard_size", minimum=1)
    check_int(job["batch_size"], "batch_size", minimum=1)
    if workers is not None:
        check_int(workers, "workers", minimum=1)
        if not ray:  # the local run has one model; only Ray runs several
            raise InputError("`workers` is for Ray: add `ray` (and a cluster address, or none).")
    if ray:  # before the inputs are read and the output folder is made
        from transferkit.extras import require_installed

        require_installed("ray", "Running on Ray (`ray`)")
    found = read_inputs(inputs, job["task"], text_column=text_column, model=job["model"])
    job.update(runtime=check_runtime(runtime), output=os.fspath(output), source=found.source,
               inputs=len(found), inputs_sha256=found.digest())
    if job["source_kind"] == "model":
        job["model_sha256"] = sha256_file(job["model_path"])
    else:
        job["model_sha256"] = f"{job['source_kind']}:{job['model']}:{job.get('features', '')}"
    sink = ShardedParquet(output, {key: value for key, value in job.items()
                                   if key not in ("output", "model_path")})
    sink.open(log)
    try:
        done, changed = sink.keep(found.content_digests)
        return _run_pending(job, found, done, changed, shard_size=shard_size, ray=ray,
                            workers=workers, progress=progress)
    finally:
        sink.release()


def _run_pending(job: dict, found, done: set[int], changed: int, *, shard_size, ray, workers,
                 progress) -> dict:
    """Computes the inputs not `done` yet (holding the output's lock); returns the summary."""
    pending = np.array([i for i in range(len(found)) if i not in done], dtype=np.int64)
    started = time.perf_counter()
    summary = {"output": job["output"], "inputs": len(found), "resumed": len(done),
               "changed": changed, "done": 0, "errors": 0, "skipped": found.skipped,
               "runtime": None, "engine": "ray" if ray else "local"}
    meter = _Meter(len(pending), "images" if job["task"] == "image" else "texts", progress)
    if len(pending):
        run = _on_ray if ray else _locally
        summary.update(run(job, found.items, pending, shard_size=shard_size, ray=ray,
                           workers=workers, meter=meter))
    seconds = time.perf_counter() - started
    summary.update(seconds=round(seconds, 3),
                   items_per_second=round(summary["done"] / seconds, 2) if seconds else None,
                   **meter.rates(started))
    return summary


def _shards(pending: np.ndarray, shard_size: int):
    for start in range(0, len(pending), shard_size):
        yield pending[start:start + shard_size]


def _locally(job: dict, items: list[str], pending: np.ndarray, *, shard_size, meter,
             **_) -> dict:
    from transferkit.batch.workers import ShardWorker

    worker = ShardWorker(job)  # loads the model before the clock of the progress bar starts
    with meter as advance:
        written = errors = 0
        for shard in _shards(pending, shard_size):
            result = worker({"index": shard, "item": [items[i] for i in shard]})
            written += int(result["rows"][0])
            errors += int(result["errors"][0])
            advance(len(shard))
    return {"done": written, "errors": errors, "runtime": worker.runtime}


def _on_ray(job: dict, items: list[str], pending: np.ndarray, *, shard_size, ray, workers,
            meter) -> dict:
    from transferkit.batch.on_ray import run_on_ray

    with meter as advance:
        return run_on_ray(job, items, pending, shard_size=shard_size,
                          address=None if ray is True else str(ray), workers=workers,
                          advance=advance)


class _Meter:
    """Counts finished inputs: a rich progress bar with inputs a second on stderr (none with
    `show=False`), and the start-up and steady rates for the summary."""

    def __init__(self, total: int, unit: str, show: bool):
        self.total, self.unit, self.show = total, unit, show
        self._bar = None
        self.marks: list[tuple[float, int]] = []  # (time, inputs done) after each shard

    def rates(self, started: float) -> dict:
        """`startup_seconds` (until the first shard was done: loading the model, starting Ray
        and its actors) and `steady_items_per_second` (after it; None with a single shard)."""
        if not self.marks:
            return {"startup_seconds": None, "steady_items_per_second": None}
        (first_time, first_done), (last_time, last_done) = self.marks[0], self.marks[-1]
        steady = ((last_done - first_done) / (last_time - first_time)
                  if last_time > first_time else None)
        return {"startup_seconds": round(first_time - started, 3),
                "steady_items_per_second": None if steady is None else round(steady, 2)}

    def _mark(self, count: int) -> None:
        done = (self.marks[-1][1] if self.marks else 0) + count
        self.marks.append((time.perf_counter(), done))

    def __enter__(self):
        if not self.show:
            return self._mark
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._bar.start()
        task = self._bar.add_task(self.unit, total=self.total, rate="")
        started = time.perf_counter()

        def advance(count: int) -> None:
            self._mark(count)
            done = self._bar.tasks[0].completed + count
            rate = done / max(time.perf_counter() - started, 1e-9)
            self._bar.update(task, completed=done, rate=f"{rate:,.1f} {self.unit}/s")

        return advance

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
