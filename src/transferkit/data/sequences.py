"""Token sequences in batches of similar length, each padded only to its own longest sequence.

A text model saved by transferkit takes strings and pads every text to its fixed sequence length.
Training and batch prediction run the same network on token ids instead, grouped by length: on two
CPU cores that is many times faster than padding every text to 128 or 256 tokens (a transformer's
cost grows with the padded length). Inputs are the fixed-length arrays the model's own tokenizer
layer makes (`transferkit.layers.TextInputs`); a batch keeps the columns up to its longest text.
Padding is at the end and masked, so the outputs are the same either way.
"""

from __future__ import annotations

import weakref

import numpy as np

from transferkit.checks import check_int
from transferkit.data.epoch_order import epoch_seed

__all__ = [
    "length_sorted_batches",
    "padded_batches",
    "predict_function",
    "predict_padded",
    "sequence_lengths",
]


def sequence_lengths(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Real tokens per row: the `padding_mask` sum, or the non-zero `token_ids` (0 pads)."""
    if "padding_mask" in inputs:
        return np.asarray(inputs["padding_mask"]).astype(bool).sum(axis=1)
    return (np.asarray(inputs["token_ids"]) != 0).sum(axis=1)


def length_sorted_batches(
    lengths, batch_size: int, shuffle: bool = False, seed=None
) -> list[np.ndarray]:
    """Batches of indices of texts of similar length, so padding (wasted work) stays small.

    Without `shuffle`, indices are sorted by length and cut into batches. With `shuffle` (for
    training), texts are shuffled, grouped in chunks of 50 batches, sorted by length within each
    chunk and cut, and the batches are shuffled: similar lengths, random composition.

    Args:
        lengths: one length per text.
        batch_size: texts per batch.
        shuffle: randomise as described. Default `False`.
        seed: the shuffling seed (an int, or a sequence of them as numpy's `default_rng`
            takes). Default `None`: a new order each run.

    Returns:
        A list of int arrays, every index in exactly one batch.
    """
    lengths = np.asarray(lengths)
    check_int(batch_size, "batch_size", minimum=1)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _take(inputs: dict[str, np.ndarray], lengths: np.ndarray, batch: np.ndarray) -> dict:
    width = max(1, int(lengths[batch].max()))
    return {name: np.ascontiguousarray(array[batch, :width]) for name, array in inputs.items()}


def padded_batches(
    inputs: dict[str, np.ndarray], batch_size: int, targets=None, shuffle: bool = False,
    seed: int | None = None, lengths=None,
):
    """Batches for `model.fit` (and `model.evaluate`), grouped by length and trimmed.

    On the TensorFlow backend this is a `tf.data.Dataset` whose length dimension is declared
    variable, so the model is traced once. (A `keras.utils.PyDataset` infers its shapes from its
    first two batches: two batches of the same length fix it, and the next length fails.) On other
    backends it is a `keras.utils.PyDataset`. With `shuffle`, batches are regrouped every epoch,
    epoch `e`'s from `(seed, e)` alone; `set_epoch(e)` makes the next pass epoch `e` (see
    `transferkit.data.epoch_order`).

    Args:
        inputs: name -> `(n, length)` int arrays, padded at the end.
        batch_size: rows per batch.
        targets: one target per row. Default `None` (inputs only).
        shuffle: random batches, new ones every epoch. Default `False` (sorted by length).
        seed: the shuffling seed. Default `None`: a new order each run.
        lengths: real tokens per row, where `inputs` hold several texts a row (pairs). Default
            `None`: `sequence_lengths(inputs)`.
    """
    import keras

    lengths = sequence_lengths(inputs) if lengths is None else np.asarray(lengths)
    targets = None if targets is None else np.asarray(targets)

    base_seed = epoch_seed(seed) if shuffle else None

    class PaddedBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.set_epoch(0)

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, index):
            batch = self.batches[index]
            x = _take(inputs, lengths, batch)
            return x if targets is None else (x, targets[batch])

        def set_epoch(self, epoch):
            """The batches of epoch `epoch` (from 0): drawn from `(seed, epoch)` alone."""
            if getattr(self, "epoch", None) == epoch:
                return
            self.epoch = epoch
            self.batches = length_sorted_batches(
                lengths, batch_size, shuffle=shuffle,
                seed=None if base_seed is None else (base_seed, epoch),
            )

        def on_epoch_end(self):
            if shuffle:
                self.set_epoch(self.epoch + 1)

    dataset = PaddedBatches()
    if keras.backend.backend() != "tensorflow" or not len(dataset):
        return dataset
    data = _as_tf_dataset(dataset, targets is not None)
    data.set_epoch = dataset.set_epoch  # where `fit_phase` finds it
    return data


def _as_tf_dataset(dataset, with_targets: bool):
    import tensorflow as tf

    first = dataset[0]
    inputs, targets = first if with_targets else (first, None)

    def spec(array, variable_length: bool):
        shape = (None, None) if variable_length else (None, *np.shape(array)[1:])
        return tf.TensorSpec(shape, tf.as_dtype(np.asarray(array).dtype))

    signature = {name: spec(value, True) for name, value in inputs.items()}
    if with_targets:
        signature = (signature, spec(targets, False))

    def generate():
        for index in range(len(dataset)):
            yield dataset[index]
        dataset.on_epoch_end()  # a new grouping for the next pass (training only)

    data = tf.data.Dataset.from_generator(generate, output_signature=signature)
    data = data.apply(tf.data.experimental.assert_cardinality(len(dataset)))
    return data.prefetch(2)


_PREDICT_FUNCTIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def predict_function(model, inputs: dict):
    """`model(inputs, training=False)` as one function for every batch shape.

    On TensorFlow it is a `tf.function` whose length dimension is declared variable: traced once,
    where `model.predict_on_batch` retraces for each new length (and warns) and `model.predict`
    pays a pipeline's start-up per call. Elsewhere it is `model.predict_on_batch`.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch
    function = _PREDICT_FUNCTIONS.get(model)
    if function is None:
        import tensorflow as tf

        signature = [
            {name: tf.TensorSpec((None, None), tf.as_dtype(array.dtype))
             for name, array in inputs.items()}
        ]
        owner = weakref.ref(model)  # a strong reference here would keep the model alive forever
        # autograph=False: a Keras model call needs no Python-to-graph rewriting (and AutoGraph
        # cannot read a lambda's source, so it would warn).
        function = tf.function(
            lambda x: owner()(x, training=False), input_signature=signature, autograph=False
        )
        _PREDICT_FUNCTIONS[model] = function
    return function


def predict_padded(
    model, inputs: dict[str, np.ndarray], batch_size: int, progress=None
) -> np.ndarray:
    """The model's outputs for fixed-length token ids, computed in length-sorted trimmed batches.

    Args:
        model: a Keras model taking `inputs`' dict, or a `transferkit.runtimes.FrozenRunner`
            of one.
        inputs: name -> `(n, length)` int arrays, padded at the end.
        batch_size: rows per forward pass.
        progress: called as `progress(done, total)` after each batch. Default `None`.

    Returns:
        float32 `(n, *output_shape)`, rows in input order.
    """
    import keras

    runner = None if isinstance(model, keras.Model) else model
    model = model if runner is None else runner.model
    lengths = sequence_lengths(inputs)
    total = len(lengths)
    if not total:
        return np.zeros((0,) + tuple(model.output.shape[1:]), dtype=np.float32)
    function = runner
    result = None
    done = 0
    for batch in length_sorted_batches(lengths, batch_size):
        x = _take(inputs, lengths, batch)
        if function is None:
            function = predict_function(model, x)
        outputs = keras.ops.convert_to_numpy(function(x)).astype(np.float32, copy=False)
        if result is None:
            result = np.zeros((total,) + outputs.shape[1:], dtype=np.float32)
        result[batch] = outputs
        done += len(batch)
        if progress is not None:
            progress(done, total)
    return result
