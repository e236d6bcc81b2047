"""Word attributions for text classifiers, two ways, each word scored as a whole (sub-word tokens
summed into their word):

* `occlusion` (the default): how much the explained output falls when that word alone is taken
  out of the text (Zeiler and Fergus 2014, as Captum's `Occlusion`/`FeatureAblation` with words
  as the features). It needs no gradient and no access to the encoder's insides, so it works the
  same for both encoder kinds (GloVe + BiLSTM, sentence transformers) and for any preset. It costs
  one forward pass per word, batched. Scores are in probability (or the value's units).
* `integrated-gradients` (Sundararajan et al. 2017, as Captum's `LayerIntegratedGradients` on
  the token embedding): the explained logit's gradient along a straight path from no token
  embeddings for the words (zeros; special tokens and position embeddings stay) to the text's, `STEPS` midpoints, summed over each
  token's embedding. It needs the model's token embedding layer (`word_embedding` of GloVe +
  BiLSTM, KerasHub's `token_embedding`) and costs `STEPS` forward and backward passes a text.
  Scores are in logit units and add up to the logit's change from the empty baseline.

Which is more faithful is measured by `benchmarks/explain.py` (the deletion test): see
`METHODS`. A positive score pushes toward the explained class (or a larger value), a negative one
away.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import weakref
from pathlib import Path

import numpy as np

from transferkit.errors import InputError
from transferkit.explain import explained_output, logit_weights

__all__ = ["METHODS", "explain_texts", "top_words", "words_html"]

#: The methods for text, the default first.
METHODS = ("occlusion", "integrated-gradients")
#: Integrated gradients' points on the path (midpoint rule).
STEPS = 32
#: The names of the token embedding layers integrated gradients scales: GloVe + BiLSTM's, and
#: KerasHub's (BERT, MiniLM and other sentence transformers).
_EMBEDDINGS = ("word_embedding", "token_embedding")
#: Prefixes tokenized at a time when finding each word's tokens.
_PREFIX_CHUNK = 256
_WORD = re.compile(r"\S+")
#: Reports explain texts of at most this many words (one forward pass per word).
REPORT_WORDS = 80


def _without(text: str, start: int, end: int) -> str:
    """`text` with the word at `[start, end)` and one space beside it taken out."""
    if end < len(text) and text[end].isspace():
        end += 1
    elif start > 0 and text[start - 1].isspace():
        start -= 1
    return text[:start] + text[end:]


def explain_texts(classifier, texts: list[str], label=None, method: str | None = None) -> list[dict]:
    """Word attributions of `texts` for `classifier` (a fitted text classifier).

    Args:
        method: one of `METHODS` (default: the first, occlusion).

    Returns:
        One dict per text: `input` (the text), `prediction` (what `predict` says), `explained`
        (the class, label or target), `score` (its probability, or the value), `method` and
        `words`: `{"word", "start", "end", "score"}` in reading order.

    Raises:
        InputError: an unknown `method` or `label`; integrated gradients on a model without a
            token embedding layer it knows.
    """
    method = method or METHODS[0]
    if method not in METHODS:
        raise InputError(f"Text is explained by {' or '.join(map(repr, METHODS))}. "
                         f"Received: method={method!r}.")
    texts = [str(text) for text in texts]
    rows = classifier.predict(texts)
    probabilities = np.asarray(classifier.predict_proba(texts), dtype=np.float64)
    _, weights = logit_weights(classifier, rows, label)
    layer = _token_embedding(classifier) if method == METHODS[1] else None
    results = []
    for text, row, weight, outputs in zip(texts, rows, weights, probabilities):
        name, column = explained_output(classifier, row, label)
        spans = [(match.start(), match.end()) for match in _WORD.finditer(text)]
        inputs, positions = _word_positions(classifier, text, spans)
        if layer is None:
            scores = _occlusion(classifier, text, spans, positions, column, outputs[column])
        else:
            scores = _integrated_gradients(classifier, layer, inputs, positions, weight)
        results.append({
            "input": text,
            "prediction": {key: row[key] for key in ("label", "score", "labels", "value")
                           if key in row},
            "explained": name, "score": float(outputs[column]), "method": method,
            "words": [{"word": text[start:end], "start": start, "end": end,
                       "score": float(score)} for (start, end), score in zip(spans, scores)],
        })
    return results


def _token_embedding(classifier):
    from transferkit.layers import all_layers

    for layer in all_layers(classifier.network):
        if layer.name in _EMBEDDINGS:
            return layer
    raise InputError(
        f"{classifier.encoder}: no token embedding layer ({' or '.join(_EMBEDDINGS)}) to take "
        "integrated gradients on; `method='occlusion'` explains any text model."
    )


@contextlib.contextmanager
def _scaled(layer, scale):
    """`layer`'s outputs multiplied by `scale` (`(batch, tokens, 1)`) inside."""
    original = layer.call

    def call(inputs, *args, **kwargs):
        outputs = original(inputs, *args, **kwargs)
        return outputs if kwargs.get("reverse") else outputs * scale  # KerasHub's tied output

    layer.call = call
    try:
        yield
    finally:
        del layer.call


def _word_positions(classifier, text: str, spans: list[tuple[int, int]]):
    """The model's inputs for `text`, and the token positions `[start, end)` of each word: the
    tokens its prefix ending at that word adds. A word past the model's `max_length` tokens gets
    none (`(n, n)`), as does a word its tokenizer drops (GloVe's punctuation)."""
    from transferkit.backbones.text_encoders import tokenize

    def real_counts(texts):
        ids = tokenize(classifier.tokenizer, texts)
        real = ids["padding_mask"] if "padding_mask" in ids else ids["token_ids"] != 0
        return ids, np.asarray(real, dtype=bool).sum(axis=1)

    ids, whole = real_counts(["", text])
    counts = [int(whole[0])]
    empty, full = ids["token_ids"][0], ids["token_ids"][1]
    # Prefixes a chunk at a time, until one holds as many tokens as the whole text: a text far
    # longer than `max_length` costs no tokenizing of every prefix.
    for first in range(0, len(spans), _PREFIX_CHUNK):
        if counts[-1] >= whole[1]:
            counts += [counts[-1]] * (len(spans) - len(counts) + 1)
            break
        chunk = [text[:end] for _, end in spans[first:first + _PREFIX_CHUNK]]
        counts += [int(count) for count in real_counts(chunk)[1]]
    leading = 0  # special tokens before the words ([CLS]); the rest of the empty text's follow
    while leading < counts[0] and empty[leading] == full[leading]:
        leading += 1
    trailing = counts[0] - leading
    positions = [(counts[j] - trailing, counts[j + 1] - trailing) for j in range(len(spans))]
    return {name: values[1:] for name, values in ids.items()}, positions


def _occlusion(classifier, text: str, spans, positions, column: int, base: float) -> np.ndarray:
    """Each word's drop of output `column` (`base` for the whole text) when it alone is taken
    out; 0 for a word the model does not see (past `max_length`, or dropped by its tokenizer),
    whose removal cannot change what the model sees of the words before it, without a forward
    pass."""
    seen = [j for j, (start, end) in enumerate(positions) if end > start]
    scores = np.zeros(len(spans))
    if seen:
        variants = [_without(text, *spans[j]) for j in seen]
        outputs = np.asarray(classifier.predict_proba(variants), dtype=np.float64)
        scores[seen] = base - outputs[:, column]
    return scores


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_gradients(network, layer):
    """On TensorFlow, the path's gradients as one `tf.function` per network (traced once per
    input shape, the embedding scaled while tracing): a GloVe + BiLSTM text's 32 steps take
    about a tenth of the eager time (whose LSTM runs step by step in Python). None elsewhere."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    if network not in _COMPILED:
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def gradients(scale, inputs, weights):
            with tf.GradientTape() as tape:
                tape.watch(scale)
                with _scaled(layer, scale):
                    outputs = network(inputs, training=False)
                score = tf.reduce_sum(outputs * weights)
            return tape.gradient(score, scale)

        _COMPILED[network] = gradients
    return _COMPILED[network]


def _integrated_gradients(classifier, layer, inputs: dict, positions,
                          weight: np.ndarray) -> np.ndarray:
    """Each word's integrated gradient of the logits weighted by `weight` (`logit_weights`)."""
    from transferkit.explain.gradients import function_gradients

    if not positions:
        return np.zeros(0)
    inputs = {name: np.repeat(values, STEPS, axis=0) for name, values in inputs.items()}
    length = next(iter(inputs.values())).shape[1]
    alphas = (np.arange(STEPS, dtype=np.float32) + 0.5) / STEPS
    path = np.ones((STEPS, length, 1), dtype=np.float32)  # special tokens stay ([CLS], [SEP])
    for start, end in positions:
        path[:, start:end, 0] = alphas[:, None]

    weights = np.repeat(weight[None], STEPS, axis=0).astype(np.float32)
    compiled = _compiled_gradients(classifier.network, layer)
    if compiled is not None:
        gradients = np.asarray(compiled(path, inputs, weights))
    else:
        def logits(scale):
            with _scaled(layer, scale):
                return classifier.network(inputs, training=False)

        _, gradients = function_gradients(logits, path, weights)
    tokens = gradients[..., 0].mean(axis=0)  # d logit / d scale, averaged over the path
    return np.asarray([tokens[start:end].sum() for start, end in positions], dtype=np.float64)


def top_words(classifier, texts: list[str], count: int = 3) -> list[list[tuple] | None]:
    """For reports: the `count` words of each text that push hardest toward its prediction,
    `(word, score)` best first (none when no word pushes toward it); None for a text longer
    than `REPORT_WORDS` words (`transferkit explain` takes it)."""
    short = [i for i, text in enumerate(texts) if len(_WORD.findall(str(text))) <= REPORT_WORDS]
    found: list[list[tuple] | None] = [None] * len(texts)
    for i, result in zip(short, explain_texts(classifier, [texts[i] for i in short])):
        ranked = sorted(result["words"], key=lambda word: -word["score"])
        found[i] = [(word["word"], word["score"]) for word in ranked[:count] if word["score"] > 0]
    return found


def words_html(result: dict, path: str | os.PathLike | None = None) -> str:
    """A small HTML page of one text with each word's background coloured by its score (red
    toward the explained output, blue away, scaled to the largest magnitude); written to `path`
    when given. Returns the HTML."""
    from transferkit.files import atomic_write

    text, words = result["input"], result["words"]
    peak = max((abs(word["score"]) for word in words), default=0.0) or 1.0
    parts, position = [], 0
    for word in words:
        parts.append(html.escape(text[position:word["start"]]))
        strength = abs(word["score"]) / peak
        colour = "220, 38, 38" if word["score"] > 0 else "37, 99, 235"
        parts.append(
            f'<span style="background: rgba({colour}, {strength * 0.75:.3f})" '
            f'title="{word["score"]:+.4f}">{html.escape(word["word"])}</span>')
        position = word["end"]
    parts.append(html.escape(text[position:]))
    explained = html.escape(str(result["explained"]))
    page = (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>transferkit explain"
        "</title></head>\n<body style=\"font: 16px/1.7 sans-serif; max-width: 48em; margin: 2em "
        f"auto\">\n<p>Explained: <b>{explained}</b> ({result['score']:.3f}); red words push "
        "toward it, blue words away (hover for each word's score: the drop of the output when "
        f"the word is taken out).</p>\n<p>{''.join(parts)}</p>\n</body></html>\n"
    )
    if path is not None:
        with atomic_write(Path(path), "w") as handle:
            handle.write(page)
    return page
