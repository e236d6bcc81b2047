"""Benchmark: few-shot text classification on rt-polarity, a frozen head vs contrastive tuning.

Usage:
    python benchmarks/text_few_shot.py [--encoders minilm mpnet] [--sizes 8 16 64 full]
        [--seeds 0 1 2 3 4] [--strategies head contrastive] [--json rows.json]

The split is `benchmarks/text_rt_polarity.py`'s (seeded stratified 80/10/10, seed 0; the 1,067
test sentences are every row's test set). A row with N examples a class trains on N sentences a
class drawn (seed s) from the training split and validates (early stopping) on N others a class
drawn from the validation split: a few-shot user holds out as few as they train on. `full` uses
both splits whole. Each run is a `TextClassifier` with the defaults of its strategy:

* `head`: the frozen encoder's layer features (cached) and a linear head (transferkit's default);
* `contrastive`: the encoder tuned on pairs of the training sentences (40 a sentence, at most
  4,000; one pass), then a linear head on its sentence vectors (SetFit's recipe).

Prints one table: mean test accuracy over the seeds, its spread (standard deviation, min-max),
and the mean wall time of a run; the `head` rows are the baseline of their `contrastive` rows.
The SetFit paper's anchor (mpnet, 8 a class): contrastive +4.3 (CR) to +11.0 (Emotion) points
over a frozen encoder and logistic regression.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rt_polarity" / "sentences.csv"
)


def splits(data: Path) -> dict:
    """`{"train", "validation", "test"}: (texts, labels)`: text_rt_polarity.py's split."""
    from transferkit.config import TextTrainConfig
    from transferkit.pipelines.text import _read_and_split

    config = TextTrainConfig(data=str(data), test_size=0.1, validation_size=0.1, seed=0,
                             encoder="minilm", target="single-label")
    _, names, parts = _read_and_split(config, log=lambda line: None)
    return {name: (texts, [names[i] for i in y]) for name, (texts, y) in parts.items()}


def sample(texts, labels, per_class: int | None, seed: int) -> tuple[list, list]:
    """`per_class` of each label (all with None), drawn with `seed`."""
    if per_class is None:
        return list(texts), list(labels)
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    keep = np.concatenate([rng.choice(np.flatnonzero(labels == name), per_class, replace=False)
                           for name in sorted(set(labels))])
    keep = rng.permutation(keep)
    return [texts[i] for i in keep], labels[keep].tolist()


def one_run(encoder: str, strategy: str, train, validation, test, seed: int) -> dict:
    from transferkit.tasks.text_classifier import TextClassifier

    started = time.perf_counter()
    clf = TextClassifier(encoder, strategy=strategy, seed=seed)
    clf.fit(*train, validation_data=validation, verbose=0)
    probabilities = clf.predict_proba_cached(test[0])
    predicted = np.asarray(clf.class_names)[probabilities.argmax(axis=1)]
    accuracy = float(np.mean(predicted == np.asarray(test[1])))
    return {"accuracy": accuracy, "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--encoders", nargs="+", default=["minilm", "mpnet"])
    parser.add_argument("--sizes", nargs="+", default=["8", "16", "64", "full"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--strategies", nargs="+", default=["head", "contrastive"],
                        choices=["head", "contrastive"])
    parser.add_argument("--json", type=Path, help="also write every run's result here")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: the rt-polarity data is not at {args.data} (pass --data PATH)")
        return 0
    parts = splits(args.data)
    runs = []
    for encoder in args.encoders:
        for size in args.sizes:
            per_class = None if size == "full" else int(size)
            for seed in args.seeds if per_class else args.seeds[:1]:  # `full`: one sample
                train = sample(*parts["train"], per_class, seed)
                validation = sample(*parts["validation"], per_class, seed + 1000)
                for strategy in args.strategies:
                    result = one_run(encoder, strategy, train, validation, parts["test"], seed)
                    runs.append({"encoder": encoder, "per_class": size, "strategy": strategy,
                                 "seed": seed, **result})
                    print(f"  {encoder} {size}/class {strategy} seed {seed}: "
                          f"{result['accuracy']:.4f} ({result['seconds']:.0f} s)",
                          file=sys.stderr, flush=True)
                    if args.json:
                        args.json.write_text(json.dumps(runs, indent=1))
    print(table(runs))
    return 0


def table(runs: list[dict]) -> str:
    lines = ["| encoder | examples a class | strategy | test accuracy (mean) | std | min-max | "
             "seeds | vs head | wall time a run |", "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["encoder"], run["per_class"], run["strategy"]), []).append(run)
    for (encoder, size, strategy), group in groups.items():
        scores = np.array([run["accuracy"] for run in group])
        head = groups.get((encoder, size, "head"))
        gain = "baseline" if strategy == "head" else (
            f"{100 * (scores.mean() - np.mean([r['accuracy'] for r in head])):+.1f} pts"
            if head else "-")
        lines.append(
            f"| {encoder} | {size} | {strategy} | {scores.mean():.4f} | {scores.std():.4f} | "
            f"{scores.min():.3f}-{scores.max():.3f} | {len(scores)} | {gain} | "
            f"{np.mean([run['seconds'] for run in group]):.0f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
