"""One trial: the search space's sample, and a head trained on the cached features with it.

The space is the head's settings that `train` takes (so that the best trial is a `--config`
file): Adam's learning rate (log-uniform) and decoupled weight decay (AdamW's form of L2),
batch size, early-stopping patience, class weights, dropout, and for text the head's hidden
units and the encoder's feature kind; the backbone (or encoder) too when several are given.
The head is the one `train` builds (`head_layers` for images, `build_sentence_head` for text),
compiled with the same loss, and stops early on the scoring split's loss, keeping its best
epoch; that loss is the trial's value (lower is better). Each epoch's loss is reported to
Optuna's pruner, which stops trials that trail the median.
"""

from __future__ import annotations

import threading

import numpy as np

from transferkit.config import CLASS_WEIGHTS, IMAGE_HEAD_PATIENCE, ImageTrainConfig, TextTrainConfig

__all__ = ["MAX_EPOCHS", "WARMUP_EPOCHS", "Heads", "default_params", "fold_loss",
           "fold_splits", "sample",
           "settings_of", "train_trial"]

#: The most epochs of a trial's head (early stopping ends most far sooner); also `best.toml`'s.
MAX_EPOCHS = 60
#: Epochs before the pruner may stop a trial (Optuna's `n_warmup_steps`).
WARMUP_EPOCHS = 3
_ONE_BATCH = 4096
_BUILDING = threading.Lock()
_BATCH_SIZES = (16, 32, 64, 128)
_HEAD_UNITS = (0, 64, 256)
#: Adam's decoupled weight decay: each step shrinks the weights by learning rate x this, so
#: below ~1e-2 a head's few thousand steps barely feel it; 0 (the default) first.
_WEIGHT_DECAYS = (0.0, 1e-2, 1e-1, 1.0)


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
    params["weight_decay"] = trial.suggest_categorical("weight_decay", _WEIGHT_DECAYS)
    # In steps of 0.1: each dropout is a head of its own shape (`Heads`), so a few of them are
    # built and traced, not one a trial.
    params["dropout"] = trial.suggest_float("dropout", 0.0, 0.7 if kind == "text" else 0.6,
                                            step=0.1)
    if kind == "text":
        params["head_units"] = trial.suggest_categorical("head_units", _HEAD_UNITS)
    return settings_of(params)


def settings_of(params: dict) -> dict:
    """A trial's `params` as its head takes them (Optuna keeps a stepped float as drawn:
    0.30000000000000004 is dropout 0.3): for `sample`, and for finished trials' params."""
    if "dropout" in params:
        return {**params, "dropout": round(float(params["dropout"]), 1)}
    return dict(params)


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
        options = SentenceTransformer.option_defaults
        params = {"learning_rate": SentenceTransformer.defaults.learning_rate,
                  "patience": d.patience, "dropout": options["dropout"],
                  "head_units": options["head_units"]}
    params["weight_decay"] = d.weight_decay
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
    from transferkit.backbones.transformer_encoder import build_sentence_head

    return build_sentence_head(train_x.shape[1], outputs, dropout=params["dropout"],
                               hidden_units=params["head_units"], normalization_data=train_x)


def _pruning_callback(trial):
    import keras

    class ReportLoss(keras.callbacks.Callback):
        """Reports each epoch's scoring loss to Optuna; stops the fit when it says prune (asked
        from the first epoch the pruner may prune: each question reads the study's storage)."""

        pruned = False

        def on_epoch_end(self, epoch, logs=None):
            trial.report(float(logs["val_loss"]), epoch)
            if epoch >= WARMUP_EPOCHS and trial.should_prune():
                self.pruned = True
                self.model.stop_training = True

    return ReportLoss()


def _scoring_batches(x: np.ndarray, y: np.ndarray):
    """The scoring split for each epoch's loss: one batch when it is small enough (a new
    iterator of it each epoch costs about a millisecond; of a sliced one, several)."""
    import tensorflow as tf

    if len(x) <= _ONE_BATCH:
        return tf.data.Dataset.from_tensors((x, y))
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(_ONE_BATCH).prefetch(2)


def _training_batches(pool: tuple[np.ndarray, np.ndarray], rows: int, batch_size: int,
                      seed: int):
    """`(dataset, steps)`: the training batches as `train`'s head phase makes them on cached
    features, each epoch (`steps` batches) drawing `rows` rows of `pool` in an order from
    `(seed, epoch)`. The epochs follow each other in one endless dataset, so that Keras keeps one
    iterator for the whole fit (a new one each epoch costs 20-30 ms, as much as the epoch)."""
    from transferkit.data.epoch_order import EpochOrder

    order = EpochOrder(len(pool[0]), seed)
    epoch = order.batches(pool, batch_size, take=rows)
    return epoch.repeat().prefetch(2), int(epoch.cardinality())


class Heads:
    """The compiled heads of one search, one per shape (candidate, dropout, hidden units), reused
    by every trial of that shape: a trial puts back the head's and Adam's first state (as built
    from the seed), its learning rate and weight decay, so it trains exactly as a new head would,
    without building and tracing Keras's train, test and predict functions again (about 1.2 s a
    trial, a quarter of a default trial on cats/dogs). The train function runs a whole epoch per
    call (`steps_per_execution`, traced per count of batches, so per batch size); patience,
    learning rate and weight decay change nothing traced; class weights trace once more (the
    weights input)."""

    def __init__(self, prepared, seed: int):
        self.prepared, self.seed = prepared, seed
        self._heads: dict[tuple, tuple] = {}
        self._pools: dict[str, tuple] = {}

    @property
    def built(self) -> int:
        """How many heads (shapes) were built: not `len`, so that an empty `Heads` is not
        false (`heads or Heads(...)` once built a new one every trial)."""
        return len(self._heads)

    def get(self, candidate: str, params: dict, steps: int):
        """The head for `params`, in its first state, with Adam at `params["learning_rate"]` and
        `params["weight_decay"]`, running an epoch of `steps` batches as one call of its train
        function."""
        key = (candidate, params.get("dropout"), params.get("head_units"))
        if key not in self._heads:
            self._heads[key] = (*self._build(candidate, params), {})
        head, first, functions = self._heads[key]
        for variable, value in zip(self._state(head), first, strict=True):
            variable.assign(value)
        head.optimizer.learning_rate.assign(params["learning_rate"])
        head.optimizer.weight_decay.assign(params["weight_decay"])
        if head.steps_per_execution != steps:  # traced with its steps: one function per count
            functions[head.steps_per_execution] = head.train_function
            head.steps_per_execution = steps
            head.train_function = functions.get(steps)
        return head

    def _build(self, candidate: str, params: dict):
        import keras

        from transferkit.tasks.targets import compile_spec

        with _BUILDING:  # the seed is global: one head built at a time, so each the same
            keras.utils.set_random_seed(self.seed)
            head = _head(self.prepared, candidate, params, self.prepared.features[candidate][0])
            loss, metrics = compile_spec("single-label", len(self.prepared.class_names))
            head.compile(optimizer=keras.optimizers.Adam(params["learning_rate"]), loss=loss,
                         metrics=metrics, jit_compile=False)
            head.optimizer.build(head.trainable_variables)
            # Read when the step runs (Keras's optimizer casts it), not traced as a constant:
            # every weight decay trains in one compiled head. 0 leaves the weights exactly as
            # `train`'s Adam without decay does (w - w * 0 * lr is w).
            head.optimizer.weight_decay = keras.Variable(0.0, trainable=False,
                                                         name="weight_decay")
            return head, [variable.numpy() for variable in self._state(head)]

    def pool(self, candidate: str) -> tuple[np.ndarray, np.ndarray]:
        """`candidate`'s training rows and their augmented views, pooled once per search."""
        from transferkit.backbones.image_encoder import feature_pool

        if candidate not in self._pools:
            self._pools[candidate] = feature_pool(self.prepared.features[candidate][0],
                                                  self.prepared.train_y,
                                                  self.prepared.train_views.get(candidate))
        return self._pools[candidate]

    @staticmethod
    def _state(head) -> list:
        return [*head.variables, *head.optimizer.variables]


def train_trial(prepared, candidate: str, params: dict, seed: int, trial=None,
                heads: Heads | None = None) -> dict:
    """Trains one head with `params` on `candidate`'s features; `{"loss", "accuracy", "epochs",
    "pruned"}` on the scoring split at the best epoch (with `trial`, pruned trials stop early).
    `heads`: the search's compiled heads, reused (default: a head built for this trial)."""
    heads = Heads(prepared, seed) if heads is None else heads
    return _fit(heads, candidate, params, seed, heads.pool(candidate), prepared.train_y,
                prepared.features[candidate][1], prepared.val_y, trial)


def fold_splits(prepared, folds: int, seed: int) -> list:
    """`folds` stratified `(train, held_out)` index pairs over every example the trials see
    (`prepared.pooled`, `prepared.all_y`); they depend on `seed` only, so every setting meets the
    same folds."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(prepared.all_y)), prepared.all_y))


def fold_loss(prepared, heads: Heads, params: dict, seed: int, split) -> float:
    """The scoring loss of `params` (a trial's settings) trained on `split`'s training part and
    scored on its held-out part. A text head's standardisation keeps the statistics of the
    trials' training split (features only, no labels), as the reused head was built with them."""
    from transferkit.backbones.image_encoder import feature_pool

    candidate = params.get("candidate", prepared.candidates[0])
    x, views = prepared.pooled[candidate]
    y = prepared.all_y
    train, held_out = split
    pool = feature_pool(x[train], y[train], None if views is None else views[train])
    # Epochs as long as the trials' (where the fold has the rows): the same count of batches,
    # so the train function traced for the trials serves (images, 5 folds: 80%, as theirs).
    rows = min(len(prepared.train_y), len(train))
    return _fit(heads, candidate, params, seed, pool, y[train], x[held_out], y[held_out],
                rows=rows)["loss"]


def _fit(heads: Heads, candidate: str, params: dict, seed: int, pool, train_y, val_x, val_y,
         trial=None, rows: int | None = None) -> dict:
    """A head trained on `pool` (`rows` rows an epoch; default `len(train_y)`), early-stopped
    and scored on `(val_x, val_y)`."""
    import keras

    from transferkit.data.labels import class_weights_for

    prepared = heads.prepared
    batches, steps = _training_batches(pool, rows or len(train_y), params["batch_size"], seed)
    head = heads.get(candidate, params, steps)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=params["patience"],
                                         restore_best_weights=True)
    callbacks = [stop]
    if trial is not None:
        callbacks.append(_pruning_callback(trial))
    weights = class_weights_for(train_y, prepared.class_names, params["class_weight"], {})
    history = head.fit(batches, steps_per_epoch=steps,
                       validation_data=_scoring_batches(val_x, val_y),
                       epochs=MAX_EPOCHS, class_weight=weights, callbacks=callbacks, verbose=0,
                       shuffle=False)  # the pipeline shuffles
    losses = history.history["val_loss"]
    logits = np.asarray(head.predict(val_x, batch_size=_ONE_BATCH, verbose=0))
    predicted = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(axis=1)
    return {"loss": float(np.min(losses)), "accuracy": float(np.mean(predicted == val_y)),
            "epochs": int(np.argmin(losses)) + 1, "pruned": bool(callbacks[-1].pruned)
            if trial is not None else False}
