"""Benchmark: when should imbalanced classes get balanced class weights by default?

`class_weight="balanced"` weighs each class by n / (classes x its count) whenever the counts
differ; `"none"` never does; `"auto"` (the default) does from `AUTO_WEIGHT_RATIO` (10x) on, the
ratio this table chose: at 4x the weights cost accuracy and macro F1, from 10x they raise macro F1
and balanced accuracy. Each row is the mean (min-max) over seeds of default runs (`train_text`
with MiniLM frozen, `train_images` with EfficientNet-Lite0, head only, no augmentation) that
differ only in `class_weight`; `auto` is the baseline (the default).

* reuters-r8: the single-label Reuters-21578 training documents of the 8 largest topics (earn
  2840 ... ship 108, 26x); measured on the run's own test split (20%, the training prior).
  `train_text` takes no given test set, and a loaded model predicts without the feature cache.
* cats_and_dogs RATIOx: all 1000 training cats and a seeded 1000/RATIO of the dogs, the run
  splitting off its validation split (20%, same prior); measured on the shared validation set,
  balanced (500/500) and subsampled to the training prior (500 cats, 500/RATIO dogs; the mean
  over 50 seeded subsamples).

The text features are cached by the exact list of texts, so each text seed computes MiniLM
features of ~5600 long documents once (minutes on a CPU); image features are cached per file.

Usage::

    python benchmarks/class_weight.py [--json results.json] [--seeds 0,1,2] [--text-seeds 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from export_parity import SHARED, report_rows  # noqa: E402

R8 = ("earn", "acq", "crude", "trade", "money-fx", "interest", "money-supply", "ship")
RATIOS = (2, 4, 10)  # cats : dogs in training
SUBSAMPLES = 50
QUIET = {"verbose": 0, "log": lambda line: None}


def reuters_r8(work: Path) -> Path:
    """`work/reuters_r8_train.csv` (text,label): single-label training documents of R8."""
    path = work / "reuters_r8_train.csv"
    if not path.is_file():
        with open(SHARED / "reuters" / "train.csv", newline="", encoding="utf-8") as f:
            rows = [(r["text"], r["labels"]) for r in csv.DictReader(f) if r["labels"] in R8]
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("text", "label"), *rows])
    return path


def image_folder(work: Path, ratio: int, seed: int) -> Path:
    """`work/cats_and_dogs_<ratio>x_s<seed>/{cats,dogs}`: symlinks to all training cats and a
    seeded 1000/ratio of the dogs."""
    folder = work / f"cats_and_dogs_{ratio}x_s{seed}"
    if not folder.is_dir():
        for name in ("cats", "dogs"):
            files = sorted((SHARED / "cats_and_dogs" / "train" / name).glob("*.jpg"))
            if name == "dogs":
                pick = np.random.default_rng(seed).permutation(len(files))[:len(files) // ratio]
                files = [files[i] for i in sorted(pick)]
            (folder / name).mkdir(parents=True)
            for file in files:
                (folder / name / file.name).symlink_to(file)
    return folder


def scores(y: np.ndarray, probabilities: np.ndarray, names: list) -> dict:
    from transferkit.reports import classification_metrics

    m = classification_metrics(y, probabilities, names)
    return {"accuracy": m["accuracy"], "macro F1": m["macro_avg"]["f1"],
            "balanced accuracy": m["balanced_accuracy"]}


def train(kind: str, data: Path, setting: str, seed: int, out: Path) -> dict:
    """One default run with `class_weight=setting`. The label-issue check is patched out: it
    does not depend on the class weights, and on R8's 3908 x 2688 MiniLM features its
    cross-validated logistic regressions take over 10 minutes."""
    import transferkit.pipelines.run as run
    from transferkit import train_images, train_text

    run._label_issues = lambda *a: {"line": "not checked (benchmark)", "count": None, "csv": None}
    if kind == "text":
        return train_text(data, encoder="minilm", fine_tune_epochs=0, class_weight=setting,
                          seed=seed, output=out, **QUIET)
    return train_images(data, fine_tune_epochs=0, augment="none", class_weight=setting,
                        seed=seed, output=out, **QUIET)


def text_rows(work: Path, setting: str, seed: int) -> list[dict]:
    started = time.perf_counter()
    result = train("text", reuters_r8(work), setting, seed, work / "runs" / f"r8_{setting}_{seed}")
    metrics = json.loads((Path(result["report_dir"]) / "metrics.json").read_text())
    return [{"data": "reuters-r8 (26x)", "measured on": "test split (prior)", "setting": setting,
             "seed": seed, "accuracy": metrics["accuracy"],
             "macro F1": metrics["macro_avg"]["f1"],
             "balanced accuracy": metrics["balanced_accuracy"],
             "seconds": time.perf_counter() - started}]


def image_rows(work: Path, ratio: int, setting: str, seed: int) -> list[dict]:
    import transferkit

    started = time.perf_counter()
    result = train("images", image_folder(work, ratio, seed), setting, seed,
                   work / "runs" / f"cd{ratio}_{setting}_{seed}")
    classifier = transferkit.load(result["model_path"])
    names = list(classifier.class_names)
    paths, y = [], []
    for index, name in enumerate(names):
        files = sorted((SHARED / "cats_and_dogs" / "validation" / name).glob("*.jpg"))
        paths += [str(p) for p in files]
        y += [index] * len(files)
    y = np.asarray(y)
    probabilities = classifier.predict_proba_cached(paths)  # cached features, per file
    seconds = time.perf_counter() - started
    rows = [{"measured on": "validation balanced", **scores(y, probabilities, names)}]
    rng = np.random.default_rng(1000 + seed)
    cats, dogs = np.flatnonzero(y == names.index("cats")), np.flatnonzero(y == names.index("dogs"))
    subsets = [np.concatenate([cats, rng.choice(dogs, len(dogs) // ratio, replace=False)])
               for _ in range(SUBSAMPLES)]
    prior = [scores(y[s], probabilities[s], names) for s in subsets]
    rows.append({"measured on": "validation at prior",
                 **{key: float(np.mean([p[key] for p in prior])) for key in prior[0]}})
    return [{"data": f"cats_and_dogs ({ratio}x)", **row, "setting": setting, "seed": seed,
             "seconds": seconds} for row in rows]


def summarise(runs: list[dict]) -> list[dict]:
    """One row per (data, measured on, setting): mean (min-max) over the seeds."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["data"], run["measured on"], run["setting"]), []).append(run)
    rows = []
    for (data, split, setting), group in groups.items():
        row = {"data": data, "measured on": split,
               "setting": setting + (" (baseline)" if setting == "auto" else ""),
               "seeds": len(group)}
        for key in ("accuracy", "macro F1", "balanced accuracy"):
            values = [g[key] for g in group]
            row[key] = (f"{np.mean(values):.4f}" if len(values) == 1 else
                        f"{np.mean(values):.4f} ({min(values):.3f}-{max(values):.3f})")
        row["s/run"] = round(float(np.mean([g["seconds"] for g in group])), 1)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="also write the rows (and every run) here")
    parser.add_argument("--seeds", default="0,1,2", help="image seeds, comma-separated")
    parser.add_argument("--text-seeds", default="0", help="text seeds ('' skips the text)")
    parser.add_argument("--work", default="/tmp/bench_class_weight", help="data and runs")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    runs = []
    for seed in [int(s) for s in args.text_seeds.split(",") if s]:
        for setting in ("balanced", "none"):  # 26x
            runs += text_rows(work, setting, seed)
            print(runs[-1], flush=True)
    for ratio in RATIOS:
        for seed in seeds:
            for setting in ("balanced", "none"):
                runs += image_rows(work, ratio, setting, seed)
                print(runs[-2:], flush=True)
    # auto is one of the two by its ratio: copied (s/run 0.0), so the table shows what it chose
    from transferkit.data.labels import AUTO_WEIGHT_RATIO

    for run in list(runs):
        ratio = float(run["data"].split("(")[1].split("x")[0])
        same = "balanced" if ratio >= AUTO_WEIGHT_RATIO else "none"
        if run["setting"] == same:
            runs.append({**run, "setting": "auto", "seconds": 0.0})
    runs.sort(key=lambda r: (r["data"], r["measured on"], ("auto", "none", "balanced")
                             .index(r["setting"])))
    rows = summarise(runs)
    report_rows("class_weight: auto (balanced from 10x) vs none vs balanced", rows, args.json)
    if args.json:
        path = Path(args.json)
        path.write_text(json.dumps({**json.loads(path.read_text()), "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    if not (SHARED / "cats_and_dogs").is_dir() or not (SHARED / "reuters").is_dir():
        print(f"needs the shared data (cats_and_dogs, reuters) at {SHARED}", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
