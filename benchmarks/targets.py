"""Benchmark: multi-label and regression heads against plain baselines on the same frozen features.

Four real datasets under ../shared/data, each with a held-out test split that no model sees:

* clothing (images, multi-label): clothing_multilabel/labels.csv, 821 photos, 6 labels
  ("black;jeans"); a seeded 80/20 train/test split of the table;
* utkface (images, regression): utkface_age/targets.csv, 2,500 faces, target = age in years;
  a seeded 80/20 train/test split;
* reuters (text, multi-label): reuters/train.csv (7,769 newswires, 90 topics) and
  reuters/test.csv (3,019); 10% of train.csv (seeded) is held out as validation, never taking
  the last training example of a topic, so that every topic is learned;
* emobank (text, regression): emobank/train.csv, dev.csv (validation), test.csv; target =
  valence, 1-5.

Images use EfficientNet-Lite0 (`augment="none"`; the classifier holds out its own seeded 20%
validation from the training part); text uses MiniLM (frozen, cached layer features). Rows per
dataset, all scored on the test split:

* multi-label: transferkit's head (a sigmoid per label, binary cross-entropy, a threshold per
  label chosen on validation) against one-vs-rest logistic regression (scikit-learn,
  `LogisticRegression(max_iter=2000)`, threshold 0.5); a diagnostic row scores the head's own
  outputs at 0.5 too, so the threshold rule's share of the difference shows;
* regression: transferkit's head (Huber on standardised targets) against the mean predictor
  (the training mean) and `RidgeCV` (alphas 1e-3..1e3, efficient leave-one-out).

The baselines are fitted on exactly the features the head trained on: the frozen backbone's
cached features (`classifier._training_features`) of the head's training split (validation
excluded), so each row differs only in what sits on top of the features. The transferkit row's
numbers come from `classifier.evaluate` on the test split (the public API); the script checks
that they equal the head's cached-feature outputs (`predict_proba_cached`) scored with the same
metric functions as the baselines (`transferkit.reports.targets`), and says so under the table.
"seconds" is the time to train on the features: for the head, `fit`'s wall time minus its
feature extraction (which the notes give separately; the feature cache makes reruns faster);
for the baselines, scikit-learn's fit and predict. For the image datasets an optional row
fine-tunes the top 20 backbone layers for 2 epochs (`fine_tune(epochs=2, unfreeze=20)`); it is
skipped when its first batches project more than `--fine-tune-budget` seconds.

Usage::

    python benchmarks/targets.py [--only clothing,utkface,reuters,emobank] [--epochs N]
        [--data PATH] [--no-fine-tune] [--fine-tune-budget 300] [--no-evaluate]
        [--json results.json]

On 2 busy CPUs the first run of reuters spends about 20 minutes on MiniLM features of the
7,769 training texts and 7 more on the test texts (256 tokens each); `evaluate` would run the
encoder over the test texts once more, so pass `--no-evaluate` there. Features are cached on
disk by content, so a rerun starts at the head.

Progress goes to stderr; the markdown tables go to stdout (and to `--json` with the raw numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# name -> (modality, target, what must exist under the data folder)
DATASETS = {
    "clothing": ("image", "multi-label", ("clothing_multilabel/labels.csv",)),
    "utkface": ("image", "regression", ("utkface_age/targets.csv",)),
    "reuters": ("text", "multi-label", ("reuters/train.csv", "reuters/test.csv")),
    "emobank": ("text", "regression", ("emobank/train.csv", "emobank/dev.csv",
                                       "emobank/test.csv")),
}
IMAGE_BACKBONE = "efficientnet_lite0"
TEXT_ENCODER = "minilm"
TEST_SHARE = 0.2  # images: the share of the table held out as the test split
VALIDATION_SHARE = 0.1  # reuters: the share of train.csv held out as validation
FINE_TUNE = {"epochs": 2, "unfreeze": 20}
# The fine-tune's wall time against its projection from the first training steps: validation
# passes, checkpoints and the new thresholds add about half again (clothing: 131 s for 65 s
# projected without this; utkface: 351 s for 229 s; 2 CPUs).
FINE_TUNE_OVERHEAD = 1.5
RIDGE_ALPHAS = np.logspace(-3, 3, 13)
AGREEMENT = 1e-3  # evaluate() and the cached-feature path must agree this closely
MULTILABEL_COLUMNS = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"),
                      ("mean_average_precision", "mean AP"))
REGRESSION_COLUMNS = (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the data ----------------------------------------------------------------------------------


def read_csv(path: Path):
    import pandas as pd

    # An empty text stays "" (pandas would make it NaN, and str(NaN) is the text "nan").
    return pd.read_csv(path, keep_default_na=False, na_values={"target": ["", "nan", "NaN"]})


def image_split(table_path: Path, column: str, seed: int) -> dict:
    """Train and test parts of an image table: absolute paths and labels (or targets)."""
    table = read_csv(table_path)
    paths = [str(table_path.parent / p) for p in table["path"]]
    labels = table[column].tolist()
    order = np.random.default_rng(seed).permutation(len(paths))
    cut = int(round(TEST_SHARE * len(paths)))
    test, train = order[:cut], order[cut:]
    return {"train": ([paths[i] for i in train], [labels[i] for i in train]),
            "validation": None,
            "test": ([paths[i] for i in test], [labels[i] for i in test])}


def label_sets(labels) -> list[list[str]]:
    return [[part.strip() for part in str(value).split(";") if part.strip()] for value in labels]


def holdout_keeping_labels(labels, share: float, seed: int) -> np.ndarray:
    """Indices of about `share` of the examples, drawn at random (seeded), never taking an
    example whose removal would leave one of its labels without a training example."""
    sets = label_sets(labels)
    left = Counter(label for found in sets for label in found)
    wanted = int(round(share * len(sets)))
    chosen = []
    for i in np.random.default_rng(seed).permutation(len(sets)):
        if len(chosen) >= wanted:
            break
        if sets[i] and all(left[label] > 1 for label in sets[i]):
            left.subtract(sets[i])
            chosen.append(int(i))
    return np.asarray(sorted(chosen), dtype=np.int64)


def reuters_split(folder: Path, seed: int) -> dict:
    train, test = read_csv(folder / "train.csv"), read_csv(folder / "test.csv")
    texts, labels = train["text"].astype(str).tolist(), train["labels"].astype(str).tolist()
    held = holdout_keeping_labels(labels, VALIDATION_SHARE, seed)
    is_held = np.zeros(len(texts), dtype=bool)
    is_held[held] = True
    return {"train": ([t for t, h in zip(texts, is_held) if not h],
                      [y for y, h in zip(labels, is_held) if not h]),
            "validation": ([texts[i] for i in held], [labels[i] for i in held]),
            "test": (test["text"].astype(str).tolist(), test["labels"].astype(str).tolist())}


def emobank_split(folder: Path) -> dict:
    parts = {}
    for name, file in (("train", "train.csv"), ("validation", "dev.csv"), ("test", "test.csv")):
        table = read_csv(folder / file)
        parts[name] = (table["text"].astype(str).tolist(), table["target"].astype(float).tolist())
    return parts


def load(name: str, data: Path, seed: int) -> dict:
    if name == "clothing":
        return image_split(data / "clothing_multilabel" / "labels.csv", "labels", seed)
    if name == "utkface":
        return image_split(data / "utkface_age" / "targets.csv", "target", seed)
    if name == "reuters":
        return reuters_split(data / "reuters", seed)
    return emobank_split(data / "emobank")


# -- the models --------------------------------------------------------------------------------


def make_classifier(modality: str, target: str, seed: int):
    if modality == "image":
        from transferkit.tasks.image_classifier import ImageClassifier

        return ImageClassifier(IMAGE_BACKBONE, target=target, augment="none", seed=seed)
    from transferkit.tasks.text_classifier import TextClassifier

    return TextClassifier(TEXT_ENCODER, target=target, seed=seed)


def extraction_seconds(classifier, modality: str) -> float:
    """Seconds the classifier spent computing frozen features so far (cache hits are ~0)."""
    if modality == "image":
        return float(classifier.feature_seconds)
    stats = classifier.get_encoder().info.get("embedding") or {}
    return float(stats.get("seconds", 0.0))


def features_of(classifier, items, what: str) -> np.ndarray:
    features = classifier._training_features(list(items))
    if features is None:
        raise RuntimeError(f"no cached features for the {what} inputs (unreadable, or none kept)")
    return np.asarray(features, dtype=np.float64)


def true_targets(target: str, labels, names) -> tuple[np.ndarray, np.ndarray]:
    """`(values, kept rows)` of test labels, in the model's label order."""
    from transferkit.tasks.targets import parse_label_sets, parse_values

    parsed = (parse_label_sets(labels, names) if target == "multi-label"
              else parse_values(labels))
    return parsed.values, parsed.kept


def metrics_of(target: str, y_true, outputs, names, thresholds=None, baseline=None) -> dict:
    from transferkit.reports.targets import multilabel_metrics, regression_metrics

    if target == "multi-label":
        return multilabel_metrics(y_true, outputs, names, thresholds)
    return regression_metrics(y_true, np.asarray(outputs).reshape(-1), baseline)


def headline(target: str, metrics: dict) -> dict:
    columns = MULTILABEL_COLUMNS if target == "multi-label" else REGRESSION_COLUMNS
    return {key: metrics.get(key) for key, _ in columns}


def fit_baselines(target: str, train_x, train_y, test_x, test_y, names) -> list[dict]:
    """The scikit-learn rows, fitted on the head's training features."""
    rows = []
    if target == "multi-label":
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        started = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = OneVsRestClassifier(LogisticRegression(max_iter=2000))
            model.fit(train_x, np.asarray(train_y).astype(np.int64))
            probabilities = model.predict_proba(test_x)
        seconds = time.perf_counter() - started
        kinds = Counter(type(w.message).__name__ for w in caught)
        metrics = metrics_of(target, test_y, probabilities, names, [0.5] * len(names))
        rows.append({"model": "one-vs-rest logistic regression (threshold 0.5)",
                     "metrics": metrics, "seconds": seconds,
                     "warnings": dict(kinds)})
        return rows
    from sklearn.linear_model import RidgeCV

    mean = float(np.mean(train_y))
    started = time.perf_counter()
    constant = np.full(len(test_y), mean)
    rows.append({"model": "mean predictor (training mean)",
                 "metrics": metrics_of(target, test_y, constant, names, baseline=mean),
                 "seconds": time.perf_counter() - started})
    started = time.perf_counter()
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(train_x, train_y)
    predicted = ridge.predict(test_x)
    seconds = time.perf_counter() - started
    rows.append({"model": f"RidgeCV (alpha {ridge.alpha_:.3g})",
                 "metrics": metrics_of(target, test_y, predicted, names, baseline=mean),
                 "seconds": seconds})
    return rows


def largest_difference(target: str, a: dict, b: dict) -> float:
    keys = [key for key, _ in (MULTILABEL_COLUMNS if target == "multi-label"
                               else REGRESSION_COLUMNS)]
    return max(abs(float(a[k]) - float(b[k])) for k in keys
               if a.get(k) is not None and b.get(k) is not None)


def budget_callback(budget: float, epochs: int, steps: int, validation_share: float):
    """A Keras callback that stops fine-tuning after its first batches when the whole run would
    take more than `budget` seconds. `steps`: training steps an epoch (Keras does not know them
    for a dataset of unknown length); `validation_share`: validation inputs per training input,
    a validation pass counted as a third of a training pass over as many inputs (forward
    only)."""
    import keras

    class Budget(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.projected = None
            self.stopped = False

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:  # the first step also traces the graph
                self.first = time.perf_counter()
                return
            if self.projected is None and batch >= 3:
                per_step = (time.perf_counter() - self.first) / batch
                self.projected = (self.first - self.started) + (
                    per_step * (self.params.get("steps") or steps) * epochs
                    * (1 + validation_share / 3)) * FINE_TUNE_OVERHEAD
                if self.projected > budget:
                    self.stopped = True
                    self.model.stop_training = True

    return Budget()


def run_dataset(name: str, args) -> dict:
    modality, target, _ = DATASETS[name]
    log(f"== {name} ({modality}, {target}) ==")
    split = load(name, args.data, args.seed)
    (train_items, train_labels), (test_items, test_labels) = split["train"], split["test"]
    validation = split["validation"]
    log(f"  {len(train_items)} training examples"
        + (f", {len(validation[0])} validation" if validation else " (20% held out inside fit)")
        + f", {len(test_items)} test")
    epochs = args.epochs  # None: the defaults of the target (and encoder), as `train` uses
    classifier = make_classifier(modality, target, args.seed)

    started = time.perf_counter()
    classifier.fit(train_items, train_labels, validation_data=validation, epochs=epochs,
                   verbose=0)
    fit_seconds = time.perf_counter() - started
    fit_features = extraction_seconds(classifier, modality)
    head_epochs = sum(1 for row in classifier.history if row.get("phase") == "head")
    log(f"  fit: {fit_seconds:.0f} s ({fit_features:.0f} s of it feature extraction), "
        f"{head_epochs} head epochs")
    names = list(classifier.class_names)
    fit_items, fit_targets = classifier.split_data("train")
    val_items, _ = classifier.split_data("validation")

    before = extraction_seconds(classifier, modality)
    started = time.perf_counter()
    train_x = features_of(classifier, fit_items, "training")
    test_y, kept = true_targets(target, test_labels, names)
    test_items = [test_items[i] for i in kept]
    test_labels = [test_labels[i] for i in kept]
    test_x = features_of(classifier, test_items, "test")
    test_feature_wall = time.perf_counter() - started
    test_features = extraction_seconds(classifier, modality) - before
    if modality == "image":  # the image classifier's counter is per `fit`, not a running total
        test_features = test_feature_wall
    log(f"  features: train {train_x.shape}, test {test_x.shape} ({test_feature_wall:.0f} s)")

    # The head's outputs on the very features the baselines get.
    cached = classifier.predict_proba_cached(test_items)
    thresholds = list(classifier.thresholds) if target == "multi-label" else None
    mean = (classifier.metadata.get("target_standardisation") or [None])[0]
    cached_metrics = metrics_of(target, test_y, cached, names, thresholds, mean)
    rows = []
    how = ("sigmoid per label, thresholds on validation" if target == "multi-label"
           else "Huber on standardised targets")
    head = {"model": f"transferkit head ({how})",
            "metrics": cached_metrics, "seconds": fit_seconds - fit_features,
            "epochs": head_epochs, "source": "predict_proba_cached"}
    checks = []
    if not args.no_evaluate:
        started = time.perf_counter()
        try:
            evaluated = classifier.evaluate(test_items, test_labels)
        except Exception as error:  # noqa: BLE001  (a benchmark reports, then goes on)
            import traceback

            checks.append(f"evaluate() failed: {type(error).__name__}: {error}")
            log("  evaluate() FAILED:\n" + traceback.format_exc())
        else:
            difference = largest_difference(target, evaluated, cached_metrics)
            checks.append(f"evaluate() {time.perf_counter() - started:.0f} s; largest difference "
                          f"from the cached-feature path {difference:.2g}"
                          + ("" if difference <= AGREEMENT else " (MISMATCH)"))
            head.update(metrics=evaluated, source="evaluate", cached_metrics=headline(
                target, cached_metrics), evaluate_difference=difference)
        log(f"  {checks[-1]}")
    rows.append(head)
    log(f"  head: {headline(target, head['metrics'])}")
    if target == "multi-label":  # the same outputs at the baseline's threshold: what the
        # per-label thresholds add (or cost) on their own
        at_half = metrics_of(target, test_y, cached, names, [0.5] * len(names))
        rows.append({"model": "transferkit head, threshold 0.5 (diagnostic)",
                     "metrics": at_half, "seconds": head["seconds"],
                     "source": "predict_proba_cached"})
        log(f"  head at 0.5: {headline(target, at_half)}")

    baselines = fit_baselines(target, train_x, fit_targets, test_x, test_y, names)
    for row in baselines:
        log(f"  {row['model']}: {headline(target, row['metrics'])} in {row['seconds']:.1f} s"
            + (f"; warnings {row['warnings']}" if row.get("warnings") else ""))
    rows += baselines

    extra = {}
    if target == "multi-label":  # the head's thresholds (a fine-tune chooses new ones)
        how = classifier.metadata.get("threshold_rule") or {}
        extra["thresholds"] = {"tuned": len(how.get("tuned", [])),
                               "default": len(how.get("default", {}))}

    if modality == "image" and not args.no_fine_tune:
        rows.append(fine_tune_row(classifier, target, test_items, test_y, names, mean, args))
    return {"dataset": name, "modality": modality, "target": target,
            "model": IMAGE_BACKBONE if modality == "image" else TEXT_ENCODER,
            "labels": names, "epochs_limit": epochs,
            "n": {"train": len(fit_items), "validation": len(val_items), "test": len(test_items)},
            "fit_seconds": fit_seconds, "fit_feature_seconds": fit_features,
            "test_feature_seconds": test_features, "feature_dim": int(train_x.shape[1]),
            "checks": checks, "rows": rows, **extra}


def fine_tune_row(classifier, target, test_items, test_y, names, mean, args) -> dict:
    label = (f"transferkit fine-tuned (top {FINE_TUNE['unfreeze']} layers, "
             f"{FINE_TUNE['epochs']} epochs)")
    train_items, _ = classifier.split_data("train")
    validation_items, _ = classifier.split_data("validation")
    steps = -(-len(train_items) // classifier._batch_size(None))
    budget = budget_callback(args.fine_tune_budget, FINE_TUNE["epochs"], steps,
                             len(validation_items) / max(len(train_items), 1))
    started = time.perf_counter()
    try:
        classifier.fine_tune(epochs=FINE_TUNE["epochs"], unfreeze=FINE_TUNE["unfreeze"],
                             verbose=0, callbacks=[budget])
    except Exception as error:  # noqa: BLE001
        import traceback

        log("  fine_tune() FAILED:\n" + traceback.format_exc())
        return {"model": label, "skipped": f"fine_tune() failed: {type(error).__name__}: {error}"}
    seconds = time.perf_counter() - started
    if budget.stopped:
        why = (f"skipped: its first batches projected {budget.projected:.0f} s, over the "
               f"{args.fine_tune_budget:.0f} s budget (--fine-tune-budget)")
        log(f"  fine-tune {why}")
        return {"model": label, "skipped": why, "seconds": seconds}
    outputs = classifier.predict_proba(test_items)
    thresholds = list(classifier.thresholds) if target == "multi-label" else None
    metrics = metrics_of(target, test_y, outputs, names, thresholds, mean)
    log(f"  fine-tuned: {headline(target, metrics)} in {seconds:.0f} s (projected "
        f"{budget.projected or 0:.0f} s)")
    return {"model": label, "metrics": metrics, "seconds": seconds, "source": "predict_proba",
            "projected_seconds": budget.projected}


# -- the tables --------------------------------------------------------------------------------


def number(value) -> str:
    return "-" if value is None else f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def table(target: str, results: list[dict]) -> str:
    columns = MULTILABEL_COLUMNS if target == "multi-label" else REGRESSION_COLUMNS
    headers = ["dataset", "model", *(title for _, title in columns), "seconds"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for result in results:
        if result["target"] != target:
            continue
        dataset = f"{result['dataset']} ({result['n']['test']} test)"
        for row in result["rows"]:
            if "skipped" in row:
                cells = [dataset, row["model"], row["skipped"], *([""] * (len(columns) - 1)), "-"]
            else:
                cells = [dataset, row["model"],
                         *(number(row["metrics"].get(key)) for key, _ in columns),
                         f"{row['seconds']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        what = (f"{r['model']} features ({r['feature_dim']} numbers); train/validation/test "
                f"{r['n']['train']}/{r['n']['validation']}/{r['n']['test']}; "
                f"`fit` {r['fit_seconds']:.0f} s, of which feature extraction "
                f"{r['fit_feature_seconds']:.0f} s; test features {r['test_feature_seconds']:.0f} s; "
                f"head epochs {r['rows'][0].get('epochs')} (limit {r['epochs_limit'] or 'default'})")
        if "thresholds" in r:
            counts = r["thresholds"]
            kept = len(r["labels"]) - counts["tuned"] - counts["default"]
            what += (f"; thresholds moved off 0.5 for {counts['tuned']} of {len(r['labels'])} "
                     f"labels, 0.5 kept for {kept} (no better cut on validation) and for "
                     f"{counts['default']} (too few validation positives)")
        for row in r["rows"]:
            if row.get("warnings"):
                what += f"; {row['model']} warnings: {row['warnings']}"
        lines.append(f"- {r['dataset']}: {what}. " + " ".join(r["checks"]))
    return lines


def plain(value):
    """JSON for what `json` cannot write itself (numpy numbers and arrays, paths)."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def parse_only(values) -> list[str]:
    chosen = []
    for value in values or [",".join(DATASETS)]:
        for name in value.split(","):
            name = name.strip()
            if name and name not in DATASETS:
                raise SystemExit(f"--only: unknown dataset {name!r}; choose from "
                                 f"{', '.join(DATASETS)}.")
            if name and name not in chosen:
                chosen.append(name)
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAMES",
                        help=f"datasets, repeatable or comma-separated: {', '.join(DATASETS)} "
                             "(default: all)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="the most head epochs (early stopping ends sooner); default: "
                             "the target's (IMAGE_HEAD_EPOCHS) for images, the encoder's for text")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fine-tune", action="store_true",
                        help="leave out the image fine-tuning row")
    parser.add_argument("--fine-tune-budget", type=float, default=300.0,
                        help="skip the fine-tuning row when it would take longer (seconds)")
    parser.add_argument("--no-evaluate", action="store_true",
                        help="score the head through predict_proba_cached only, without the "
                             "evaluate() cross-check (saves a second pass over the test inputs)")
    parser.add_argument("--json", type=Path, help="also write the tables and raw numbers here")
    args = parser.parse_args(argv)
    names = parse_only(args.only)
    if not args.data.is_dir():
        print(f"skipped: the shared data is not at {args.data} (pass --data PATH)")
        return 0

    results, skipped = [], []
    for name in names:
        missing = [f for f in DATASETS[name][2] if not (args.data / f).is_file()]
        if missing:
            skipped.append(f"{name}: skipped, {', '.join(missing)} not under {args.data}")
            log(skipped[-1])
            continue
        started = time.perf_counter()
        result = run_dataset(name, args)
        result["wall_seconds"] = time.perf_counter() - started
        log(f"  {name} done in {result['wall_seconds']:.0f} s")
        results.append(result)

    sections = []
    for target, title in (("multi-label", "Multi-label (test split)"),
                          ("regression", "Regression (test split)")):
        if any(r["target"] == target for r in results):
            sections.append(f"### {title}\n\n{table(target, results)}")
    text = "\n\n".join(sections)
    footer = notes(results) + [f"- {line}" for line in skipped]
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print()
    print(text)
    print()
    print("seconds: training on the frozen features (the head: `fit` minus its feature "
          f"extraction; baselines: scikit-learn fit + predict); {machine}.")
    print("\n".join(footer))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"table": text, "notes": footer, "machine": machine,
                                         "results": results}, indent=2, default=plain))
        log(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
