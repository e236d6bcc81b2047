"""What a model is and how well it did: the facts behind `MODEL_CARD.md`, `labels.json` and the
server's `/metadata`, gathered from the classifier and, when it sits in a run folder, the run's
report (`report/metrics.json`, `report/data.json`).

The facts travel with every export and are served to anyone who asks, so they name files and
folders by their names only (`faces/`, not `/home/ana/projects/faces/`): where the data sat on
the training machine is none of a reader's business, and means nothing elsewhere.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path

from transferkit.files import read_json

__all__ = ["model_facts", "model_card", "shown_path"]

# Report lines that only make sense on the training machine (where its files are).
_LOCAL_EXTRAS = ("model", "tensorboard")
# An absolute path inside a line of text (not the `//` of `hf://`).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`,;()]+")


def shown_path(path: str | os.PathLike, parts: int = 1) -> str:
    """The last `parts` names of `path` (`/`-separated): what a model card shows of a path."""
    names = Path(path).parts[-parts:]
    return "/".join(name for name in names if name not in ("/", "\\")) or os.fspath(path)


def _without_local_paths(value):
    """`value` with every absolute path in it (a string, or in the strings of a list or dict)
    replaced by its name."""
    if isinstance(value, str):
        if os.path.isabs(value):
            return shown_path(value)
        return _ABSOLUTE_PATH.sub(lambda match: shown_path(match.group(0)), value)
    if isinstance(value, dict):
        return {key: _without_local_paths(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_local_paths(item) for item in value]
    return value


def _run_report(model_path: Path | None):
    """The `RunFolder` beside `model_path` when it has a report (`report/metrics.json`)."""
    from transferkit.run_folder import RunFolder

    if model_path is None:
        return None
    run = RunFolder(Path(model_path).parent)
    return run if run.metrics_path.is_file() else None


def _read(path: Path) -> dict:
    try:
        return read_json(path)
    except (OSError, ValueError):
        return {}


def model_facts(classifier, model_path: str | os.PathLike | None = None) -> dict:
    """Plain data about a trained classifier: task, classes, backbone or encoder, input size,
    training data counts, and the run's metrics (when `model_path` is in a run folder).

    Args:
        classifier: an `ImageClassifier` or `TextClassifier` with a model.
        model_path: the `.keras` file it was loaded from (or its `ModelRef`), to find the run's
            report beside it.
    """
    from transferkit import __version__

    target = getattr(classifier, "target", "single-label")  # any object with a model's facts
    facts: dict = {"task": classifier.task, "classes": list(classifier.class_names),
                   "target": target}
    if target == "multi-label":
        facts["thresholds"] = dict(zip(classifier.class_names, classifier.thresholds))
    if classifier.task == "image":
        facts["backbone"] = _without_local_paths(str(classifier.backbone))
        facts["image_size"] = list(classifier.input_size)
        facts["resize"] = classifier.resize_policy
    else:
        encoder = dict(classifier.metadata.get("encoder", {}))
        facts["encoder"] = _without_local_paths(str(encoder.get("kind") or classifier.encoder))
        facts["encoder_source"] = _without_local_paths(
            str(encoder.get("source") or classifier.encoder))
        facts["sequence_length"] = encoder.get("sequence_length")
    model_path = Path(model_path) if model_path is not None else None
    run = _run_report(model_path)
    if run is not None:
        metrics = _read(run.metrics_path)
        data = _read(run.data_path)
        facts["metrics"] = {
            "title": metrics.get("title"),
            "examples": metrics.get("n"),
            "accuracy": metrics.get("accuracy"),
            "macro_f1": metrics.get("macro_f1", (metrics.get("macro_avg") or {}).get("f1")),
            "per_class": metrics.get("per_class") or metrics.get("per_label") or {},
            **{key: metrics[key] for key in _TARGET_METRICS if key in metrics},
            "extra": _without_local_paths({
                key: value for key, value in (metrics.get("extra") or {}).items()
                if key not in _LOCAL_EXTRAS}),
        }
        facts["data"] = _data_counts(data)
    if model_path is not None and model_path.is_file():
        mtime = model_path.stat().st_mtime
        facts["trained"] = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).strftime("%Y-%m-%d")
    facts["transferkit_version"] = __version__
    return facts


#: The numbers of multi-label and regression reports that the card shows.
_TARGET_METRICS = ("micro_f1", "mean_average_precision", "mae", "rmse", "r2",
                   "mean_predictor_mae")


def _data_counts(data: dict) -> dict:
    """The training data's counts per split and class, from a run's `data.json` (both tasks),
    and the name of its folder or table."""
    source = data.get("root") or data.get("path") or data.get("table")
    counts: dict = {"source": shown_path(source) if source else None}
    if "root" in data:  # images
        counts["per_split"] = data.get("class_counts", {})
        counts["skipped_files"] = data.get("skipped_files", 0)
    else:  # text (its table's `path`)
        counts["classes"] = data.get("classes", {})
        counts["rows_used"] = data.get("rows_used")
        counts["dropped_rows"] = data.get("dropped_rows", 0)
        per_split = data.get("class_counts") or data.get("splits")
        if per_split:
            counts["per_split"] = per_split
    return counts


def model_card(facts: dict, export: dict | None = None) -> str:
    """`MODEL_CARD.md`: what the model is, what it was trained on, how well it did, its limits."""
    classes = facts["classes"]
    target = facts.get("target", "single-label")
    what = facts.get("backbone") or facts.get("encoder")
    listed = ", ".join(f"`{c}`" for c in classes)
    title, task = {
        "single-label": (f"{facts['task']} classifier ({len(classes)} classes)",
                         f"{facts['task']} classification into {listed}"),
        "multi-label": (f"{facts['task']} multi-label classifier ({len(classes)} labels)",
                        f"the labels of each {facts['task']} (none, one or several of {listed})"),
        "regression": (f"{facts['task']} regression model (`{classes[0]}`)",
                       f"a number per {facts['task']}: `{classes[0]}`, in its units"),
    }[target]
    lines = [
        f"# Model card: {title}",
        "",
        f"- Task: {task}.",
        f"- {'Backbone' if facts['task'] == 'image' else 'Text encoder'}: `{what}`"
        + (f" (`{facts['encoder_source']}`)" if facts.get("encoder_source") not in (None, what)
           else ""),
    ]
    if facts["task"] == "image":
        height, width = facts["image_size"]
        lines.append(f"- Input: RGB images, {height}x{width} ({facts['resize']} resize).")
    else:
        lines.append(f"- Input: text, up to {facts.get('sequence_length')} tokens.")
    if facts.get("trained"):
        lines.append(f"- Trained: {facts['trained']}; transferkit {facts['transferkit_version']}.")
    if export:
        lines.append(f"- This export: {export['format']}, quantization {export['quantize']}; "
                     f"exported {export['date']}.")
        verified = export.get("verified")
        if verified:
            lines.append(f"- Verified with {verified['runtime']} on {verified['inputs']} inputs: "
                         f"largest score difference {verified['max_abs_diff']:.2g}, top-1 "
                         f"agreement {verified['top1_agreement']:.1%} with the Keras model.")
    if facts.get("data"):
        lines += _training_data_lines(facts["data"], classes)
    if facts.get("metrics"):
        lines += _evaluation_lines(facts["metrics"], target, facts.get("thresholds") or {})
    lines += [
        "",
        "## Intended use and limits",
        "",
        _USE[target],
        "- The numbers above come from a held-out split of the same source; accuracy on data "
        "from elsewhere (other cameras, sites, writers, time periods) may be lower. Measure it "
        "on your own data (`transferkit evaluate`) before relying on it.",
        *(["- Scores are the model's probabilities; they are not calibrated unless a report says "
           "so."] if target != "regression" else []),
        "- The pretrained " + ("backbone" if facts["task"] == "image" else "encoder")
        + " carries the biases of the data it was pretrained on.",
        "",
    ]
    return "\n".join(lines)


def _training_data_lines(data: dict, classes: list) -> list[str]:
    """The card's "Training data": the source, and examples per class (and split)."""
    lines = ["", "## Training data", ""]
    if data.get("source"):
        lines += [f"Source: `{data['source']}`", ""]
    if isinstance(data.get("per_split"), dict) and data["per_split"] and all(
            isinstance(v, dict) for v in data["per_split"].values()):
        splits = list(data["per_split"])
        lines.append("| class | " + " | ".join(splits) + " |")
        lines.append("|---|" + "---:|" * len(splits))
        for name in classes:
            row = [str(data["per_split"][s].get(name, 0)) for s in splits]
            lines.append(f"| {name} | " + " | ".join(row) + " |")
    elif data.get("classes"):
        lines.append("| class | examples |")
        lines.append("|---|---:|")
        for name, count in data["classes"].items():
            lines.append(f"| {name} | {count} |")
    return lines


def _evaluation_lines(metrics: dict, target: str, thresholds: dict) -> list[str]:
    """The card's "Evaluation": the target's headline numbers, then the per-class (per-label,
    with thresholds) table."""
    lines = ["", "## Evaluation", "", f"{metrics.get('title') or 'Held-out split'}: "
             f"{_headline(target, metrics)} on {metrics.get('examples')} examples.", ""]
    if target == "multi-label" and metrics.get("per_class"):
        lines.append("| label | precision | recall | F1 | AP | support | threshold |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for name, row in metrics["per_class"].items():
            lines.append(f"| {name} | {_num(row.get('precision'))} | {_num(row.get('recall'))}"
                         f" | {_num(row.get('f1'))} | {_num(row.get('average_precision'))} | "
                         f"{row.get('support')} | {_num(thresholds.get(name))} |")
    elif metrics.get("per_class"):
        lines.append("| class | precision | recall | F1 | support |")
        lines.append("|---|---:|---:|---:|---:|")
        for name, row in metrics["per_class"].items():
            lines.append(f"| {name} | {_num(row.get('precision'))} | {_num(row.get('recall'))}"
                         f" | {_num(row.get('f1'))} | {row.get('support')} |")
    for key, value in (metrics.get("extra") or {}).items():
        if "accuracy" in key and value is not None:
            lines.append(f"\n{key}: {_num(value)}")
    return lines


_USE = {
    "single-label": "- Made to sort inputs like its training data into the classes above. It "
                    "always answers one of these classes, even for inputs that belong to none of "
                    "them; check the score.",
    "multi-label": "- Made to tag inputs like its training data with the labels above: each label "
                   "whose score reaches its threshold (chosen on the validation split, in the "
                   "table). It may answer no label; it never answers a label it was not trained "
                   "on.",
    "regression": "- Made to predict the number above for inputs like its training data; outside "
                  "the range it was trained on, its answers are extrapolations. It always "
                  "answers a number, even for inputs unlike its training data.",
}


def _headline(target: str, metrics: dict) -> str:
    if target == "regression":
        return (f"MAE {_num(metrics.get('mae'))}, RMSE {_num(metrics.get('rmse'))}, R² "
                f"{_num(metrics.get('r2'))} (the mean predictor's MAE "
                f"{_num(metrics.get('mean_predictor_mae'))})")
    if target == "multi-label":
        return (f"micro F1 {_num(metrics.get('micro_f1'))}, macro F1 "
                f"{_num(metrics.get('macro_f1'))}, mean average precision "
                f"{_num(metrics.get('mean_average_precision'))}")
    return f"accuracy {_pct(metrics.get('accuracy'))}, macro F1 {_num(metrics.get('macro_f1'))}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
