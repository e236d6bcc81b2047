"""Benchmark: EfficientNet-Lite0 (224 px) on each runtime an export targets, side by side.

One trained cats_and_dogs classifier (head 2 epochs, as in `export_parity.py`), exported with
`transferkit.export` to a SavedModel, ONNX float and int8, LiteRT float and int8 (int8 calibrated
on 200 seeded training images: the exporter's default, the run's own training data), then timed
in one process on real validation images (decoded and resized once, outside the timing):

* batch-1 latency: median and p90 of `--calls` single-image calls, after `--warmup` calls;
* batch-32 throughput: images/s over `--batches` batches of 32, after one warm-up batch;

and the model file's size. Rows:

* Keras on TensorFlow: the export graph `image_graph(classifier)` (uint8 in, probabilities out;
  no resizing, augmentation or dropout layers; what the exports are made from), called directly,
  which runs eagerly (`graph(images, training=False)`), and through `graph.predict_on_batch`,
  Keras's compiled `tf.function` path;
* TensorFlow SavedModel: the exported folder's `serve` signature (`tf.saved_model.load`), the
  same graph compiled by `tf.function`;
* ONNX Runtime and LiteRT (ai-edge-litert): `transferkit.export.formats.runner`, the runner the
  exporter verifies with.

Threads are each runtime's default: TensorFlow uses every core (intra- and inter-op 0), ONNX
Runtime one thread per physical core (`intra_op_num_threads` 0), and ai-edge-litert's
`Interpreter` 1 thread (it passes `num_threads or 1`). Rows with LiteRT at `--litert-threads`
threads are added, marked as not the default (`--litert-threads 0` leaves them out).

Usage::

    python benchmarks/export_runtimes.py [--run RUN_FOLDER] [--data ../shared/data/cats_and_dogs]
        [--work /tmp/bench_export] [--json PATH]

Without `--run` the classifier is trained once and cached under `--work`; exports are cached
there too, and made again when the run's `model.keras` changes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from export_parity import (  # noqa: E402  (beside this file)
    DEFAULT_WORK,
    SHARED,
    image_paths,
    image_run,
    machine,
    print_table,
    write_results,
)

EXPORTS = (("saved_model", "none"), ("onnx", "none"), ("onnx", "int8"), ("litert", "none"),
           ("litert", "int8"))
NAMES = {("saved_model", "none"): "TensorFlow SavedModel, `serve` signature",
         ("onnx", "none"): "ONNX Runtime, float32", ("onnx", "int8"): "ONNX Runtime, int8",
         ("litert", "none"): "LiteRT, float32", ("litert", "int8"): "LiteRT, int8"}


def _log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def exported(run: Path, work: Path, format: str, quantize: str, samples: int) -> Path:
    """The export folder of `run` as `format`/`quantize` under `work`, made if missing or made
    from another `model.keras`."""
    from transferkit.export import export
    from transferkit.files import read_json, sha256_file

    name = format if quantize == "none" else f"{format}-{quantize}"
    folder = work / "exports" / f"runtimes-{run.name}" / name
    sha = sha256_file(run / "model.keras")
    record = folder / "export.json"
    if record.is_file() and (read_json(record).get("source") or {}).get("sha256") == sha:
        _log(f"reusing {folder}")
        return folder
    started = time.perf_counter()
    record = export(run, folder, format=format, quantize=quantize, samples=samples,
                    overwrite=True)
    _log(f"exported {name} in {time.perf_counter() - started:.0f} s "
         f"(verified: max diff {record['verified']['max_abs_diff']:.2e})")
    return folder


def timing(run_batch, images: np.ndarray, *, calls: int, warmup: int, batches: int,
           batch_size: int) -> dict:
    """Batch-1 latency (ms: median, p90) and batch-`batch_size` throughput (images/s)."""
    for i in range(warmup):
        run_batch(images[i % len(images)][None])
    latencies = []
    for i in range(calls):
        image = images[i % len(images)][None]
        started = time.perf_counter()
        run_batch(image)
        latencies.append((time.perf_counter() - started) * 1000)
    groups = [images[(i * batch_size) % len(images):][:batch_size] for i in range(batches + 1)]
    groups = [g if len(g) == batch_size else images[:batch_size] for g in groups]
    run_batch(groups[0])  # warm-up: the first call at a new batch size resizes or retraces
    started = time.perf_counter()
    for group in groups[1:]:
        run_batch(group)
    seconds = time.perf_counter() - started
    return {"latency_ms_median": statistics.median(latencies),
            "latency_ms_p90": float(np.percentile(latencies, 90)),
            "latency_ms_min": min(latencies),
            "throughput_images_per_s": batches * batch_size / seconds,
            "calls": calls, "batches": batches, "batch_size": batch_size}


def _litert_runner(path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_path=os.fspath(path), num_threads=threads).get_signature_runner()
    return lambda batch: np.asarray(next(iter(signature(image=batch).values())))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None,
                        help="a trained cats_and_dogs image run folder to reuse")
    parser.add_argument("--data", type=Path, default=SHARED / "cats_and_dogs")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--calls", type=int, default=50, help="batch-1 calls timed")
    parser.add_argument("--warmup", type=int, default=5, help="batch-1 calls not timed")
    parser.add_argument("--batches", type=int, default=5, help="batches timed for throughput")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=200, help="int8 calibration images")
    parser.add_argument("--litert-threads", type=int, default=2,
                        help="extra LiteRT rows at this many threads; 0: none")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    total_started = time.perf_counter()
    if args.run is None and not (args.data / "train").is_dir():
        print(f"skipped: no cats_and_dogs data at {args.data} (pass --data DIR with train/ and "
              "validation/ class folders, or --run RUN_FOLDER)")
        return 0
    if not (args.data / "validation").is_dir():
        print(f"skipped: no validation images at {args.data / 'validation'} to time on "
              "(pass --data DIR)")
        return 0

    import transferkit
    from transferkit.data.images import load_resized
    from transferkit.export import formats
    from transferkit.export.graphs import image_graph

    run = image_run(args.data, args.work, args.run)
    classifier = transferkit.load(run)
    count = max(args.calls, args.batch_size * args.batches)
    paths = image_paths(args.data, "validation", count)
    images = np.stack([load_resized(p, classifier.input_size, classifier.resize_policy)
                       for p in paths]).astype(np.uint8)
    folders = {key: exported(run, args.work, *key, args.samples) for key in EXPORTS}

    graph = image_graph(classifier)
    rows = [("Keras 3 on TensorFlow: image_graph(classifier)(x), eager", "tensorflow (Keras)",
             lambda batch: np.asarray(graph(batch, training=False)),
             _size(run / "model.keras"), "model.keras (whole trained model)"),
            ("Keras 3 on TensorFlow: image_graph(classifier).predict_on_batch(x)",
             "tensorflow (Keras)", lambda batch: np.asarray(graph.predict_on_batch(batch)),
             _size(run / "model.keras"), "model.keras (whole trained model)")]
    for key, folder in folders.items():
        run_batch, runtime = formats.runner(key[0], folder / formats.MODEL_FILES[key[0]])
        rows.append((NAMES[key], runtime, lambda batch, r=run_batch: r({"image": batch}),
                     _size(folder / formats.MODEL_FILES[key[0]]), formats.MODEL_FILES[key[0]]))
        if key[0] == "litert" and args.litert_threads:
            path = folder / formats.MODEL_FILES["litert"]
            rows.append((f"{NAMES[key]}, num_threads={args.litert_threads} (not the default)",
                         runtime, _litert_runner(path, args.litert_threads), _size(path),
                         formats.MODEL_FILES["litert"]))

    load_before = os.getloadavg()
    results = {"machine": machine(), "run": os.fspath(run), "images": len(images),
               "image_size": list(classifier.input_size), "rows": []}
    for name, runtime, run_batch, size, file in rows:
        _log(f"timing {name}")
        measured = timing(run_batch, images, calls=args.calls, warmup=args.warmup,
                          batches=args.batches, batch_size=args.batch_size)
        results["rows"].append({"runtime": name, "version": runtime, "file": file,
                                "size_bytes": size, **measured})
    results["load_average_before_timing"] = [round(x, 2) for x in load_before]
    results["load_average_after_timing"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = time.perf_counter() - total_started

    m = results["machine"]
    print()
    print(f"EfficientNet-Lite0 {'x'.join(map(str, classifier.input_size))}, cats_and_dogs head; "
          f"{m['cpus']} CPUs ({m['processor']}); {len(images)} real validation images")
    print("threads: each runtime's default (TensorFlow: all cores; ONNX Runtime: one per "
          "physical core; LiteRT: 1) unless the row says otherwise")
    print()
    table = [(r["runtime"], f"{r['latency_ms_median']:.1f}", f"{r['latency_ms_p90']:.1f}",
              f"{r['throughput_images_per_s']:.1f}", f"{r['size_bytes'] / 1e6:.2f}", r["file"])
             for r in results["rows"]]
    print_table(("runtime", "batch-1 median ms", "batch-1 p90 ms",
                 f"batch-{args.batch_size} images/s", "MB", "file"), table)
    print()
    print(f"batch-1: {args.calls} calls after {args.warmup} warm-up calls; batch-"
          f"{args.batch_size}: {args.batches} batches after 1 warm-up batch. Load average "
          f"(1 min) before / after timing: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f}.")
    for r in results["rows"]:
        print(f"  {r['runtime']}: {r['version']}")
    print(f"total: {results['total_seconds']:.0f} s")
    write_results(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
