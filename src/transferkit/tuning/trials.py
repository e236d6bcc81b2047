"""One trial: the search space's sample, and a head trained on the cached features with it.

The space is the head's settings that `train` takes (so that the best trial is a `--config`
file): Adam's learning rate (log-uniform), batch size, early-stopping patience, class weights,
and dropout (images) or hidden units and the encoder's feature kind (text); the backbone (or
encoder) too when several are given. The head is the one `train` builds (`head_layers` for
images, `build_sentence_head` for text), compiled with the same loss, and stops early on the
scoring split's loss, keeping its best epoch; that loss is the trial's value (lower is better).
Each epoch's loss is reported to Optuna's pruner, which stops trials that trail the median.
"""

from __future__ import annotations

import numpy as np

from transferkit.config import CLASS_WEIGHTS, IMAGE_HEAD_PATIENCE, ImageTrainConfig, TextTrainConfig

__all__ = ["MAX_EPOCHS", "default_params", "sample", "train_trial"]

#: The most epochs of a trial's head (early stopping ends most far sooner); also `best.toml`'s.
MAX_EPOCHS = 60
STEPS = 64
_BATCH_SIZES = (16, 32, 64, 128)
_HEAD_UNITS = (0, 64, 256)



def batch_sizes(n_train: int) -> list[int]:
    """The batch sizes a search tries: those not larger than the training examples."""
    return [size for size in _BATCH_SIZES if size <= n_train] or [max(1, n_train)]


def sample(trial, kind: str, candidates: list[str], n_train: int) -> dict:
    """The settings of one trial (Optuna `trial`), by their `train` names."""
    params = {}
    if len(candidates) > 1:
        params["candidate"] = trial.suggest_categorical("candidate", candidates)
    params["learning_rate"] = trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True)
    params["batch_size"] = trial.suggest_categorical("batch_size", batch_sizes(n_train))
    params["patience"] = trial.suggest_int("patience", 3, 15)
    params["class_weight"] = trial.suggest_categorical("class_weight", list(CLASS_WEIGHTS))
    if kind == "images":
        params["dropout"] = trial.suggest_float("dropout", 0.0, 0.6)
    else:
        params["head_units"] = trial.suggest_categorical("head_units", _HEAD_UNITS)
    return params


def default_params(kind: str, candidates: list[str], n_train: int) -> dict:
    """`train`'s defaults in the space's terms: the first trial of every search, so that the
    best trial is at least as good as the defaults on the scoring split."""
    sizes = batch_sizes(n_train)
    if kind == "images":
        d = ImageTrainConfig()
        params = {"learning_rate": d.learning_rate,
                  "patience": IMAGE_HEAD_PATIENCE["single-label"], "dropout": d.dropout}
    else:
        from transferkit.backbones.transformer_encoder import SentenceTransformer

        d = TextTrainConfig()
        params = {"learning_rate": SentenceTransformer.defaults.learning_rate,
                  "patience": d.patience,
                  "head_units": SentenceTransformer.option_defaults["head_units"]}
    params["batch_size"] = d.batch_size if d.batch_size in sizes else sizes[-1]
    params["class_weight"] = d.class_weight
    if len(candidates) > 1:
        params["candidate"] = candidates[0]
    return params


def _head(prepared, candidate: str, params: dict, train_x: np.ndarray):
    import keras

    from transferkit.tasks.targets import num_logits

    outputs = num_logits("single-label", len(prepared.class_names))
    if prepared.kind == "images":
        from transferkit.backbones.image_encoder import head_layers

        inputs = keras.Input((train_x.shape[1],), name="features")
        x = inputs
        for layer in head_layers(outputs, params["dropout"]):
            x = layer(x)
        return keras.Model(inputs, x, name="head")
    from transferkit.backbones.transformer_encoder import SentenceTransformer, build_sentence_head

    return build_sentence_head(train_x.shape[1], outputs, dropout=SentenceTransformer.dropout,
                               hidden_units=params["head_units"], normalization_data=train_x)


def _pruning_callback(trial):
    import keras

    class ReportLoss(keras.callbacks.Callback):
        """Reports each epoch's scoring loss to Optuna; stops the fit when it says prune."""

        pruned = False

        def on_epoch_end(self, epoch, logs=None):
            trial.report(float(logs["val_loss"]), epoch)
            if trial.should_prune():
                self.pruned = True
                self.model.stop_training = True

    return ReportLoss()


def _batches(x: np.ndarray, y: np.ndarray, batch_size: int):
    """A `tf.data` pipeline of `(x, y)` batches in order (for scoring): a few times faster per
    epoch than Keras adapting the arrays again each epoch."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(2)


def _training_batches(x: np.ndarray, y: np.ndarray, views: np.ndarray | None, batch_size: int,
                      seed: int):
    """The training batches as `train`'s head phase makes them on cached features: each epoch
    draws as many rows as there are examples from the plain features and their augmented views
    (`views`, `(n, views, dim)`), in an order from `(seed, epoch)`."""
    from transferkit.data.epoch_order import EpochOrder

    pool_x, pool_y = x, np.asarray(y)
    if views is not None and views.size:
        pool_x = np.concatenate([x[:, None, :], views], axis=1)
        pool_y = np.repeat(pool_y, pool_x.shape[1], axis=0)
        pool_x = pool_x.reshape(-1, pool_x.shape[-1])
    order = EpochOrder(len(pool_x), seed)
    return order.attach(order.slices((pool_x, pool_y)).take(len(x)).batch(batch_size)
                        .prefetch(2))


def train_trial(prepared, candidate: str, params: dict, seed: int, trial=None) -> dict:
    """Trains one head with `params` on `candidate`'s features; `{"loss", "accuracy", "epochs",
    "pruned"}` on the scoring split at the best epoch (with `trial`, pruned trials stop early)."""
    import keras

    from transferkit.data.labels import class_weights_for
    from transferkit.tasks.targets import compile_spec

    keras.utils.set_random_seed(seed)
    train_x, val_x = prepared.features[candidate]
    views = prepared.train_views.get(candidate)
    head = _head(prepared, candidate, params, train_x)
    loss, metrics = compile_spec("single-label", len(prepared.class_names))
    head.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]), loss=loss,
                 metrics=metrics, jit_compile=False, steps_per_execution=STEPS)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params["patience"],
                                         restore_best_weights=True)
    callbacks = [stop]
    if trial is not None:
        callbacks.append(_pruning_callback(trial))
    weights = class_weights_for(prepared.train_y, prepared.class_names, params["class_weight"],
                                {})
    history = head.fit(_training_batches(train_x, prepared.train_y, views, params["batch_size"],
                                         seed),
                       validation_data=_batches(val_x, prepared.val_y, 1024),
                       epochs=MAX_EPOCHS, class_weight=weights, callbacks=callbacks, verbose=0,
                       shuffle=False)  # the pipeline shuffles
    losses = history.history["val_loss"]
    logits = np.asarray(head.predict(val_x, batch_size=1024, verbose=0))
    predicted = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)
    return {"loss": float(np.min(losses)), "accuracy": float(np.mean(predicted == prepared.val_y)),
            "epochs": int(np.argmin(losses)) + 1, "pruned": bool(callbacks[-1].pruned)
            if trial is not None else False}
