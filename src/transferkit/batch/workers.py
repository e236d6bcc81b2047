"""The work of a batch job on one shard of inputs: load the model once, compute, write a piece.

`ShardWorker` is what runs the job both locally (one worker in this process) and on Ray (one
worker per actor of `map_batches`'s actor pool): it loads the model in its constructor, and each
call turns a shard `{"index": ..., "item": ...}` into rows, writes them as one Parquet piece and
returns how many rows it wrote. Inputs that cannot be read are rows too, with their `error`.

What it computes (`job["command"]`, `job["source_kind"]`):
- `predict` of a trained model: `label`, `score`, and `prob_<class>` for each class;
- `embed` of an image backbone, or of a trained image model (its backbone, fine-tuned or not):
  the pooled features, as fed to the classifier's head;
- `embed` of a sentence encoder (`"minilm"`, a folder): its sentence vector; of a trained text
  model: what its last `Dense` layer sees.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

__all__ = ["ShardWorker", "open_source"]


def open_source(job: dict, model_bytes: bytes | None = None):
    """The classifier, image encoder or sentence encoder `job` runs, loaded once per worker.

    A trained model comes as a path, or as the bytes of its `.keras` file (Ray: the driver puts
    the file in the object store, so that no node needs the driver's disk).
    """
    kind = job["source_kind"]
    if kind == "backbone":
        from transferkit.backbones.image_encoder import ImageEncoder

        encoder = ImageEncoder(job["model"], runtime=job["runtime"])
        encoder.build()
        return encoder
    if kind == "encoder":
        from transferkit.backbones.sentence_encoders import load_sentence_encoder

        return load_sentence_encoder(job["model"])
    from transferkit.tasks.base import load

    if model_bytes is None:
        classifier = load(job["model_path"])
    else:
        with tempfile.TemporaryDirectory(prefix="transferkit-model-") as folder:
            path = Path(folder) / "model.keras"
            path.write_bytes(model_bytes)
            classifier = load(path)
    if job["task"] == "image":
        classifier.get_encoder().runtime = job["runtime"]
    return classifier


class ShardWorker:
    """Computes and writes shards of one job (see the module docstring).

    Args:
        job: the job (`transferkit.batch.jobs.describe_job`): command, source, task, runtime,
            batch size, output folder.
        model_bytes: the trained model's `.keras` file, when the worker cannot read its path, or
            `[ObjectRef]` of it in Ray's object store.
    """

    def __init__(self, job: dict, model_bytes: bytes | None = None):
        from transferkit.batch.output import ShardedParquet

        if isinstance(model_bytes, list):
            from transferkit.extras import require

            ray = require("ray", "Running on Ray (`ray`)")  # the driver put the model there
            model_bytes = ray.get(model_bytes[0])
        self.job = job
        self.output = ShardedParquet(job["output"])
        self.source = open_source(job, model_bytes)
        self.runtime = None
        if job["task"] == "image":  # "auto" settled once: every shard runs on the same runtime
            self.encoder = (self.source if job["source_kind"] == "backbone"
                            else self.source.get_encoder())
            self.runtime = self.encoder.settle_runtime(job["inputs"])
        self.dim = self._dim() if job["command"] == "embed" else None

    def __call__(self, shard: dict) -> dict:
        table = self.compute(np.asarray(shard["index"]), [str(i) for i in shard["item"]])
        self.output.write(table)
        errors = sum(value is not None for value in table.column("error").to_pylist())
        return {"rows": np.array([table.num_rows]), "errors": np.array([errors]),
                "runtime": np.array([self.runtime or ""], dtype=object)}

    def _dim(self) -> int:
        """How many numbers an embedding has."""
        if self.job["task"] == "image":
            return self.encoder.feature_dim
        if self.job["source_kind"] == "encoder":
            return int(self.source.feature_dim(self.job["features"]))
        self._penultimate = penultimate_model(self.source.network)
        return int(self._penultimate.output.shape[-1])

    def compute(self, index: np.ndarray, items: list[str]):
        """The rows of one shard, as a `pyarrow.Table`."""
        from transferkit.batch.inputs import content_digests

        job = self.job
        task, command, batch_size = job["task"], job["command"], job["batch_size"]
        # Before computing: a file that changes meanwhile then looks changed to the next rerun.
        digests = content_digests(task, items)
        if task == "image":
            values, errors = (self._image_scores if command == "predict"
                              else self._image_features)(items, batch_size)
        else:
            errors = [None] * len(items)
            values = (self._text_scores if command == "predict"
                      else self._text_features)(items, batch_size)
        return _table(job, index, items, values, errors, self.dim, digests)

    def _image_scores(self, paths: list[str], batch_size: int):
        probabilities, unreadable = self.source.probabilities_and_errors(paths, batch_size)
        return probabilities, _errors(paths, {u["path"]: u["reason"] for u in unreadable})

    def _image_features(self, paths: list[str], batch_size: int):
        from transferkit.data.image_inputs import ImageInputs
        from transferkit.data.images import DecodeLog

        log = DecodeLog()
        features, _ = self.encoder.readable_features(ImageInputs(paths), batch_size=batch_size,
                                                     decode_log=log, cached=False)
        return features, _errors(paths, log.errors)

    def _text_scores(self, texts: list[str], batch_size: int):
        self.runtime = "keras"
        return self.source.probabilities_and_errors(texts, batch_size)[0]

    def _text_features(self, texts: list[str], batch_size: int):
        from transferkit.backbones.text_encoders import tokenize
        from transferkit.data.sequences import predict_padded

        if self.job["source_kind"] == "encoder":
            encoder = self.source
            if not hasattr(self, "tokenizer"):
                from transferkit.backbones.sentence_encoders import MAX_SEQUENCE_LENGTH

                length = min(encoder.max_sequence_length, MAX_SEQUENCE_LENGTH)
                self.tokenizer = encoder.text_inputs(length)
            vectors = encoder.embed(tokenize(self.tokenizer, texts),
                                    features=self.job["features"], batch_size=batch_size,
                                    runtime=self.job["runtime"])
            self.runtime = encoder.last_runtime
            return vectors
        self.runtime = "keras"
        return predict_padded(self._penultimate, tokenize(self.source.tokenizer, texts),
                              batch_size)


def penultimate_model(network):
    """`network` up to the input of its last `Dense` layer: what a text classifier's head sees
    (inside a nested head model, as a sentence encoder's network has, too)."""
    import keras

    last = network.layers[-1]
    if isinstance(last, keras.Model):  # the head is a model of its own, fed by the layer before
        features = network.layers[-2].output
        return keras.Model(network.inputs, penultimate_model(last)(features), name="penultimate")
    dense = [layer for layer in network.layers if isinstance(layer, keras.layers.Dense)]
    return keras.Model(network.inputs, dense[-1].input, name="penultimate")


def _errors(items: list[str], reasons: dict[str, str]) -> list[str | None]:
    return [reasons.get(item) for item in items]


def _target_columns(job: dict, values: np.ndarray, failed: np.ndarray) -> dict:
    """A multi-label model's `labels` (the predicted set, `;`-joined, best first) and
    `score_<label>` columns; a regression model's `value`."""
    import pyarrow as pa

    from transferkit.tasks.targets import describe_row

    names = job["class_names"]
    if job["target"] == "regression":
        flat = values.reshape(len(values), -1)[:, 0] if len(values) else np.zeros(0)
        return {"value": pa.array(np.where(failed, np.nan, flat), pa.float64())}
    sets = [None if bad else ";".join(describe_row("multi-label", names, row,
                                                   job.get("thresholds"))["labels"])
            for row, bad in zip(values, failed)]
    columns = {"labels": pa.array(sets, pa.string())}
    for k, name in enumerate(names):
        columns[f"score_{name}"] = pa.array(np.where(failed, np.nan, values[:, k]), pa.float64())
    return columns


def _table(job: dict, index: np.ndarray, items: list[str], values: np.ndarray, errors: list,
           dim: int | None, digests: list[str]):
    """The rows: `index`, `path` or `text`, `sha256` (of the content the row was computed
    from: what a rerun checks, `ShardedParquet.keep`), then scores or `embedding`, then
    `error`."""
    import pyarrow as pa

    values = np.asarray(values, dtype=np.float64 if job["command"] == "predict" else np.float32)
    if job["command"] == "embed" and values.shape != (len(items), dim):
        values = np.zeros((len(items), dim), np.float32)  # no input could be read
    failed = np.array([e is not None for e in errors], dtype=bool)
    columns = {"index": pa.array(index, pa.int64()),
               ("path" if job["task"] == "image" else "text"): pa.array(items, pa.string()),
               "sha256": pa.array(digests, pa.string())}
    if job["command"] == "predict" and job.get("target", "single-label") != "single-label":
        columns.update(_target_columns(job, values, failed))
    elif job["command"] == "predict":
        names = job["class_names"]
        best = np.argmax(values, axis=1) if len(values) else np.zeros(0, int)
        columns["label"] = pa.array([None if bad else names[b] for b, bad in zip(best, failed)],
                                    pa.string())
        score = values[np.arange(len(values)), best] if len(values) else np.zeros(0)
        columns["score"] = pa.array(np.where(failed, np.nan, score), pa.float64())
        for k, name in enumerate(names):
            columns[f"prob_{name}"] = pa.array(np.where(failed, np.nan, values[:, k]),
                                               pa.float64())
    else:
        flat = pa.array(values.reshape(-1).astype(np.float32), pa.float32())
        vectors = pa.FixedSizeListArray.from_arrays(flat, dim)
        columns["embedding"] = pa.array(
            [None if bad else v for v, bad in zip(vectors.to_pylist(), failed)],
            pa.list_(pa.float32(), dim)) if failed.any() else vectors
    columns["error"] = pa.array(errors, pa.string())
    return pa.table(columns)
