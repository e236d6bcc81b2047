"""Benchmark: transfer learning on cats vs dogs (2000 train / 1000 validation photos), on a CPU.

Measures, in one run, with EfficientNet-Lite0 at 224 px:

* feature extraction throughput with decoding (the real pipeline, cold feature cache) against
  bare `predict` on pre-decoded tensors: the decode overhead;
* the cached recipe: features once, then the head trains on them (accuracy, wall time);
* the seed's plain recipe: the same frozen backbone and head, the backbone recomputed on every
  image every epoch, for as many epochs as the cached head ran (accuracy, wall time);
* fine-tuning from the cached head (accuracy, wall time);

and prints one table with the targets. Usage::

    python benchmarks/images_cats_and_dogs.py [--data ../shared/data/cats_and_dogs]

`--plain-epochs N` caps the plain recipe at N epochs and extrapolates its time to the head's epoch
count (marked in the table); the default runs it in full.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from transferkit.config import ImageTrainConfig  # noqa: E402  (light: no Keras)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cats_and_dogs"


def _decode_overhead(classifier, paths, batch_size: int, count: int = 320, rounds: int = 3):
    """Images/s of bare `predict` on pre-decoded tensors and of the real extraction pipeline
    (decode, resize, hash, cold cache writes) on the same images, measured alternately so that
    other load on the machine hits both alike. Returns the medians `(bare, pipeline)`."""
    import statistics

    import numpy as np

    from transferkit.data.image_inputs import ImageInputs
    from transferkit.data.images import load_resized
    from transferkit.tasks.image_classifier import ImageClassifier

    paths = paths[:count]
    model = classifier.get_encoder().feature_model()
    images = np.stack([load_resized(p, classifier.input_size) for p in paths])
    model.predict(images[:batch_size], verbose=0)  # trace once, as the pipeline does
    bare, pipeline = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        model.predict(images, batch_size=batch_size, verbose=0)
        bare.append(len(images) / (time.perf_counter() - started))
        with tempfile.TemporaryDirectory(prefix="tk-bench-overhead-") as cache:
            fresh = ImageClassifier(backbone=classifier.backbone, class_names=classifier.class_names,
                                    image_size=classifier.image_size, augment="none",
                                    cache_dir=cache)
            fresh.model, fresh.network = classifier.model, classifier.network
            started = time.perf_counter()
            fresh.get_encoder().readable_features(ImageInputs(paths), batch_size=batch_size)
            pipeline.append(len(paths) / (time.perf_counter() - started))
    return statistics.median(bare), statistics.median(pipeline)


def _plain_recipe(folder, *, epochs: int, batch_size: int, learning_rate: float, seed: int) -> dict:
    """The seed's recipe: frozen base inside the model, recomputed on every image each epoch."""
    from transferkit.data.image_inputs import filtered_dataset_warnings
    from transferkit.tasks.image_classifier import ImageClassifier

    classifier = ImageClassifier(class_names=folder.class_names, augment="none", seed=seed,
                                 cache_dir=False)
    classifier.build()
    classifier._compile(classifier.network, learning_rate)
    size, policy = classifier.input_size, classifier.resize_policy
    from transferkit.data.images import image_dataset

    train = image_dataset(folder.train_paths, folder.train_labels, image_size=size, policy=policy,
                          batch_size=batch_size, shuffle=True, seed=seed)
    validation = image_dataset(folder.validation_paths, folder.validation_labels, image_size=size,
                               policy=policy, batch_size=batch_size)
    started = time.perf_counter()
    with filtered_dataset_warnings():
        history = classifier.network.fit(train, validation_data=validation, epochs=epochs,
                                       verbose=2, shuffle=False)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "epochs": epochs,
        "validation_accuracy": float(history.history["val_accuracy"][-1]),
        "best_validation_accuracy": float(max(history.history["val_accuracy"])),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--backbone", default=ImageTrainConfig.backbone)
    parser.add_argument("--epochs", type=int, default=None,
                        help="head epochs (default: the config's, 20 for single-label)")
    parser.add_argument("--fine-tune-epochs", type=int, default=3)  # the benchmark's own choice
    parser.add_argument("--fine-tune-learning-rate", type=float,
                        default=ImageTrainConfig.fine_tune_learning_rate)
    parser.add_argument("--unfreeze", default=ImageTrainConfig.unfreeze)
    parser.add_argument("--batch-size", type=int, default=ImageTrainConfig.batch_size)
    parser.add_argument("--seed", type=int, default=ImageTrainConfig.seed)
    parser.add_argument("--plain-epochs", type=int, default=None,
                        help="cap the plain recipe's epochs and extrapolate its time")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--output", default=None, help="folder for runs and results.json")
    args = parser.parse_args(argv)

    from transferkit.data.image_folder import discover_image_folder
    from transferkit.tasks.image_classifier import ImageClassifier

    data = Path(args.data)
    if not data.is_dir():
        raise SystemExit(f"No data at {data}; pass --data DIR (train/ and validation/ of cats, dogs).")
    output = Path(args.output or REPO / "benchmarks" / "results" / time.strftime("%Y%m%d-%H%M%S"))
    output.mkdir(parents=True, exist_ok=True)
    folder = discover_image_folder(data, seed=args.seed)
    n_images = len(folder.train_paths) + len(folder.validation_paths)
    print(f"{data}: {len(folder.train_paths)} train / {len(folder.validation_paths)} validation, "
          f"{os.cpu_count()} CPUs", flush=True)

    with tempfile.TemporaryDirectory(prefix="tk-bench-cache-") as cache:  # a cold cache
        classifier = ImageClassifier(backbone=args.backbone, class_names=folder.class_names,
                                     augment="none", seed=args.seed, cache_dir=cache)
        classifier.build()
        bare_rate, pipeline_rate = _decode_overhead(classifier, folder.validation_paths,
                                                    args.batch_size)
        print(f"bare predict: {bare_rate:.1f} images/s; pipeline: {pipeline_rate:.1f} images/s",
              flush=True)

        started = time.perf_counter()
        classifier.fit(folder, epochs=args.epochs, batch_size=args.batch_size,
                       output=output / "cached", verbose=2)
        head_rows = classifier.history
        head_seconds = time.perf_counter() - started
        feature_seconds = classifier.feature_seconds
        validation, y_val = classifier.split_data("validation")
        probabilities = classifier.predict_proba_cached(validation)  # the head on cached features
        head_accuracy = float((probabilities.argmax(1) == y_val).mean())
        extraction_rate = n_images / feature_seconds
        print(f"cached head: {head_accuracy:.4f} in {head_seconds:.0f} s "
              f"({feature_seconds:.0f} s features, {len(head_rows)} epochs)", flush=True)

        plain = None
        if not args.skip_plain:
            epochs = len(head_rows)
            run_epochs = min(epochs, args.plain_epochs) if args.plain_epochs else epochs
            plain = _plain_recipe(folder, epochs=run_epochs, batch_size=args.batch_size,
                                  learning_rate=1e-3, seed=args.seed)
            plain["extrapolated"] = run_epochs != epochs
            plain["seconds_for_head_epochs"] = plain["seconds"] * epochs / run_epochs
            print(f"plain recipe: {plain['validation_accuracy']:.4f} in {plain['seconds']:.0f} s "
                  f"({run_epochs} epochs)", flush=True)

        fine = None
        if args.fine_tune_epochs > 0:
            started = time.perf_counter()
            classifier.fine_tune(epochs=args.fine_tune_epochs,
                                 learning_rate=args.fine_tune_learning_rate,
                                 unfreeze=args.unfreeze, batch_size=args.batch_size, verbose=2)
            validation, y_val = classifier.split_data("validation")
            probabilities = classifier.predict_proba(validation, args.batch_size)
            fine = {
                "seconds": time.perf_counter() - started,
                "epochs": sum(row["phase"] == "fine_tune" for row in classifier.history),
                "validation_accuracy": float((probabilities.argmax(1) == y_val).mean()),
            }
            print(f"fine-tuned: {fine['validation_accuracy']:.4f} in {fine['seconds']:.0f} s",
                  flush=True)

    overhead = 1 - pipeline_rate / bare_rate
    results = {
        "cpus": os.cpu_count(),
        "bare_predict_images_per_s": bare_rate,
        "extraction_images_per_s": extraction_rate,
        "pipeline_images_per_s_same_images": pipeline_rate,
        "decode_overhead": overhead,
        "head_validation_accuracy": head_accuracy,
        "head_seconds": head_seconds,
        "head_epochs": len(head_rows),
        "feature_seconds": feature_seconds,
        "plain": plain,
        "fine_tune": fine,
    }
    (output / "results.json").write_text(json.dumps(results, indent=2))

    def mark(ok):
        return "met" if ok else "MISSED"

    rows = [
        ("feature extraction, with decode: all images", f"{extraction_rate:.1f} img/s "
         f"({n_images} in {feature_seconds:.0f} s)", "", ""),
        ("feature extraction, with decode: 320 images", f"{pipeline_rate:.1f} img/s", "", ""),
        ("bare predict, pre-decoded: same 320 images", f"{bare_rate:.1f} img/s", "", ""),
        ("decode overhead", f"{overhead:.1%}", "<= 10%", mark(overhead <= 0.10)),
        ("head only (cached): val accuracy", f"{head_accuracy:.4f}", ">= 0.97",
         mark(head_accuracy >= 0.97)),
        ("head only (cached): wall time", f"{head_seconds:.0f} s ({feature_seconds:.0f} s features, "
         f"{len(head_rows)} epochs)", "<= 300 s", mark(head_seconds <= 300)),
    ]
    if plain:
        ratio = plain["seconds_for_head_epochs"] / head_seconds
        note = " (extrapolated)" if plain["extrapolated"] else ""
        rows += [
            ("plain recipe: val accuracy", f"{plain['validation_accuracy']:.4f} "
             f"(best {plain['best_validation_accuracy']:.4f})", "", ""),
            ("plain recipe: wall time", f"{plain['seconds_for_head_epochs']:.0f} s{note}, "
             f"{len(head_rows)} epochs", "", ""),
            ("speed-up, cached vs plain", f"{ratio:.1f}x", ">= 10x",
             mark(ratio >= 10 and head_accuracy >= plain["validation_accuracy"] - 0.005)),
        ]
    if fine:
        rows += [
            ("fine-tuned: val accuracy", f"{fine['validation_accuracy']:.4f}", ">= 0.985",
             mark(fine["validation_accuracy"] >= 0.985)),
            ("fine-tuned: wall time", f"{fine['seconds']:.0f} s ({fine['epochs']} epochs, "
             f"unfreeze {args.unfreeze})", "", ""),
        ]
    widths = [max(len(str(r[i])) for r in rows + [("measure", "value", "target", "")])
              for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print()
    print(f"Cats vs dogs, {args.backbone} at 224 px, {os.cpu_count()} CPUs")
    print(line)
    for row in [("measure", "value", "target", "")] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if row[0] == "measure":
            print(line)
    print(line)
    print(f"results: {output / 'results.json'}")
    return results


if __name__ == "__main__":
    main()
