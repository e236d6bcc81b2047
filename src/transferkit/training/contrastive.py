"""Contrastive tuning of a sentence encoder on pairs of labelled texts: SetFit's first step.

SetFit (Tunstall et al., 2022, "Efficient Few-Shot Learning Without Prompts") fine-tunes a
sentence encoder on pairs of training texts before training a head on its vectors: a pair of texts
with the same label should have cosine similarity 1, a pair with different labels 0 (the mean
squared error between the two, sentence-transformers' `CosineSimilarityLoss`). A handful of labelled
texts makes hundreds of pairs, which is why it helps most with 8 or 16 examples per class.

The SetFit library runs on PyTorch (sentence-transformers); transferkit's encoders are Keras models,
so the pair sampler and the loss are written here (a few lines each, as SetFit's are):

* `sample_pairs`: for each anchor text, one positive and one negative partner drawn at random, as
  SetFit's `num_iterations` sampling does; with several labels per text (multi-label), two texts
  are a positive pair when they share a label and a negative pair when they share none;
* `pair_model`: the encoder's sentence vector (mean pooling, as the encoder was trained) of both
  texts and their cosine similarity, one Keras model sharing the encoder's weights;
* `tune_on_pairs`: trains it as a phase of the run (`transferkit.training.callbacks.fit_phase`:
  checkpoints, resume, TensorBoard, `history.csv` rows of phase `"contrastive"`).

The head is then trained on the tuned encoder's features (`TextClassifier`, `strategy=
"contrastive"`); the saved model holds the tuned encoder.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from transferkit.config import CONTRASTIVE_MAX_PAIRS, CONTRASTIVE_PAIRS_PER_TEXT
from transferkit.errors import DataError

__all__ = ["default_pair_count", "pair_model", "sample_pairs", "tune_on_pairs", "weights_digest"]

_SIDES = ("first", "second")
_TRIES = 50  # random partners tried per anchor before it goes without (multi-label only)


def default_pair_count(texts: int) -> int:
    """Pairs per pass when none is set: 40 per text (SetFit's 20 iterations of a positive and a
    negative pair), at most `CONTRASTIVE_MAX_PAIRS`."""
    return max(2, min(CONTRASTIVE_PAIRS_PER_TEXT * texts, CONTRASTIVE_MAX_PAIRS))


def _label_sets(targets: np.ndarray) -> np.ndarray:
    """`(n, labels)` booleans: one column per class for class indices, the 0/1 matrix as it is."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        classes = np.unique(targets)
        return targets[:, None] == classes[None, :]
    return targets.astype(bool)


def sample_pairs(targets, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of texts for contrastive tuning, half positive and half negative.

    Anchors go round the texts in a shuffled order (each text is an anchor about equally often);
    each anchor gets a random positive partner (same label; itself when it is its class's only
    text, as in SetFit) and a random negative one (another label).

    Args:
        targets: class indices `(n,)`, or a 0/1 matrix `(n, labels)` for multi-label targets.
        count: pairs wanted (an odd count gets one positive pair more).
        seed: the sampling seed.

    Returns:
        `(first, second, similarity)`: text indices and the target cosine similarity (1.0 for a
        positive pair, 0.0 for a negative one), `float32`.

    Raises:
        DataError: fewer than two texts, or no two texts with different labels.
    """
    sets = _label_sets(targets)
    n = len(sets)
    if n < 2 or not _has_negative(sets):
        raise DataError(
            "Contrastive tuning needs texts with different labels to make negative pairs; these "
            f"{n} training texts have {'one label' if n else 'none'}. Use strategy 'head'."
        )
    rng = np.random.default_rng(seed)
    anchors = np.concatenate([rng.permutation(n) for _ in range(-(-count // n) + 1)])
    first, second, similarity = [], [], []
    for anchor in anchors:
        for positive in (True, False):
            if len(first) == count:
                break
            partner = _partner(sets, anchor, positive, rng)
            if partner is not None:
                first.append(anchor)
                second.append(partner)
                similarity.append(1.0 if positive else 0.0)
        if len(first) == count:
            break
    return (np.asarray(first, np.int64), np.asarray(second, np.int64),
            np.asarray(similarity, np.float32))


def _has_negative(sets: np.ndarray) -> bool:
    rows = np.unique(sets, axis=0)
    return len(rows) > 1 and bool(((rows.astype(int) @ rows.T.astype(int)) == 0).any())


def _partner(sets: np.ndarray, anchor: int, positive: bool, rng) -> int | None:
    """A random text that shares a label with `anchor` (`positive`) or shares none."""
    mine = sets[anchor]
    if sets.shape[1] > 1 and mine.sum() == 1:  # one label per text: draw from its class at once
        column = int(np.argmax(mine))
        candidates = np.flatnonzero(sets[:, column] if positive else ~sets[:, column])
        if positive and len(candidates) > 1:
            candidates = candidates[candidates != anchor]
        return int(rng.choice(candidates)) if len(candidates) else None
    for _ in range(_TRIES):  # several labels: a random text until one fits
        other = int(rng.integers(len(sets)))
        shares = bool((sets[other] & mine).any())
        if shares == positive and (other != anchor or not positive):
            return other
    return anchor if positive and mine.any() else None


def pair_model(encoder):
    """The cosine similarity of two texts' sentence vectors under one encoder.

    Args:
        encoder: a `transferkit.backbones.sentence_encoders.SentenceEncoder`.

    Returns:
        A `keras.Model` named `"pair_similarity"`: inputs `first_<name>` and `second_<name>` for
        each of the encoder's inputs (token ids, padding mask) -> `(batch, 1)` cosine similarity.
        It shares the encoder's backbone: training it tunes the encoder.
    """
    import keras

    embed = encoder.embedding_model("sentence")
    inputs = {f"{side}_{name}": keras.Input((None,), dtype="int32", name=f"{side}_{name}")
              for side in _SIDES for name in encoder.input_names}
    vectors = [embed({name: inputs[f"{side}_{name}"] for name in encoder.input_names})
               for side in _SIDES]
    similarity = keras.layers.Dot(axes=1, normalize=True, name="cosine_similarity")(vectors)
    return keras.Model(inputs, similarity, name="pair_similarity")


def _pair_inputs(tokens: dict[str, np.ndarray], first, second) -> dict[str, np.ndarray]:
    return {
        **{f"first_{name}": ids[first] for name, ids in tokens.items()},
        **{f"second_{name}": ids[second] for name, ids in tokens.items()},
    }


def _pair_batches(tokens, targets, count: int, seed: int, batch_size: int, shuffle: bool):
    from transferkit.data.sequences import padded_batches, sequence_lengths

    first, second, similarity = sample_pairs(targets, count, seed)
    lengths = sequence_lengths(tokens)
    return padded_batches(
        _pair_inputs(tokens, first, second), batch_size, targets=similarity[:, None],
        shuffle=shuffle, seed=seed, lengths=np.maximum(lengths[first], lengths[second]),
    )


def tune_on_pairs(
    encoder, train: tuple[dict, np.ndarray], validation: tuple[dict, np.ndarray] | None, *,
    pairs: int, epochs: int, learning_rate: float, batch_size: int, seed: int, run,
    verbose: Any = "auto", callbacks=(),
) -> list[dict]:
    """Tunes `encoder`'s backbone on pairs of training texts (see the module docstring).

    Args:
        encoder: the `SentenceEncoder` to tune, in place; the caller makes its backbone
            trainable (`sentence_encoders.set_trainable`).
        train: `(tokens, targets)`: the training texts' token ids (name -> `(n, length)`) and
            their class indices or 0/1 label matrix.
        validation: the same for validation texts, whose pairs (a quarter as many per text,
            another seed) give the phase's `val_loss` and its best epoch; `None`: the training
            loss.
        pairs: training pairs per epoch.
        epochs: passes over the pairs.
        learning_rate: Adam's learning rate.
        batch_size: pairs per step.
        seed: the pair sampling and shuffling seed.
        run: the run folder (`transferkit.run_folder.RunFolder`) of checkpoints and logs.
        verbose: Keras progress output. Default `"auto"`.
        callbacks: more Keras callbacks. Default `()`.

    Returns:
        The phase's `history.csv` rows (`phase` `"contrastive"`).
    """
    import keras

    from transferkit.training.callbacks import fit_phase

    train_data = _pair_batches(*train, pairs, seed, batch_size, shuffle=True)
    validation_data = None
    if validation is not None and _usable(validation[1]):
        count = default_pair_count(len(validation[1])) // 4
        validation_data = _pair_batches(*validation, max(count, 2), seed + 1, 64, shuffle=False)
    model = pair_model(encoder)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mean_squared_error")
    return fit_phase(
        model, train_data, validation_data, epochs=epochs, run=run, phase="contrastive",
        patience=epochs, verbose=verbose, extra_callbacks=callbacks, shuffle=False,
    )


def _usable(targets) -> bool:
    sets = _label_sets(targets)
    return len(sets) >= 2 and _has_negative(sets)


def weights_digest(model) -> str:
    """A SHA-256 of a model's weights (16 hex digits): what tells tuned features from the
    pretrained encoder's in the feature cache."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]
