"""Benchmark: frozen backbones and encoders on Keras and on ONNX Runtime, side by side, one run.

Measures on this machine (`transferkit.runtimes`; the issue "Speed"):

* EfficientNet-Lite0 at 224 px on cats_and_dogs photos: Keras `predict` (batch 32, pre-decoded:
  the baseline), the backbone alone on each runtime, batch-1 latency, and transferkit's feature
  extraction with decoding (files -> features, feature cache off) on each runtime; the largest
  difference of the features, and the one-off export;
* other backbone families (random weights at their own size, pre-decoded): Keras vs ONNX Runtime,
  which is what `runtime="auto"` is based on;
* the packaged sentence encoders named by `--encoders` (MiniLM-L6 by default; `mpnet`), on
  rt_polarity sentences (tokenising is the same for both runtimes);
* the default command `transferkit train images cats_and_dogs --fine-tune-epochs 0` with a cold
  cache (nothing cached: no features, no ONNX graph), with `--runtime auto` and `--runtime keras`.

Rows alternate runtimes over `--rounds` rounds and report medians, so other load on the machine
hits both alike. Usage::

    python benchmarks/feature_speed.py [--task images|text|all] [--encoders minilm,mpnet]
        [--texts 2048] [--no-cli] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from export_parity import SHARED, image_paths, machine, print_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LITE0_GFLOP = 0.81  # multiply-adds x 2 of EfficientNet-Lite0 at 224 px (the figure)
PEAK_GFLOPS = 190.0  # fp32 peak of this 2-core machine for this model (the estimate)
OTHER_BACKBONES = ("mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "efficientnet_v2_b0",
                   "resnet50", "densenet121", "convnext_tiny")


def _median_rates(functions: dict, count: int, rounds: int) -> dict:
    """name -> median items/s of `function()` over `rounds`, the functions taking turns."""
    rates: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            rates[name].append(count / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


def _classifier(backbone: str, weights="imagenet", runtime="auto", cache=False):
    from transferkit.tasks.image_classifier import ImageClassifier

    classifier = ImageClassifier(backbone=backbone, num_classes=2, augment="none",
                                 weights=weights, runtime=runtime, cache_dir=cache)
    classifier.build()
    return classifier


def lite0(paths: list[str], rounds: int, work: Path) -> tuple[list[tuple], dict]:
    """EfficientNet-Lite0: the baseline, each runtime with and without decoding, latency."""
    from transferkit import runtimes
    from transferkit.data.image_inputs import ImageInputs
    from transferkit.data.images import load_resized
    from transferkit.runtimes import frozen_runner

    keras_clf = _classifier("efficientnet_lite0", runtime="keras")
    onnx_clf = _classifier("efficientnet_lite0", runtime="onnx", cache=work / "lite0-cache")
    model = keras_clf.get_encoder().feature_model()
    images = np.stack([load_resized(p, 224) for p in paths])
    started = time.perf_counter()
    runner = frozen_runner(onnx_clf.get_encoder().feature_model(), runtime="onnx",
                           key={"bench": "lite0"},
                           cache=work / "lite0-cache", items=len(paths))
    export_seconds = time.perf_counter() - started
    onnx_features = np.concatenate([runner(images[i:i + 32]) for i in range(0, len(images), 32)])
    keras_features = model.predict(images, batch_size=32, verbose=0)
    diff = float(np.abs(onnx_features - keras_features).max())
    inputs = ImageInputs(paths)
    onnx_clf.get_encoder().readable_features(ImageInputs(paths[:64]), cached=False)  # warm up both
    keras_clf.get_encoder().readable_features(ImageInputs(paths[:64]), cached=False)
    rates = _median_rates({
        "keras_predict": lambda: model.predict(images, batch_size=32, verbose=0),
        "keras_on_batch": lambda: [model.predict_on_batch(images[i:i + 32])
                                   for i in range(0, len(images), 32)],
        "onnx": lambda: [runner(images[i:i + 32]) for i in range(0, len(images), 32)],
        "keras_files": lambda: keras_clf.get_encoder().readable_features(inputs, cached=False),
        "onnx_files": lambda: onnx_clf.get_encoder().readable_features(inputs, cached=False),
    }, len(images), rounds)
    batch_sizes = (8, 16, 32, 64)

    def batches_of(size):  # ONNX Runtime called with `size` rows at a time
        chunk, runtimes.ONNX_BATCH = runtimes.ONNX_BATCH, size
        try:
            for i in range(0, len(images), size):
                runner(images[i:i + size])
        finally:
            runtimes.ONNX_BATCH = chunk

    by_batch = _median_rates({size: (lambda size=size: batches_of(size)) for size in batch_sizes},
                             len(images), rounds)
    one = images[:1]
    latency = _median_rates({
        "keras": lambda: [model.predict_on_batch(one) for _ in range(20)],
        "onnx": lambda: [runner(one) for _ in range(20)],
    }, 20, rounds)
    base = rates["keras_predict"]

    def row(what, runtime, rate, note=""):
        peak = f"{rate * LITE0_GFLOP / PEAK_GFLOPS:.0%}"
        return (what, runtime, f"{rate:.1f}", f"{rate / base:.2f}x", peak, note)

    rows = [
        row("backbone, pre-decoded, batch 32", "Keras predict", base, "the issue's baseline"),
        row("backbone, pre-decoded, batch 32", "Keras predict_on_batch", rates["keras_on_batch"]),
        row("backbone, pre-decoded, batch 32", "ONNX Runtime", rates["onnx"],
            f"max abs diff {diff:.1e}; export {export_seconds:.1f} s once"),
        row("files -> features (decode + resize)", "Keras", rates["keras_files"],
            "transferkit, feature cache off"),
        row("files -> features (decode + resize)", "ONNX Runtime", rates["onnx_files"],
            "target >= 3x Keras predict and >= 100/s"),
        ("batch-1 latency", "Keras predict_on_batch", f"{1000 / latency['keras']:.1f} ms", "",
         "", ""),
        ("batch-1 latency", "ONNX Runtime", f"{1000 / latency['onnx']:.1f} ms", "", "", ""),
        *(row(f"backbone, pre-decoded, {size} rows a call", "ONNX Runtime", by_batch[size],
              "runtimes.ONNX_BATCH" if size == runtimes.ONNX_BATCH else "")
          for size in batch_sizes),
    ]
    facts = {"images": len(paths), "rates": rates, "latency_ms": {k: 1000 / v for k, v in
                                                                  latency.items()},
             "max_abs_diff": diff, "export_seconds": export_seconds,
             "onnx_by_batch_size": by_batch}
    return rows, facts


def other_backbones(names, rounds: int, work: Path) -> tuple[list[tuple], dict]:
    """Backbone families with random weights at their default size, pre-decoded inputs."""
    from transferkit.runtimes import frozen_runner

    rows, facts = [], {}
    for name in names:
        try:
            classifier = _classifier(name, weights=None, runtime="keras")
            model = classifier.get_encoder().feature_model()
            images = np.random.default_rng(0).integers(
                0, 256, (32, *classifier.input_size, 3)).astype(np.float32)
            started = time.perf_counter()
            runner = frozen_runner(model, runtime="onnx", key={"bench": name},
                                   cache=work / "others", items=64)
            onnx_out = runner(images)  # also the check against Keras
            export_seconds = time.perf_counter() - started
            diff = float(np.abs(onnx_out - model.predict_on_batch(images)).max())
            rates = _median_rates({"keras": lambda: model.predict_on_batch(images),
                                   "onnx": lambda: runner(images)}, len(images), rounds)
        except Exception as exc:  # noqa: BLE001  (a row that says what failed)
            rows.append((name, "", "", "", "", f"FAILED: {type(exc).__name__}: {exc}"[:100]))
            facts[name] = {"failed": f"{type(exc).__name__}: {exc}"}
            continue
        size = "x".join(map(str, classifier.input_size))
        rows.append((name, size, f"{rates['keras']:.1f}", f"{rates['onnx']:.1f}",
                     f"{rates['onnx'] / rates['keras']:.2f}x",
                     f"diff {diff:.1e}; export {export_seconds:.0f} s"))
        facts[name] = {"keras": rates["keras"], "onnx": rates["onnx"], "max_abs_diff": diff,
                       "export_seconds": export_seconds, "size": size}
        import keras

        keras.backend.clear_session()
    return rows, facts


def sentence_encoder(name: str, count: int, rounds: int,
                     work: Path) -> tuple[list[tuple], dict]:
    """A packaged sentence encoder's layer features (the default) and sentence vectors on
    rt_polarity sentences, each runtime."""
    import pandas as pd

    from transferkit.backbones.sentence_encoders import (
        choose_sequence_length,
        load_sentence_encoder,
    )
    from transferkit.backbones.text_encoders import tokenize

    table = pd.read_csv(SHARED / "rt_polarity" / "sentences.csv")
    texts = table.iloc[:, 0].astype(str).sample(count, random_state=0).tolist()
    encoder = load_sentence_encoder(name)
    length = choose_sequence_length(encoder.token_counts(texts), cap=256)
    inputs = tokenize(encoder.text_inputs(length), texts)
    rows, facts = [], {"texts": count, "sequence_length": length}
    for features in ("layers", "sentence"):
        started = time.perf_counter()
        encoder.embed(inputs, features=features, batch_size=64, runtime="onnx",
                      cache=work / name)
        export_seconds = time.perf_counter() - started  # export + first pass
        keras_out = encoder.embed(inputs, features=features, batch_size=64, runtime="keras")
        onnx_out = encoder.embed(inputs, features=features, batch_size=64, runtime="onnx",
                                 cache=work / name)
        diff = float(np.abs(onnx_out - keras_out).max())
        rates = _median_rates({
            runtime: (lambda r=runtime: encoder.embed(inputs, features=features, batch_size=64,
                                                      runtime=r, cache=work / name))
            for runtime in ("keras", "onnx")
        }, count, rounds)
        rows.append((f"{name} `{features}` features", f"{rates['keras']:.1f}",
                     f"{rates['onnx']:.1f}", f"{rates['onnx'] / rates['keras']:.2f}x",
                     f"diff {diff:.1e}; export + first pass {export_seconds:.0f} s"))
        facts[features] = {**rates, "max_abs_diff": diff, "export_seconds": export_seconds}
    return rows, facts


def default_run(data: Path, runtime: str, work: Path) -> dict:
    """`transferkit train images DATA --fine-tune-epochs 0` with an empty cache; wall time."""
    cache = Path(tempfile.mkdtemp(prefix=f"cache-{runtime}-", dir=work))
    output = work / f"run-{runtime}"
    command = [sys.executable, "-m", "transferkit.cli", "train", "images", os.fspath(data),
               "--fine-tune-epochs", "0", "--runtime", runtime, "--output", os.fspath(output),
               "--json"]
    environment = {**os.environ, "TRANSFERKIT_CACHE_DIR": os.fspath(cache)}
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode:
        return {"failed": done.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_seconds": wall, **{k: result.get(k) for k in (
        "head_validation_accuracy", "feature_seconds", "feature_runtime")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("images", "text", "all"), default="all")
    parser.add_argument("--images", type=int, default=512, help="photos per measurement")
    parser.add_argument("--texts", type=int, default=2048, help="sentences per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoders", default="minilm",
                        help="packaged sentence encoders to measure (comma-separated: minilm,mpnet)")
    parser.add_argument("--backbones", default=",".join(OTHER_BACKBONES),
                        help="other backbones to compare (comma-separated; '' for none)")
    parser.add_argument("--no-cli", action="store_true", help="skip the default command's runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    os.environ["TRANSFERKIT_CACHE_DIR"] = os.fspath(work / "cache")  # nothing from earlier runs
    results: dict = {"machine": machine()}
    print(json.dumps(results["machine"]))
    data = SHARED / "cats_and_dogs"
    if args.task in ("images", "all"):
        paths = image_paths(data, "train", args.images)
        rows, results["efficientnet_lite0"] = lite0(paths, args.rounds, work)
        print(f"\nEfficientNet-Lite0, 224 px, {len(paths)} cats_and_dogs photos, images/s "
              f"(medians of {args.rounds} rounds; % of ~{PEAK_GFLOPS:.0f} GFLOP/s peak):")
        print_table(("what", "runtime", "images/s", "vs predict", "of peak", "notes"), rows)
        names = [n for n in args.backbones.split(",") if n]
        if names:
            rows, results["backbones"] = other_backbones(names, args.rounds, work)
            print("\nOther backbones (random weights, pre-decoded, batch 32), images/s:")
            print_table(("backbone", "size", "Keras", "ONNX Runtime", "speed-up", "notes"), rows)
        if not args.no_cli:
            runs = {runtime: default_run(data, runtime, work) for runtime in ("auto", "keras")}
            results["default_run"] = runs
            print("\n`transferkit train images cats_and_dogs --fine-tune-epochs 0`, cold cache:")
            print_table(("--runtime", "wall s", "features s", "ran on", "head val accuracy"), [
                (runtime, f"{r['wall_seconds']:.0f}", f"{r['feature_seconds']:.0f}",
                 r["feature_runtime"], f"{r['head_validation_accuracy']:.4f}")
                if "failed" not in r else (runtime, "FAILED", r["failed"][-80:], "", "")
                for runtime, r in runs.items()
            ])
            print("targets: <= 150 s, head validation accuracy >= 0.99, auto within 0.3 points "
                  "of keras")
    if args.task in ("text", "all"):
        rows = []
        for name in args.encoders.split(","):
            more, results[name] = sentence_encoder(name, args.texts, args.rounds, work)
            rows += more
        print(f"\n{args.encoders} on {args.texts} rt_polarity sentences, sentences/s (batch 64, "
              f"length-sorted):")
        print_table(("encoder", "Keras", "ONNX Runtime", "speed-up", "notes"), rows)
        print("target: >= 1.5x Keras, or the reason why not")
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
