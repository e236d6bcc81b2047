"""Benchmark: when should a run keep T = 1 instead of fitting a temperature on validation?

Temperature scaling fits one scalar T on the validation split (`fit_temperature`, minimum NLL).
On a small split with no mistakes the NLL keeps falling as T falls, so T runs to its floor and
every score becomes 100%. This measures, on the raw (T = 1) probabilities of real trained heads,
what a T fitted on n validation examples does to examples it was not fitted on:

* pools: cats_and_dogs (EfficientNet-Lite0 head, no fine-tuning, at 224 and at 96 pixels for a
  weaker model; its 1000 validation images), rt_polarity (MiniLM head; its validation + test
  rows), and the demo's faces (scikit-image's `lfw_subset`, `DEMO_OPTIONS` with no fine-tuning
  for `faces`, with the demo's for `faces_demo`): 5-fold out-of-fold probabilities of the 200
  images, one 160 / 40 train / validation run per fold, so each fold is one demo's validation;
* for each n of `--sizes` (40, 100, 400; none above half a pool): `--draws` stratified
  subsets of n examples; T is fitted on the subset and ECE (15 bins) and NLL are measured on the rest of the
  pool at T = 1 and at the fitted T; the subset's number of errors is recorded;
* rules: "fit only when the n examples hold at least k errors" (k = 0, "always fit", is the
  rule before this benchmark: any split of 30 or more) give T = 1 below k; the last row is
  transferkit's rule now (`calibration.why_not_fitted`: at least 100 examples, 5 mistakes and 5
  right answers). Per rule: mean and 95th percentile of held-out NLL and ECE minus their T = 1
  values, and the share of draws where the held-out NLL got worse; per error count: the
  fitted T's median and 5th / 95th percentiles and the same changes.

Usage::

    python benchmarks/calibration_rule.py [--draws 500] [--pool-cache pools.npz] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZES = (40, 100, 400)
POOLS = ("cats_and_dogs", "cats_and_dogs_96", "rt_polarity", "faces", "faces_demo")
RULES = {"always fit (before)": 0, "skip at 0 errors": 1, "fit at >= 2 errors": 2,
         "fit at >= 3 errors": 3, "fit at >= 5 errors": 5, "fit at >= 10 errors": 10}
BUCKETS = {"0": (0, 0), "1": (1, 1), "2": (2, 2), "3-4": (3, 4), "5-9": (5, 9),
           ">=10": (10, 10**9)}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def quiet(line: str) -> None:
    pass


def folder_items(folder: Path, class_names) -> tuple[list[str], np.ndarray]:
    """The image files of `folder/<class>/` and their int labels, in `class_names` order."""
    paths, labels = [], []
    for index, name in enumerate(class_names):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(p) for p in files]
        labels += [index] * len(files)
    return paths, np.asarray(labels)


def cats_and_dogs_pool(work: Path, image_size: int | None = None) -> dict:
    import transferkit

    data = SHARED / "cats_and_dogs"
    result = transferkit.train_images(data, output=work / f"cats_and_dogs{image_size}",
                                      image_size=image_size, fine_tune_epochs=0, augment="none",
                                      calibrate=False, verbose=0, log=quiet)
    model = transferkit.load(result["model_path"])
    paths, labels = folder_items(data / "validation", model.class_names)
    return {"labels": labels, "probabilities": model.predict_proba_cached(paths)}


def rt_polarity_pool(work: Path) -> dict:
    import transferkit
    from transferkit.data.labels import encode_labels, stratified_split
    from transferkit.data.text import read_text_table

    table_path = SHARED / "rt_polarity" / "sentences.csv"
    result = transferkit.train_text(table_path, encoder="minilm", output=work / "rt_polarity",
                                    fine_tune_epochs=0, calibrate=False, verbose=0, log=quiet)
    model = transferkit.load(result["model_path"])
    c = transferkit.TextTrainConfig()  # the split `train_text` made: the same shares and seed
    table = read_text_table(table_path)
    index = stratified_split(table.labels, {"test": c.test_size, "validation": c.validation_size},
                             c.seed, min_per_split=True)
    held = np.sort(np.concatenate([index["validation"], index["test"]]))
    labels, _ = encode_labels([table.labels[i] for i in held], model.class_names)
    probabilities = model.predict_proba_cached([table.texts[i] for i in held])
    test = np.isin(held, index["test"])
    accuracy = float((probabilities[test].argmax(1) == labels[test]).mean())
    if abs(accuracy - result["test_accuracy"]) > 1e-6:
        raise SystemExit(f"rt_polarity: the split differs from the run's ({accuracy:.4f} vs "
                         f"{result['test_accuracy']:.4f} test accuracy)")
    return {"labels": labels, "probabilities": probabilities}


def faces_pool(work: Path, fine_tune_epochs: int, folds: int = 5) -> dict:
    """Out-of-fold probabilities of the demo's 200 images: fold k is run k's validation split."""
    import transferkit
    from transferkit.demos.images import DEMO_OPTIONS, write_lfw_subset

    work = work / f"faces{fine_tune_epochs}"
    source = write_lfw_subset(work / "lfw_faces")
    names = sorted(d.name for d in source.iterdir() if d.is_dir())
    rng = np.random.default_rng(0)
    files = {}
    for name in names:  # a seeded shuffle of each class, dealt out to the folds
        found = sorted((source / name).glob("*.png"))
        files[name] = [found[i] for i in rng.permutation(len(found))]
    options = {**DEMO_OPTIONS, "fine_tune_epochs": fine_tune_epochs}
    labels, probabilities, fold_of = [], [], []
    for k in range(folds):
        data = work / f"faces_fold{k}"
        for name in names:
            for j, path in enumerate(files[name]):
                target = data / ("validation" if j % folds == k else "train") / name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
        result = transferkit.train_images(data, output=work / f"faces_run{k}", calibrate=False,
                                          verbose=0, log=quiet, **options)
        model = transferkit.load(result["model_path"])
        paths, y = folder_items(data / "validation", model.class_names)
        labels.append(y)
        probabilities.append(model.predict_proba_cached(paths))
        fold_of.append(np.full(len(y), k))
    return {"labels": np.concatenate(labels), "probabilities": np.concatenate(probabilities),
            "fold": np.concatenate(fold_of)}


def load_pools(args) -> dict[str, dict]:
    from transferkit.demos.images import DEMO_OPTIONS

    cache = Path(args.pool_cache) if args.pool_cache else None
    pools = {}
    if cache and cache.is_file():
        with np.load(cache) as stored:
            for key in stored.files:
                pool, _, field = key.partition("/")
                pools.setdefault(pool, {})[field] = stored[key]
    builders = {"cats_and_dogs": lambda work: cats_and_dogs_pool(work),
                "cats_and_dogs_96": lambda work: cats_and_dogs_pool(work, image_size=96),
                "rt_polarity": rt_polarity_pool,
                "faces": lambda work: faces_pool(work, fine_tune_epochs=0),
                "faces_demo": lambda work: faces_pool(work, DEMO_OPTIONS["fine_tune_epochs"])}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.pools:
            if name not in pools:
                started = time.perf_counter()
                pools[name] = builders[name](Path(tmp))
                print(f"{name}: pool of {len(pools[name]['labels'])} in "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
                if cache:
                    np.savez(cache, **{f"{p}/{f}": v for p, d in pools.items() for f, v in d.items()})
    return {name: pools[name] for name in args.pools}


def stratified_subset(labels: np.ndarray, n: int, rng) -> np.ndarray:
    """`n` indices of `labels`, each class in its share of the pool (rounded)."""
    classes, counts = np.unique(labels, return_counts=True)
    take = np.floor(n * counts / counts.sum()).astype(int)
    take[np.argsort(-(n * counts / counts.sum() - take))[: n - take.sum()]] += 1
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), t, replace=False)
                           for c, t in zip(classes, take)])


def draw(labels: np.ndarray, probabilities: np.ndarray, n: int, draws: int, seed: int) -> dict:
    """Per draw: errors in the fit subset, fitted T, held-out NLL and ECE at T = 1 and at T."""
    from transferkit.reports import calibration as tc

    rng = np.random.default_rng(seed)
    wrong = probabilities.argmax(axis=1) != labels
    rows = {key: [] for key in ("errors", "T", "nll1", "nllT", "ece1", "eceT", "rule")}
    for _ in range(draws):
        fit = np.zeros(len(labels), dtype=bool)
        fit[stratified_subset(labels, n, rng)] = True
        t = tc.fit_temperature(labels[fit], probabilities[fit])
        y, p = labels[~fit], probabilities[~fit]
        scaled = tc.with_temperature(p, t)
        for key, value in (("errors", int(wrong[fit].sum())), ("T", t),
                           ("rule", tc.why_not_fitted(labels[fit], probabilities[fit]) is None),
                           ("nll1", tc.negative_log_likelihood(y, p)),
                           ("nllT", tc.negative_log_likelihood(y, scaled)),
                           ("ece1", tc.expected_calibration_error(y, p)),
                           ("eceT", tc.expected_calibration_error(y, scaled))):
            rows[key].append(value)
    return {key: np.asarray(value) for key, value in rows.items()}


def changes(d: dict, fitted: np.ndarray) -> dict:
    """Mean and 95th percentile of the held-out NLL and ECE change (T = 1 where not fitted)."""
    nll = np.where(fitted, d["nllT"] - d["nll1"], 0.0)
    ece = np.where(fitted, d["eceT"] - d["ece1"], 0.0)
    return {"dNLL mean": round(nll.mean(), 4), "dNLL p95": round(np.percentile(nll, 95), 4),
            "dECE mean": round(ece.mean(), 4), "dECE p95": round(np.percentile(ece, 95), 4),
            "NLL worse": f"{(nll > 1e-9).mean():.0%}"}


def print_table(title: str, rows: list[dict]) -> None:
    headers = list(rows[0])
    cells = [[str(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    for line in [headers, ["-" * w for w in widths], *cells]:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))


def summarize(name: str, n: int, d: dict) -> tuple[list[dict], list[dict]]:
    """The rule rows and the error-count rows of one pool and subset size."""
    base = {"pool": name, "n": n, "NLL T=1": round(d["nll1"].mean(), 4),
            "ECE T=1": round(d["ece1"].mean(), 4)}
    rules = [{**base, "rule": rule, "fitted": f"{(d['errors'] >= k).mean():.0%}",
              **changes(d, d["errors"] >= k)} for rule, k in RULES.items()]
    rules.append({**base, "rule": "transferkit now", "fitted": f"{d['rule'].mean():.0%}",
                  **changes(d, d["rule"])})
    buckets = []
    for bucket, (low, high) in BUCKETS.items():
        b = (d["errors"] >= low) & (d["errors"] <= high)
        if b.any():
            d_b = {key: value[b] for key, value in d.items()}
            t5, t50, t95 = np.percentile(d["T"][b], [5, 50, 95])
            buckets.append({"pool": name, "n": n, "errors": bucket, "draws": f"{b.mean():.0%}",
                            "T median": round(t50, 3), "T p5-p95": f"{t5:.3f}-{t95:.3f}",
                            **changes(d_b, np.ones(b.sum(), dtype=bool))})
    return rules, buckets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pools", nargs="+", choices=POOLS, default=list(POOLS))
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES),
                        help="fit subset sizes (those above half a pool are skipped)")
    parser.add_argument("--draws", type=int, default=500, help="fit subsets per pool and size")
    parser.add_argument("--pool-cache", help="read (or write) the pools' T = 1 probabilities")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    from transferkit.reports.calibration import fit_temperature

    rule_rows, bucket_rows = [], []
    for name, pool in load_pools(args).items():
        y, p = pool["labels"], pool["probabilities"]
        print(f"{name}: {len(y)} examples, {int((p.argmax(1) != y).sum())} errors", flush=True)
        for k in np.unique(pool.get("fold", [])):  # faces: each fold is one run's validation
            f = pool["fold"] == k
            print(f"  fold {k}: {f.sum()} validation, {int((p[f].argmax(1) != y[f]).sum())} "
                  f"errors, fitted T {fit_temperature(y[f], p[f]):.3f}")
        for n in args.sizes:
            if n <= len(y) // 2:
                rules, buckets = summarize(name, n, draw(y, p, n, args.draws, seed=n))
                rule_rows += rules
                bucket_rows += buckets
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print_table(f"Rules: fit T only with >= k errors in the n fit examples; held-out change "
                f"vs T = 1 ({args.draws} draws; {machine})", rule_rows)
    print_table("Fitted T and its held-out effect by errors in the fit subset", bucket_rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"rules": rule_rows, "buckets": bucket_rows,
                                               "draws": args.draws, "machine": machine},
                                              indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if not (SHARED / "cats_and_dogs").is_dir() or not (SHARED / "rt_polarity").is_dir():
        print(f"needs the shared data (cats_and_dogs, rt_polarity) at {SHARED}", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
