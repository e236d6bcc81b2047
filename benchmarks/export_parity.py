"""Benchmark: what each export format and quantization costs in size and agreement, on real data.

For three trained models, each exported to every format x quantization (`transferkit.export`),
and each export run on its own runtime on held-out inputs:

* image: EfficientNet-Lite0 at 224 px, head trained 2 epochs on cats_and_dogs (no augmentation,
  no fine-tuning); 500 validation images (250 cats, 250 dogs, seeded);
* text, minilm: all-MiniLM-L6-v2 frozen + head, trained on a seeded, stratified 5000-sentence
  subset of rt_polarity; 1000 other sentences (500 per class, seeded) held out;
* text, glove-bilstm: the default encoder, same subset and held-out sentences.

Prints one table: file size, size against the float export of the same format, max |score diff|
and top-1 agreement against `classifier.predict_proba` on the same inputs, accuracy on the
held-out labels, export time, and the issue's targets (float formats <= 1e-4 max abs diff; int8
top-1 agreement >= 98% and size <= 35% of float). A combination the exporter refuses is listed
as "n/a" with its message. Image inputs are decoded once (`load_resized`, as `input.json` says)
and the same uint8 arrays go to Keras and to every export; text exported to ONNX or LiteRT is
tokenized with the folder's `tokenizer.json` by Hugging Face `tokenizers`, SavedModels take the
strings. int8 is calibrated on 200 seeded training inputs (`--samples`). For text models the
header also says for how many held-out texts `tokenizer.json` gives the Keras model's own token
ids (`transferkit.export.graphs.token_inputs`).

Usage::

    python benchmarks/export_parity.py [--models image minilm glove-bilstm] [--json PATH]
        [--image-run RUN] [--minilm-run RUN] [--glove-bilstm-run RUN] [--work /tmp/bench_export]

Trained runs are cached under `--work` (`runs/`) and reused on the next call; `--image-run` and
the others reuse a run folder from elsewhere (it must have been trained on the same data). Each
model's exports run in a child process, so that a converter or runtime that crashes in native code
is recorded as "CRASHED" for its combination and the run goes on with the next one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DEFAULT_WORK = Path("/tmp/bench_export")
MODELS = ("image", "minilm", "glove-bilstm")
COMBINATIONS = (
    ("saved_model", "none"),
    ("onnx", "none"), ("onnx", "float16"), ("onnx", "dynamic"), ("onnx", "int8"),
    ("litert", "none"), ("litert", "float16"), ("litert", "dynamic"), ("litert", "int8"),
)
FLOAT_MAX_DIFF = 1e-4  # the issue's targets
INT8_AGREEMENT = 0.98
INT8_SIZE = 0.35
IMAGE_EPOCHS = 2
TEXT_TRAIN = 5000
SEED = 0


def _log(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


# -- data and trained runs (export_runtimes.py uses these too) -----------------------------------

def image_paths(data: Path, split: str, count: int | None = None, seed: int = SEED) -> list[str]:
    """The images of `data/split/<class>/`, sorted; with `count`, a seeded sample of them, as
    many of each class."""
    classes = sorted(p for p in (data / split).iterdir() if p.is_dir())
    rng = np.random.default_rng(seed)
    chosen = []
    for folder in classes:
        paths = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if count is not None:
            index = rng.choice(len(paths), count // len(classes), replace=False)
            paths = [paths[i] for i in sorted(index)]
        chosen += paths
    return chosen


def _trained(run: Path, train) -> Path:
    """`run` if it holds a model, else the result of `train(run)` (a partial run is restarted)."""
    if (run / "model.keras").is_file():
        _log(f"reusing the trained run {run}")
        return run
    if run.exists():
        shutil.rmtree(run)
    run.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train(run)
    _log(f"trained {run} in {time.perf_counter() - started:.0f} s")
    return run


def image_run(data: Path, work: Path, run: str | None = None) -> Path:
    """A classifier of `data` (EfficientNet-Lite0, head only, `IMAGE_EPOCHS` epochs, no
    augmentation): `run` if given, else the one cached in `work/runs/`, trained if missing."""
    if run is not None:
        return Path(run)
    import transferkit

    return _trained(work / "runs" / "images-efficientnet_lite0", lambda output: (
        transferkit.train_images(data, output=output, epochs=IMAGE_EPOCHS, fine_tune_epochs=0,
                                 augment="none", seed=SEED, log=_log, verbose=0)))


def text_subsets(table: Path, work: Path, held_out: int) -> tuple[Path, list[str], np.ndarray]:
    """Writes the `TEXT_TRAIN`-sentence training subset of `table` (seeded, as many of each
    class) to `work`; returns its path and `held_out` other sentences with their labels."""
    with open(table, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    labels = np.asarray([row["sentiment"] for row in rows])
    rng = np.random.default_rng(SEED)
    train, test = [], []
    for label in sorted(set(labels)):
        index = rng.permutation(np.flatnonzero(labels == label))
        per_class = TEXT_TRAIN // 2
        train += index[:per_class].tolist()
        test += index[per_class:per_class + held_out // 2].tolist()
    subset = work / f"rt_polarity-train{TEXT_TRAIN}-seed{SEED}.csv"
    subset.parent.mkdir(parents=True, exist_ok=True)
    with open(subset, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=["text", "sentiment"])
        writer.writeheader()
        writer.writerows({"text": rows[i]["text"], "sentiment": rows[i]["sentiment"]}
                         for i in sorted(train))
    test = sorted(test)
    return subset, [rows[i]["text"] for i in test], labels[test]


def text_run(encoder: str, subset: Path, work: Path, run: str | None = None) -> Path:
    """A text classifier of `subset` with `encoder` frozen (80/10/10 split, seed 0): `run` if
    given, else the one cached in `work/runs/`, trained if missing."""
    if run is not None:
        return Path(run)
    import transferkit

    return _trained(work / "runs" / f"text-{encoder}", lambda output: transferkit.train_text(
        subset, output=output, encoder=encoder, test_size=0.1, validation_size=0.1, seed=SEED,
        log=_log, verbose=0))


def machine() -> dict:
    import keras
    import onnxruntime
    import tensorflow as tf

    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001  (only for the header line)
        litert = "?"
    processor = platform.processor() or platform.machine()
    try:  # Linux: the CPU's name, which platform.processor() does not give
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            names = [line.split(":", 1)[1].strip() for line in file if line.startswith("model name")]
        processor = names[0] if names else processor
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "processor": processor,
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "onnxruntime": onnxruntime.__version__,
            "ai_edge_litert": litert, "load_average": [round(x, 2) for x in os.getloadavg()]}


# -- one export, measured ------------------------------------------------------------------------

def _export_inputs(classifier, folder: Path, format: str, items) -> dict[str, np.ndarray]:
    """What the export at `folder` takes for `items`, prepared as a deployment would."""
    if classifier.task == "image":
        return {"image": np.stack(items).astype(np.uint8)}
    if format == "saved_model":
        return {"text": np.asarray([str(t) for t in items], dtype=object)}
    from tokenizers import Tokenizer

    from transferkit.export.tokenizer_json import encode
    from transferkit.files import read_json

    contract = read_json(folder / "input.json")
    tokenizer = Tokenizer.from_file(os.fspath(folder / contract["text"]["tokenizer"]))
    return encode(tokenizer, contract["text"]["inputs"], items)


def _scores(folder: Path, format: str, inputs: dict[str, np.ndarray], batch: int = 32):
    from transferkit.export import formats

    run, runtime = formats.runner(format, folder / formats.MODEL_FILES[format])
    count = len(next(iter(inputs.values())))
    scores = np.concatenate([run({k: v[i:i + batch] for k, v in inputs.items()})
                             for i in range(0, count, batch)])
    return np.asarray(scores, dtype=np.float64), runtime


def measure(classifier, folder: Path, format: str, quantize: str, *, items, reference, labels,
            calibration, samples: int) -> dict:
    """Exports `classifier` to `folder` and compares the export's scores on `items` with
    `reference` (Keras's); `status` is "ok", "n/a" (the exporter refused, with its message) or
    "failed" (an unexpected error, traceback on stderr)."""
    from transferkit.errors import InputError
    from transferkit.export import export

    row: dict = {"format": format, "quantize": quantize}
    started = time.perf_counter()
    try:
        record = export(classifier, folder, format=format, quantize=quantize,
                        calibration=calibration, samples=samples, overwrite=True)
    except InputError as exc:
        return {**row, "status": "n/a", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001  (an exporter bug: recorded, the run goes on)
        traceback.print_exc()
        return {**row, "status": "failed", "stage": "export",
                "reason": f"{type(exc).__name__}: {exc}"}
    row["export_seconds"] = time.perf_counter() - started
    row["size_bytes"] = record["size_bytes"]
    row["export_verified"] = record["verified"]  # the exporter's own check, on training inputs
    try:
        scores, runtime = _scores(folder, format, _export_inputs(classifier, folder, format, items))
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc()
        return {**row, "status": "failed", "stage": "run",
                "reason": f"{type(exc).__name__}: {exc}"}
    return {
        **row, "status": "ok", "runtime": runtime, "inputs": len(scores),
        "max_abs_diff": float(np.abs(scores - reference).max()),
        "top1_agreement": float((scores.argmax(1) == reference.argmax(1)).mean()),
        "accuracy": float((scores.argmax(1) == labels).mean()),
    }


def _targets(row: dict, float_size: int | None) -> str:
    if row["status"] != "ok":
        return ""
    if row["quantize"] == "none":
        ok = row["max_abs_diff"] <= FLOAT_MAX_DIFF
        return f"diff <= {FLOAT_MAX_DIFF:g}: {'met' if ok else 'MISSED'}"
    if row["quantize"] == "int8":
        agree = row["top1_agreement"] >= INT8_AGREEMENT
        small = float_size is not None and row["size_bytes"] <= INT8_SIZE * float_size
        return (f"top-1 >= {INT8_AGREEMENT:.0%}: {'met' if agree else 'MISSED'}; "
                f"size <= {INT8_SIZE:.0%}: {'met' if small else 'MISSED'}")
    return ""


# -- one model, every combination: a worker process per model ---------------------------------
#
# Converters and runtimes are native code: one that crashes (a double free, a segfault) takes
# its process with it. So each model's combinations run in a child process that appends a line
# to a JSON Lines file as it starts each combination and another as it finishes it; when the
# child dies, the parent records the combination it died in as "crashed" and starts a new child
# at the next one.

def _prepare(name: str, args) -> tuple:
    """`(classifier, run, items, labels, calibration)` of model `name`, trained if needed."""
    import transferkit
    from transferkit.data.images import load_resized

    if name == "image":
        run = image_run(args.images, args.work, args.image_run)
        classifier = transferkit.load(run)
        paths = image_paths(args.images, "validation", args.image_inputs)
        items = [load_resized(p, classifier.input_size, classifier.resize_policy)
                 for p in paths]
        classes = [Path(p).parent.name for p in paths]
        calibration = image_paths(args.images, "train")
    else:
        subset, items, classes = text_subsets(args.table, args.work, args.text_inputs)
        run = text_run(name, subset, args.work, getattr(args, f"{name.replace('-', '_')}_run"))
        classifier = transferkit.load(run)
        with open(subset, newline="", encoding="utf-8") as file:
            calibration = [row["text"] for row in csv.DictReader(file)]
    names = [str(n) for n in classifier.class_names]
    labels = np.asarray([names.index(str(c)) for c in classes])
    return classifier, run, items, labels, calibration


def _tokenizer_parity(classifier, texts) -> dict:
    """How many texts `tokenizer.json` (as the exporter writes it) gives the Keras model's own
    token ids, with the first few that differ."""
    import tempfile

    from tokenizers import Tokenizer

    from transferkit.export.graphs import token_inputs
    from transferkit.export.tokenizer_json import encode, tokenizer_fields, write_tokenizer_json

    layer = classifier.model.get_layer("tokenize")
    with tempfile.TemporaryDirectory() as scratch:
        write_tokenizer_json(layer, Path(scratch) / "tokenizer.json")
        tokenizer = Tokenizer.from_file(os.fspath(Path(scratch) / "tokenizer.json"))
    ours = encode(tokenizer, tokenizer_fields(layer), texts)
    keras_ids = token_inputs(classifier, texts)
    differ = np.zeros(len(texts), dtype=bool)
    for name, ids in keras_ids.items():
        differ |= (ids != ours[name]).any(axis=1)
    return {"same": int((~differ).sum()), "texts": len(texts),
            "differing_examples": [texts[i] for i in np.flatnonzero(differ)[:5]]}


def _worker(args) -> int:
    """Child process: model `args.worker`, combinations from `args.start` on."""
    name = args.worker
    classifier, run, items, labels, calibration = _prepare(name, args)
    started = time.perf_counter()
    reference = np.asarray(classifier.predict_proba(items), dtype=np.float64)
    keras_seconds = time.perf_counter() - started

    def write(record: dict) -> None:
        with open(args.rows, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    if args.start == 0:
        info = {
            "run": os.fspath(run), "inputs": len(items),
            "keras_accuracy": float((reference.argmax(1) == labels).mean()),
            "keras_predict_seconds": keras_seconds,
            "model_keras_bytes": (run / "model.keras").stat().st_size,
        }
        if classifier.task == "text":
            info["encoder"] = classifier.metadata.get("encoder", {}).get("kind")
            info["tokenizer_json_parity"] = _tokenizer_parity(classifier, items)
        write({"info": info})
        _log(f"{name}: Keras accuracy {info['keras_accuracy']:.4f} on {len(items)} held-out "
             "inputs")
    for index in range(args.start, len(COMBINATIONS)):
        format, quantize = COMBINATIONS[index]
        write({"start": index})
        folder = args.work / "exports" / name / (format if quantize == "none"
                                                 else f"{format}-{quantize}")
        row = measure(classifier, folder, format, quantize, items=items, reference=reference,
                      labels=labels, calibration=calibration, samples=args.samples)
        write({"index": index, "row": row})
        if row["status"] == "ok":
            _log(f"{name} {format} {quantize}: {row['size_bytes'] / 1e6:.2f} MB, max diff "
                 f"{row['max_abs_diff']:.2e}, top-1 {row['top1_agreement']:.4f}, "
                 f"{row['export_seconds']:.0f} s")
        else:
            _log(f"{name} {format} {quantize}: {row['status']} ({row['reason'][:100]})")
    return 0


def _child(command: list[str]) -> tuple[int, list[str]]:
    """Runs `command`, its output passed on to stderr; returns its exit code and last lines."""
    import collections
    import subprocess

    tail: collections.deque = collections.deque(maxlen=12)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as process:
        for line in process.stdout:
            sys.stderr.write(line)
            tail.append(line.rstrip())
    return process.returncode, list(tail)


def _how_it_died(code: int, tail: list[str]) -> str:
    import signal

    how = f"exit code {code}"
    if code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    native = [line for line in tail if line.strip() and not line.startswith(("W0000", "I0000"))]
    return f"the process died ({how}); its last output: {' / '.join(native[-2:])}"


def _model_rows(name: str, args, argv: list[str]) -> tuple[dict, list]:
    """Every combination of model `name`, through worker processes."""
    rows_file = args.work / "parity" / f"{name}.jsonl"
    rows_file.parent.mkdir(parents=True, exist_ok=True)
    rows_file.unlink(missing_ok=True)
    info: dict = {}
    rows: dict[int, dict] = {}
    start = 0
    while start < len(COMBINATIONS):
        code, tail = _child([sys.executable, os.fspath(Path(__file__).resolve()), *argv,
                             "--worker", name, "--start", str(start), "--rows",
                             os.fspath(rows_file)])
        started = []
        for line in rows_file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            info = record.get("info", info)
            if "start" in record:
                started.append(record["start"])
            if "row" in record:
                rows[record["index"]] = record["row"]
        if code == 0:
            break
        died_in = started[-1] if started else None
        if died_in is None or died_in in rows:  # not inside an export: the model fails
            info["failed"] = _how_it_died(code, tail)
            _log(f"{name}: {info['failed']}")
            break
        format, quantize = COMBINATIONS[died_in]
        rows[died_in] = {"format": format, "quantize": quantize, "status": "crashed",
                         "reason": _how_it_died(code, tail)}
        _log(f"{name} {format} {quantize}: crashed; going on with the next combination")
        start = died_in + 1
    rows_list = [{**rows[i], "model": name} for i in sorted(rows)]
    floats = {r["format"]: r["size_bytes"] for r in rows_list
              if r["quantize"] == "none" and r["status"] == "ok"}
    for row in rows_list:
        float_size = floats.get(row["format"])
        if row["status"] == "ok" and float_size:
            row["size_vs_float"] = row["size_bytes"] / float_size
        row["targets"] = _targets(row, float_size)
    return info, rows_list


def _table(rows: list[dict]) -> tuple[list[tuple], list[str]]:
    """Table rows and the footnotes (the full messages of refused or failed exports)."""
    notes: list[str] = []
    table = []
    for r in rows:
        if r["status"] == "ok":
            vs_float = f"{r['size_vs_float']:.1%}" if "size_vs_float" in r else "-"
            table.append((r["model"], r["format"], r["quantize"],
                          f"{r['size_bytes'] / 1e6:.2f}", vs_float, f"{r['max_abs_diff']:.2e}",
                          f"{r['top1_agreement']:.2%}", f"{r['accuracy']:.4f}",
                          f"{r['export_seconds']:.0f}", r["targets"]))
            continue
        reason = f"{r['stage']}: {r['reason']}" if r["status"] == "failed" else r["reason"]
        if reason not in notes:
            notes.append(reason)
        mark = {"n/a": "n/a", "failed": "FAILED", "crashed": "CRASHED"}[r["status"]]
        table.append((r["model"], r["format"], r["quantize"], "", "", "", "", "", "",
                      f"{mark} [{notes.index(reason) + 1}]"))
    return table, notes


def print_table(headers: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def _describe(name: str, info: dict) -> str:
    if "keras_accuracy" not in info:
        return f"  {name}: {info.get('failed', 'no result')}"
    what = {"image": f"EfficientNet-Lite0 224 px, head {IMAGE_EPOCHS} epochs, "
                     f"{info['inputs']} cats_and_dogs validation images",
            "minilm": f"MiniLM-L6 frozen + head, {info['inputs']} held-out rt_polarity sentences",
            "glove-bilstm": f"GloVe + BiLSTM, {info['inputs']} held-out rt_polarity sentences",
            }[name]
    line = (f"  {name}: {what}; Keras accuracy {info['keras_accuracy']:.4f}; model.keras "
            f"{info['model_keras_bytes'] / 1e6:.2f} MB")
    parity = info.get("tokenizer_json_parity")
    if parity:
        line += (f"; tokenizer.json gives Keras's token ids for {parity['same']}/"
                 f"{parity['texts']} texts")
        if parity["differing_examples"]:
            line += f" (differs on e.g. {parity['differing_examples'][0]!r})"
    return line


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--images", type=Path, default=SHARED / "cats_and_dogs",
                        help="train/ and validation/ class folders")
    parser.add_argument("--table", type=Path, default=SHARED / "rt_polarity" / "sentences.csv",
                        help="text,sentiment CSV")
    parser.add_argument("--image-run", default=None, help="reuse this trained image run")
    parser.add_argument("--minilm-run", default=None, help="reuse this trained minilm run")
    parser.add_argument("--glove-bilstm-run", default=None,
                        help="reuse this trained glove-bilstm run")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="cached runs, the text subset and the exports")
    parser.add_argument("--image-inputs", type=int, default=500)
    parser.add_argument("--text-inputs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200, help="int8 calibration inputs")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    total_started = time.perf_counter()

    wanted = list(args.models)
    missing = []
    if "image" in wanted and not (args.images / "train").is_dir():
        missing.append(f"image: no cats_and_dogs data at {args.images}")
        wanted.remove("image")
    text = [m for m in wanted if m != "image"]
    if text and not args.table.is_file():
        missing.append(f"{', '.join(text)}: no rt_polarity table at {args.table}")
        wanted = [m for m in wanted if m == "image"]
    for line in missing:
        print(f"skipped {line} (pass --images DIR / --table CSV)")
    if not wanted:
        return 0

    results: dict = {"machine": machine(), "models": {}, "rows": []}
    for name in wanted:
        _log(f"== {name} ==")
        started = time.perf_counter()
        info, rows = _model_rows(name, args, argv)
        info["seconds"] = time.perf_counter() - started
        results["models"][name] = info
        results["rows"] += rows
    results["total_seconds"] = time.perf_counter() - total_started

    table, notes = _table(results["rows"])
    m = results["machine"]
    print()
    print(f"Export parity on held-out real data: {m['cpus']} CPUs ({m['processor']}), "
          f"TensorFlow {m['tensorflow']}, "
          f"Keras {m['keras']}, ONNX Runtime {m['onnxruntime']}, ai-edge-litert "
          f"{m['ai_edge_litert']}")
    for name, info in results["models"].items():
        print(_describe(name, info))
    print()
    print_table(("model", "format", "quantize", "MB", "vs float", "max |diff|", "top-1 agree",
                 "accuracy", "export s", "targets / status"), table)
    print()
    print("max |diff| and top-1 agree: against classifier.predict_proba on the same inputs; "
          "vs float: against the same format's float export;")
    print("accuracy: of the export, on the held-out labels; export s: `export()` wall time, "
          f"conversion + int8 calibration ({args.samples} training inputs) + its own "
          "verification.")
    for i, note in enumerate(notes, 1):
        print(f"[{i}] {note}")
    print(f"total: {results['total_seconds']:.0f} s")
    write_results(args.json, results)
    return 0


def report_rows(title: str, rows: list[dict], json_path=None) -> None:
    """Prints `title` with the machine, then `rows` (dicts with the same keys) as a table, and
    writes `{"rows", "machine"}` to `json_path` when given."""
    print(f"{title}; {machine()}")
    headers = tuple(rows[0])
    print_table(headers, [tuple(row.get(h) for h in headers) for row in rows])
    write_results(Path(json_path) if json_path else None, {"rows": rows, "machine": machine()})


def write_results(path, results: dict) -> None:
    """Writes `results` as JSON to `path` (a `--json` argument), if one was given."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
        print(f"results: {path}")


if __name__ == "__main__":
    sys.exit(main())
