"""Word attributions for text classifiers, by occlusion: each word's score is how much the
explained output falls when that word alone is taken out of the text (Zeiler and Fergus 2014, as
Captum's `Occlusion`/`FeatureAblation` with words as the features).

Occlusion needs no gradient and no access to the encoder's insides, so it works the same for
both encoder kinds (GloVe + BiLSTM, sentence transformers) and for any preset, and it scores
whole words, so sub-word tokens need no aggregating. It costs one forward pass per word, batched.
A positive score pushes toward the explained class (or a larger value), a negative one away.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import numpy as np

from transferkit.explain import explained_output

__all__ = ["METHOD", "explain_texts", "top_words", "words_html"]

#: The one method for text.
METHOD = "occlusion"
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


def explain_texts(classifier, texts: list[str], label=None) -> list[dict]:
    """Word attributions of `texts` for `classifier` (a fitted text classifier).

    Returns:
        One dict per text: `input` (the text), `prediction` (what `predict` says), `explained`
        (the class, label or target), `score` (its probability, or the value), `method`
        (`"occlusion"`) and `words`: `{"word", "start", "end", "score"}` in reading order.
    """
    texts = [str(text) for text in texts]
    rows = classifier.predict(texts)
    results = []
    for text, row in zip(texts, rows):
        name, column = explained_output(classifier, row, label)
        spans = [(match.start(), match.end()) for match in _WORD.finditer(text)]
        variants = [_without(text, start, end) for start, end in spans]
        outputs = np.asarray(classifier.predict_proba([text, *variants]), dtype=np.float64)
        base = outputs[0, column]
        results.append({
            "input": text,
            "prediction": {key: row[key] for key in ("label", "score", "labels", "value")
                           if key in row},
            "explained": name, "score": float(base), "method": METHOD,
            "words": [{"word": text[start:end], "start": start, "end": end,
                       "score": float(base - outputs[1 + i, column])}
                      for i, (start, end) in enumerate(spans)],
        })
    return results


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
