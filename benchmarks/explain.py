"""Benchmark: do the explanations point at what the model uses? Deletion against random deletion.

A faithful explanation names the parts of the input that the prediction rests on, so taking those
parts out should lower the explained class's probability much more than taking out as much of the
input at random (the deletion test of Petsiuk et al. 2018, RISE, and of Samek et al. 2017, at one
fraction). Each row is the mean drop of the explained (predicted) class's probability, from
`predict_proba`, over the examples; the baseline row beside each method deletes at random.

* images (`cats_and_dogs`): the default model, an EfficientNet-Lite0 head trained on
  cats_and_dogs/train and validation (`fine_tune_epochs=0`; `--model RUN` reuses a trained run),
  explains the validation photos (1,000, cats and dogs; `--limit` takes a seeded, class-balanced
  sample). Everything happens in the model's own view: each photo is loaded as the model sees it
  (`load_resized` at `input_size` with `resize_policy`: 224x224 uint8), `classifier.explain` runs on
  those arrays (so the map is at 224x224 and covers all of it), and the top `--share` (20%) of the
  pixels by the map are replaced. Ties in the map (Grad-CAM's ReLU leaves zeros) are broken at
  random (seeded). Two baselines delete as many pixels: "random pixels" (a seeded uniform 20% of
  the pixels, scattered) and "random blobs" (the top 20% of a random 7x7 map upsampled as the
  CAMs are, i.e. a region shaped like a CAM's but placed at random). Two fillings: grey (127) and
  a Gaussian blur of the photo itself (radius `--blur`, 16 px), since a grey patch is itself out
  of the training distribution and can move the prediction whatever it covers.
* text (`rt_polarity`, sentences.csv): a classifier per encoder (`rt_glove`: glove-bilstm, the
  default encoder; `rt_minilm`: MiniLM, frozen) trained with `train_text` (its default seeded,
  stratified split: train 7,464, validation 1,066, test 2,132); `--text-sample` (300) sentences of
  its test split with at least 6 words (seeded) are explained by each text method (occlusion,
  integrated gradients), then the `--words` (3) words with the largest scores are removed all
  together (as occlusion removes one: the word and one space beside it), against as many words
  drawn at random (seeded, the same for both methods).

Columns: mean drop with the method's deletion, mean drop with the random deletion, their ratio
(the acceptance bar is >= 2), n, and the seconds per explained input of `classifier.explain`
(batched, 2 CPUs: images 32 per call; text one call for all, one forward pass per word). The
drop is `p(before) - p(after)` of the explained class, averaged over all examples (so negative
drops, deletions that raise the class, count too); "share > 0" is how often the drop is positive.

Usage::

    python benchmarks/explain.py [--only images,rt_glove,rt_minilm] [--data ../shared/data]
        [--limit N] [--model RUN] [--text-model rt_glove=RUN] [--output FOLDER]
        [--json results.json]

Why two baselines and two fillings: scattered grey pixels act as noise over the whole photo, and
the default model reads such noise as "dog" (on the 1,000 photos, grey random pixels cost cats
about 0.12 of probability and dogs about 0.03, while the grey top-20% region costs cats 0.06 and
dogs 0.12), so "random pixels, grey" measures the model's noise bias as much as the map. The
blobs and the blur keep the deletion in the photo's own statistics.

Times on 2 shared, busy CPUs (load 5-8): the 1,000 photos, three methods, took 35 minutes
(explain 0.23-0.25 s per photo per method; 17 forward passes per photo in all), training the
image head 2-3 minutes (cached features); glove-bilstm trained in 19 minutes (patience 10),
MiniLM's head in 4 (its frozen features of the split were already cached; the first time they
take several minutes); occlusion took 0.07-0.11 s per sentence with glove-bilstm, 0.7 s with
MiniLM; integrated gradients 0.55 s and 2.9 s.

Progress goes to stderr; the markdown tables go to stdout (and to `--json` with the raw numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "explain"
# name -> (what must exist under the data folder, encoder for text)
DATASETS = {
    "images": ("cats_and_dogs", None),
    "rt_glove": ("rt_polarity/sentences.csv", "glove-bilstm"),
    "rt_minilm": ("rt_polarity/sentences.csv", "minilm"),
}
IMAGE_METHODS = ("gradcam", "gradcam++", "layercam")
IMAGE_BATCH = 32
GREY = 127
BAR = 2.0  # the acceptance bar: method drop >= BAR x random drop
WORD = re.compile(r"\S+")  # a word, as transferkit.explain.text splits them


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet(message: str) -> None:
    pass


# -- images ------------------------------------------------------------------------------------


def image_model(args):
    import transferkit

    if args.model:
        log(f"images: using the trained run {args.model}")
        return transferkit.load(args.model), {"run": str(args.model), "trained_seconds": None}
    from transferkit.pipelines.images import train_images

    run = args.output / "cats_and_dogs"
    log(f"images: training the default head on {args.data / 'cats_and_dogs'} into {run}")
    started = time.perf_counter()
    train_images(args.data / "cats_and_dogs", output=run, fine_tune_epochs=0, verbose=0,
                 seed=args.seed, log=lambda line: log(f"  {line}"))
    seconds = time.perf_counter() - started
    return transferkit.load(run), {"run": str(run), "trained_seconds": round(seconds, 1)}


def validation_photos(folder: Path, limit: int | None, seed: int) -> list[tuple[str, str]]:
    """(path, class folder) of the validation photos; `limit`: a seeded sample, classes balanced."""
    from transferkit.data.images import IMAGE_EXTENSIONS

    classes = sorted(p for p in (folder / "validation").iterdir() if p.is_dir())
    per_class = [sorted(str(f) for f in c.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
                 for c in classes]
    if limit:
        rng = np.random.default_rng(seed)
        share = -(-limit // len(classes))
        per_class = [sorted(rng.permutation(files)[:share].tolist()) for files in per_class]
    photos = [(f, c.name) for c, files in zip(classes, per_class) for f in files]
    return photos[:limit] if limit else photos


def top_mask(values: np.ndarray, share: float, rng) -> np.ndarray:
    """A boolean mask of the `share` of the pixels with the largest `values`, ties at random."""
    flat = values.ravel().astype(np.float64)
    k = int(round(share * flat.size))
    jitter = rng.random(flat.size)
    order = np.lexsort((jitter, -flat))  # largest value first, ties in random order
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(values.shape)


def random_blob_map(shape: tuple[int, int], grid: tuple[int, int], rng) -> np.ndarray:
    """A random `grid` map upsampled bilinearly to `shape`, as the CAMs are."""
    from PIL import Image

    small = rng.random(grid).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((shape[1], shape[0]),
                                                              Image.BILINEAR), dtype=np.float32)


def blurred(photo: np.ndarray, radius: float) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(radius)),
                      dtype=np.uint8)


def replaced(photos: np.ndarray, masks: np.ndarray, fillings: np.ndarray) -> np.ndarray:
    return np.where(masks[..., None], fillings, photos).astype(np.uint8)


def run_images(args) -> dict:
    from transferkit.data.images import load_resized

    classifier, facts = image_model(args)
    names = [str(n) for n in classifier.class_names]
    size, policy = classifier.input_size, classifier.resize_policy
    photos = validation_photos(args.data / "cats_and_dogs", args.limit, args.seed)
    log(f"images: {len(photos)} validation photos at {size} ({policy}), methods "
        f"{', '.join(args.methods)}")
    rng = np.random.default_rng(args.seed)
    drops = {key: [] for key in ["random pixels/grey", "random pixels/blur",
                                 "random blobs/grey", "random blobs/blur"]
             + [f"{m}/{f}" for m in args.methods for f in ("grey", "blur")]}
    explain_seconds = {m: 0.0 for m in args.methods}
    odd = {m: {"positive_share_below": 0, "empty_maps": 0, "border_mass": []}
           for m in args.methods}
    base_all, correct, predicted_all = [], 0, []
    started = time.perf_counter()
    for start in range(0, len(photos), IMAGE_BATCH):
        chunk = photos[start:start + IMAGE_BATCH]
        arrays = np.stack([load_resized(p, size, policy) for p, _ in chunk])
        greys = np.full_like(arrays, GREY)
        blurs = np.stack([blurred(a, args.blur) for a in arrays])
        height, width = arrays.shape[1:3]
        base = np.asarray(classifier.predict_proba(list(arrays)), dtype=np.float64)
        predicted = base.argmax(axis=1)
        rows = np.arange(len(chunk))
        p0 = base[rows, predicted]
        base_all.extend(p0.tolist())
        predicted_all.extend(predicted.tolist())
        correct += int(sum(names[k] == c for k, (_, c) in zip(predicted, chunk)))

        def drop(masks, key):
            for filling, tag in ((greys, "grey"), (blurs, "blur")):
                after = np.asarray(classifier.predict_proba(list(replaced(arrays, masks, filling))),
                                   dtype=np.float64)
                drops[f"{key}/{tag}"].extend((p0 - after[rows, predicted]).tolist())

        n_pixels = int(round(args.share * height * width))
        scattered = np.zeros((len(chunk), height * width), dtype=bool)
        for row in scattered:
            row[rng.choice(height * width, n_pixels, replace=False)] = True
        drop(scattered.reshape(len(chunk), height, width), "random pixels")
        grid = None
        for method in args.methods:
            begun = time.perf_counter()
            results = classifier.explain(list(arrays), method=method)
            explain_seconds[method] += time.perf_counter() - begun
            for r, k in zip(results, predicted):
                if r["explained"] != names[k]:
                    raise AssertionError(f"explain explained {r['explained']!r}, "
                                         f"predict_proba says {names[k]!r}")
                if r["map"].shape != (height, width):
                    raise AssertionError(f"a map of shape {r['map'].shape} for {height}x{width}")
            grid = tuple(results[0]["grid"])
            maps = np.stack([r["map"] for r in results])
            for m in maps:
                positive = float((m > 0).mean())
                odd[method]["empty_maps"] += int(m.max() <= 0)
                odd[method]["positive_share_below"] += int(positive < args.share)
                total = float(m.sum())
                ring = m.copy()
                ring[height // 8: height - height // 8, width // 8: width - width // 8] = 0
                odd[method]["border_mass"].append(float(ring.sum()) / total if total > 0 else 0.0)
            drop(np.stack([top_mask(m, args.share, rng) for m in maps]), method)
        blobs = np.stack([top_mask(random_blob_map((height, width), grid or (7, 7), rng),
                                   args.share, rng) for _ in chunk])
        drop(blobs, "random blobs")
        done = start + len(chunk)
        elapsed = time.perf_counter() - started
        log(f"  {done}/{len(photos)} photos, {elapsed:.0f} s, "
            + ", ".join(f"{k} {np.mean(v):+.3f}" for k, v in drops.items() if "grey" in k))
    n = len(photos)
    truth = np.asarray([c for _, c in photos])
    # A 1/8 border ring is 43.75% of the pixels: the share of a uniform map's mass there.
    border = {m: round(float(np.mean(o["border_mass"])), 4) for m, o in odd.items()}
    return {
        "name": "images", "n": n, "model": facts, "classes": names,
        "accuracy": correct / n, "mean_base_probability": float(np.mean(base_all)),
        "predicted_counts": {names[k]: int(np.sum(np.asarray(predicted_all) == k))
                             for k in range(len(names))},
        "share": args.share, "blur_radius": args.blur,
        "drops": {k: summary(v) for k, v in drops.items()},
        "drops_by_class": {c: {k: summary(np.asarray(v)[truth == c].tolist())
                               for k, v in drops.items()} for c in sorted(set(truth))},
        "per_photo": {"path": [p for p, _ in photos], "class": truth.tolist(),
                      "predicted": [names[k] for k in predicted_all],
                      "probability": base_all, "drops": drops},
        "explain_seconds_per_input": {m: s / n for m, s in explain_seconds.items()},
        "odd": {m: {"maps_positive_on_less_than_share": o["positive_share_below"],
                    "empty_maps": o["empty_maps"], "mean_map_mass_in_border_ring": border[m]}
                for m, o in odd.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


# -- text --------------------------------------------------------------------------------------


def text_model(name: str, args):
    import transferkit

    encoder = DATASETS[name][1]
    given = dict(item.split("=", 1) for item in args.text_model)
    if name in given:
        log(f"{name}: using the trained run {given[name]}")
        return Path(given[name]), transferkit.load(given[name]), None
    from transferkit.pipelines.text import train_text

    run = args.output / name
    log(f"{name}: training {encoder} on {args.data / DATASETS[name][0]} into {run}")
    started = time.perf_counter()
    result = train_text(args.data / DATASETS[name][0], output=run, encoder=encoder, verbose=0,
                        seed=args.seed, log=lambda line: log(f"  {line}"))
    seconds = time.perf_counter() - started
    log(f"  test accuracy {result['test_accuracy']:.4f} in {seconds:.0f} s")
    return run, transferkit.load(run), {"trained_seconds": round(seconds, 1),
                                        "test_accuracy": result["test_accuracy"]}


def test_split(run: Path) -> list[str]:
    """The run's test texts: its own split, redone from its saved settings."""
    from transferkit.config import TextTrainConfig
    from transferkit.pipelines.text import _read_and_split

    saved = json.loads((run / "config.json").read_text())
    saved.pop("task", None)  # the run folder's config.json says which task; not a setting
    config = TextTrainConfig.from_dict(saved)
    _, _, parts = _read_and_split(config, quiet)
    return list(parts["test"][0])


def without_words(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the words at `spans` taken out, each with one space beside it (as occlusion)."""
    for start, end in sorted(spans, reverse=True):
        if end < len(text) and text[end].isspace():
            end += 1
        elif start > 0 and text[start - 1].isspace():
            start -= 1
        text = text[:start] + text[end:]
    return text


def run_text(name: str, args) -> dict:
    run, classifier, facts = text_model(name, args)
    texts = [t for t in test_split(run) if len(WORD.findall(t)) >= args.min_words]
    rng = np.random.default_rng(args.seed)
    sample = args.text_sample if not args.limit else min(args.text_sample, args.limit)
    chosen = sorted(rng.permutation(len(texts))[:sample].tolist())
    texts = [texts[i] for i in chosen]
    log(f"{name}: explaining {len(texts)} test sentences of >= {args.min_words} words")
    from transferkit.explain.text import METHODS

    names = [str(n) for n in classifier.class_names]
    base = given = columns = None
    drops, seconds, ties, examples = {}, {}, {}, {}
    for method in METHODS:
        started = time.perf_counter()
        results = classifier.explain(texts, method=method)
        seconds[method] = (time.perf_counter() - started) / len(results)
        log(f"  {method}: {seconds[method]:.3f} s per sentence")
        if base is None:  # the predictions and the random deletions, once
            columns = np.asarray([names.index(r["explained"]) for r in results])
            rows = np.arange(len(results))
            base = np.asarray(classifier.predict_proba(texts), dtype=np.float64)[rows, columns]
            given = np.asarray([r["score"] for r in results])
            random_texts = []
            for r in results:
                spans = [(w["start"], w["end"]) for w in r["words"]]
                picked = rng.choice(len(spans), args.words, replace=False)
                random_texts.append(without_words(r["input"], [spans[i] for i in picked]))
            rand = np.asarray(classifier.predict_proba(random_texts),
                              dtype=np.float64)[rows, columns]
            drops["random words"] = summary((base - rand).tolist())
        top_texts, ties[method] = [], 0
        for r in results:
            words = r["words"]
            scores = np.asarray([w["score"] for w in words])
            order = np.lexsort((rng.random(len(words)), -scores))[:args.words]
            if len(words) > args.words and scores[order[-1]] == np.sort(scores)[::-1][args.words]:
                ties[method] += 1
            spans = [(w["start"], w["end"]) for w in words]
            top_texts.append(without_words(r["input"], [spans[i] for i in order]))
        top = np.asarray(classifier.predict_proba(top_texts), dtype=np.float64)[rows, columns]
        drops[f"{method} top words"] = summary((base - top).tolist())
        examples[method] = [{"text": r["input"], "explained": r["explained"], "score": r["score"],
                             "top": [w["word"] for w in
                                     sorted(r["words"], key=lambda w: -w["score"])[:5]]}
                            for r in results[:5]]
    words_per_text = [len(r["words"]) for r in results]
    return {
        "name": name, "encoder": DATASETS[name][1], "run": str(run), "training": facts,
        "n": len(results), "words": args.words, "mean_words": float(np.mean(words_per_text)),
        "mean_base_probability": float(base.mean()),
        "explain_score_matches_predict_proba": float(np.max(np.abs(base - given))),
        "ties_at_the_cut": ties, "drops": drops, "explain_seconds_per_input": seconds,
        "examples": examples, "seconds": round(time.perf_counter() - started, 1),
    }


# -- tables ------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "sem": float(values.std(ddof=1) / np.sqrt(len(values)))
            if len(values) > 1 else 0.0, "positive_share": float((values > 0).mean()),
            "n": int(len(values))}


def number(value: float) -> str:
    return f"{value:+.4f}"


def ratio(top: float, base: float) -> str:
    return f"{top / base:.2f}" if base > 0 else "- (random <= 0)"


def image_table(result: dict) -> str:
    lines = []
    for filling in ("grey", "blur"):
        d = result["drops"]
        base = d[f"random pixels/{filling}"]["mean"]
        blob = d[f"random blobs/{filling}"]["mean"]
        how = ("grey 127" if filling == "grey"
               else f"Gaussian blur, radius {result['blur_radius']:g} px")
        lines += [f"**images, {filling} filling** (top {result['share']:.0%} of the pixels; {how})",
                  "",
                  "| method | mean drop (top) | mean drop (random pixels) | ratio | "
                  f"met (>= {BAR:g}x) | ratio to random blobs | share > 0 | n | s / input |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for method, seconds in result["explain_seconds_per_input"].items():
            s = d[f"{method}/{filling}"]
            met = "yes" if base > 0 and s["mean"] >= BAR * base else "NO"
            lines.append(f"| {method} | {number(s['mean'])} ± {s['sem']:.4f} | {number(base)} | "
                         f"{ratio(s['mean'], base)} | {met} | {ratio(s['mean'], blob)} | "
                         f"{s['positive_share']:.2f} | {s['n']} | {seconds:.3f} |")
        for key in ("random pixels", "random blobs"):
            s = d[f"{key}/{filling}"]
            lines.append(f"| baseline: {key} | {number(s['mean'])} ± {s['sem']:.4f} | "
                         f"{number(base)} | {ratio(s['mean'], base)} | - | "
                         f"{ratio(s['mean'], blob)} | {s['positive_share']:.2f} | {s['n']} | - |")
        lines.append("")
    return "\n".join(lines)


def text_table(results: list[dict]) -> str:
    lines = [f"**text, rt_polarity** (delete the top {results[0]['words']} words together)", "",
             "| encoder | method | mean drop (top) | mean drop (random) | ratio | "
             f"met (>= {BAR:g}x) | share > 0 | n | s / input |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        base = r["drops"]["random words"]
        for method, seconds in r["explain_seconds_per_input"].items():
            top = r["drops"][f"{method} top words"]
            met = "yes" if base["mean"] > 0 and top["mean"] >= BAR * base["mean"] else "NO"
            lines.append(f"| {r['encoder']} | {method} | {number(top['mean'])} ± "
                         f"{top['sem']:.4f} | {number(base['mean'])} | "
                         f"{ratio(top['mean'], base['mean'])} | {met} | "
                         f"{top['positive_share']:.2f} | {top['n']} | {seconds:.3f} |")
        lines.append(f"| {r['encoder']} | baseline: random words | {number(base['mean'])} ± "
                     f"{base['sem']:.4f} | {number(base['mean'])} | 1.00 | - | "
                     f"{base['positive_share']:.2f} | {base['n']} | - |")
    lines.append("")
    return "\n".join(lines)


def notes(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        if r["name"] == "images":
            model = r["model"]
            out.append(f"images: {r['n']} validation photos of cats_and_dogs, model {model['run']}"
                       + (f" (trained in {model['trained_seconds']:.0f} s)"
                          if model["trained_seconds"] else "")
                       + f"; accuracy on them {r['accuracy']:.4f}, mean probability of the "
                       f"predicted class {r['mean_base_probability']:.3f}; {r['seconds']:.0f} s.")
            for c, d in r["drops_by_class"].items():
                out.append(f"images, {c} only (n {d['random pixels/grey']['n']}): mean drops, "
                           "grey / blur: " + "; ".join(
                               f"{k} {d[k + '/grey']['mean']:+.4f} / {d[k + '/blur']['mean']:+.4f}"
                               for k in [*r["explain_seconds_per_input"], "random pixels",
                                         "random blobs"]) + ".")
            for method, o in r["odd"].items():
                out.append(f"images, {method}: {o['maps_positive_on_less_than_share']} maps are "
                           f"positive on less than {r['share']:.0%} of the pixels (the rest of the "
                           f"top {r['share']:.0%} is drawn at random among zeros), "
                           f"{o['empty_maps']} are all zero; mean share of the map's mass in the "
                           f"outer 1/8 ring (43.75% of the pixels) "
                           f"{o['mean_map_mass_in_border_ring']:.3f}.")
        else:
            training = r["training"]
            trained = (f", trained in {training['trained_seconds']:.0f} s, test accuracy "
                       f"{training['test_accuracy']:.4f}" if training else "")
            out.append(f"{r['name']}: {r['encoder']} ({r['run']}{trained}); {r['n']} test "
                       f"sentences, {r['mean_words']:.1f} words on average, mean probability "
                       f"of the predicted class {r['mean_base_probability']:.3f}; explain's score "
                       f"and predict_proba differ by at most "
                       f"{r['explain_score_matches_predict_proba']:.1e}; texts with a tie at the "
                       f"3rd word (broken at random): {r['ties_at_the_cut']}; "
                       f"{r['seconds']:.0f} s for the last method.")
    return out


def plain(value):
    """JSON for what `json` cannot write itself (numpy numbers and arrays, paths)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def parse_only(values) -> list[str]:
    names = [n.strip() for value in (values or [",".join(DATASETS)]) for n in value.split(",")
             if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SystemExit(f"--only: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(DATASETS)}")
    return list(dict.fromkeys(names))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAMES",
                        help=f"comma-separated, of {', '.join(DATASETS)} (default: all)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="the shared data folder (cats_and_dogs/, rt_polarity/)")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most N photos (a seeded sample, classes balanced) and N sentences")
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained cats_and_dogs image run to use instead of training one")
    parser.add_argument("--text-model", action="append", default=[], metavar="NAME=RUN",
                        help="a trained rt_polarity run for rt_glove or rt_minilm")
    parser.add_argument("--methods", default=",".join(IMAGE_METHODS),
                        help="image methods, comma-separated")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="where the models are trained")
    parser.add_argument("--share", type=float, default=0.2, help="share of the pixels deleted")
    parser.add_argument("--blur", type=float, default=16.0, help="Gaussian blur radius, pixels")
    parser.add_argument("--words", type=int, default=3, help="words deleted")
    parser.add_argument("--min-words", type=int, default=6)
    parser.add_argument("--text-sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the tables and raw numbers here")
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    names = parse_only(args.only)

    results = []
    for name in names:
        needed = args.data / DATASETS[name][0]
        if not needed.exists():
            log(f"{name}: skipped, {needed} is missing (pass --data PATH)")
            continue
        results.append(run_images(args) if name == "images" else run_text(name, args))

    parts = [image_table(r) for r in results if r["name"] == "images"]
    text = [r for r in results if r["name"] != "images"]
    if text:
        parts.append(text_table(text))
    table = "\n".join(parts)
    footer = notes(results)
    print(table)
    for line in footer:
        print(f"- {line}")
    if args.json:
        machine = {"python": platform.python_version(), "machine": platform.machine(),
                   "cpus": os.cpu_count()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"table": table, "notes": footer, "machine": machine,
                                         "arguments": vars(args), "results": results},
                                        indent=2, default=plain))
        log(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
