"""`train_images`: the whole `transferkit train images` run, on the shared run skeleton."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from transferkit.config import ImageTrainConfig
from transferkit.pipelines.run import TrainingRun

__all__ = ["train_images"]


def train_images(
    data: str | os.PathLike | None = None,
    *,
    output: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    config: ImageTrainConfig | None = None,
    log: Callable[[str], None] = print,
    verbose: Any = "auto",
    track: str | os.PathLike | bool | None = None,
    experiment: str | None = None,
    register: str | None = None,
    processes: dict | None = None,
    **options: Any,
) -> dict:
    """Trains an image classifier end to end and writes the model and its report.

    Args:
        data: the data folder (class sub-folders, or train/ and validation/); default the
            config's `data`, or the run's when resuming.
        output: the run folder; default `runs/images-<date>-<time>`.
        resume: an interrupted run folder to continue from its last finished epoch, with its
            saved settings; `options` of a phase it has not begun (`unfreeze`,
            `fine_tune_epochs`... before fine-tuning) change them.
        config: settings to start from. Default `None`: `ImageTrainConfig()`.
        log: called with each progress line. Default `print`.
        verbose: Keras progress output. Default `"auto"`.
        track, experiment, register: log the run to MLflow (`True` or a tracking URI), in
            which experiment, and register its model under a name; see `TrainingRun`.
        processes: data-parallel training over several processes (`coordinator`,
            `num_processes`, `process_id`); see `TrainingRun`.
        **options: settings of `ImageTrainConfig` (`backbone`, `epochs`, `fine_tune_epochs`...)
            that override `config`.

    Returns:
        The result (see `TrainingRun.finish`): `validation_accuracy`,
        `head_validation_accuracy`, `fine_tune_validation_accuracy` (None without fine-tuning),
        paths, times, and `backbone`, `image_size`, `feature_seconds`, `skipped_files`,
        `duplicates_across_splits`, `train_images`, `validation_images`.
    """
    from transferkit.data.image_folder import discover_image_folder
    from transferkit.reports.augmentation import preview_augmentation
    from transferkit.tasks.image_classifier import ImageClassifier

    with TrainingRun(ImageTrainConfig, data, output=output, resume=resume, config=config,
                     options=options, log=log, verbose=verbose, track=track,
                     experiment=experiment, register=register, processes=processes) as run:
        c = run.config
        classifier = ImageClassifier(  # the classes come from the data, in `fit`
            backbone=c.backbone, image_size=c.image_size, input_range=c.input_range,
            weights=c.weights, dropout=c.dropout, calibrate=c.calibrate,
            class_weight=c.class_weight, target=c.target,
            augment=c.augment, augment_views=c.augment_views, seed=c.seed, runtime=c.runtime,
        )
        classifier.check_settings()  # a typo fails at once, not after the data is read
        if Path(c.data).is_file() or c.target != "single-label":
            return _train_from_table(run, classifier, c, log)
        folder = discover_image_folder(c.data, validation_size=c.validation_size, seed=c.seed)
        _log_data(folder, log)
        without_validation = set(folder.classes_without_validation)
        _build(classifier, folder.class_names, c)  # before features, training and the folder
        run.start()
        log(f"Head: {c.backbone} frozen, features cached; up to {_head_epochs(c)} epochs")
        phases = run.train(
            classifier, folder, report=lambda: classifier.split_data("validation"),
            report_split="validation", fine_tune_options={"unfreeze": c.unfreeze},
        )
        lost = set(folder.classes_without_validation) - without_validation
        if lost:  # unreadable files found while training took a class's last validation images
            log(_no_validation_line(sorted(lost), folder))
        train_items = classifier.split_data("train")[0]
        preview_augmentation(
            train_items[0], Path(run.run.report_dir) / "augmentation.png",
            classifier.augmentations, image_size=classifier.input_size,
            policy=classifier.resize_policy, seed=c.seed,
        )
        extra, result, facts = _facts(c, classifier, folder, len(train_items), phases)
        return run.finish(classifier, phases, title=f"{c.backbone} on {Path(c.data).name}",
                          extra=extra, result=result, data=facts)


def _train_from_table(run, classifier, c: ImageTrainConfig, log) -> dict:
    """`train images TABLE`: images listed in a table with their labels (any target)."""
    from transferkit.data.image_table import DEFAULT_LABEL_COLUMNS, read_image_table
    from transferkit.errors import InputError
    from transferkit.reports.augmentation import preview_augmentation

    if not Path(c.data).is_file():
        raise InputError(
            f"--target {c.target} needs a table of image paths and labels (a CSV, TSV, JSON Lines "
            f"or Parquet file with columns {c.path_column!r} and "
            f"{c.label_column or DEFAULT_LABEL_COLUMNS[c.target]!r}); {c.data} is not a file, "
            "and class folders hold one label per image."
        )
    table = read_image_table(c.data, c.path_column, c.label_column, c.target)
    classifier.metadata.update(path_column=table.path_column, label_column=table.label_column)
    if table.columns_note:
        log(table.columns_note)
    images, values, names, bad = classifier.usable_targets(table.paths, table.labels)
    skipped = table.skipped + bad
    log(f"Data: {len(images)} images in {Path(c.data).name}, target {c.target} "
        f"({_target_words(c.target, values, names)})"
        + (f"; {len(skipped)} rows skipped (report/data.json)" if skipped else ""))
    for entry in skipped[:5]:
        where = entry.get("line") or entry.get("row") or entry.get("path")
        log(f"  skipped {where}: {entry['reason']}")
    _build(classifier, names, c)
    run.start()
    log(f"Head: {c.backbone} frozen, features cached; up to {_head_epochs(c)} epochs")
    # The labels as parsed above (classes, a 0/1 matrix or numbers, for the names `_build` set):
    # `fit` takes them as they are, without reading them again.
    phases = run.train(classifier, images, values,
                       report=lambda: classifier.split_data("validation"),
                       report_split="validation", fine_tune_options={"unfreeze": c.unfreeze})
    train_items = classifier.split_data("train")[0]
    preview_augmentation(
        train_items[0], Path(run.run.report_dir) / "augmentation.png",
        classifier.augmentations, image_size=classifier.input_size,
        policy=classifier.resize_policy, seed=c.seed,
    )
    size = "x".join(map(str, classifier.input_size))
    skipped += classifier.skipped  # the table's rows left out, then anything `fit` left out
    extra = {"backbone": c.backbone, "image size": size,
             "train / validation images": f"{len(train_items)} / {len(phases['items'])}",
             "features": _features_line(classifier), "skipped rows": len(skipped)}
    result = {"backbone": c.backbone, "image_size": size,
              "feature_seconds": round(classifier.feature_seconds, 1),
              "feature_runtime": classifier.feature_runtime,
              "feature_runtime_reason": classifier.feature_runtime_reason,
              "skipped_files": len(skipped), "train_images": len(train_items),
              "validation_images": len(phases["items"])}
    data = {"table": str(c.data), "path_column": table.path_column,
            "label_column": table.label_column, "target": c.target,
            "images": len(images), "skipped": skipped}
    return run.finish(classifier, phases, title=f"{c.backbone} on {Path(c.data).name}",
                      extra=extra, result=result, data=data)


def _head_epochs(c: ImageTrainConfig) -> int:
    """The head's most epochs: the config's, or the target's default (`IMAGE_HEAD_EPOCHS`)."""
    from transferkit.config import IMAGE_HEAD_EPOCHS

    return IMAGE_HEAD_EPOCHS[c.target] if c.epochs is None else c.epochs


def _target_words(target: str, values, names: list[str]) -> str:
    """"3 labels, 1.50 per image" / "from 1 to 116, mean 33.3" / "2 classes"."""
    import numpy as np

    if target == "multi-label":
        return f"{len(names)} labels, {float(np.mean(values.sum(axis=1))):.2f} per image"
    if target == "regression":
        return (f"{names[0]} from {float(values.min()):g} to {float(values.max()):g}, mean "
                f"{float(values.mean()):.4g}")
    return f"{len(names)} classes"


def _build(classifier, class_names: list[str], c: ImageTrainConfig) -> None:
    """Builds the model for the data's classes, and checks what only the built backbone can
    tell (a layer name to `unfreeze` from), so that a mistake costs no features or training."""
    from transferkit.training.unfreeze import backbone_architecture, check_unfreeze_layers

    classifier.class_names = list(class_names)
    classifier.build()
    if c.fine_tune_epochs > 0 and not classifier.why_frozen():
        check_unfreeze_layers(backbone_architecture(classifier.network), c.unfreeze)


def _log_data(folder, log) -> None:
    """The data line (counts, classes, skipped files) and the warnings about the data."""
    log(
        f"Data: {len(folder.train_paths)} train / {len(folder.validation_paths)} validation "
        f"images, {folder.num_classes} classes ({', '.join(folder.class_names)})"
        + (f"; {len(folder.skipped)} files skipped" if folder.skipped else "")
    )
    for line in _data_warnings(folder):
        log(line)
    if folder.duplicates_across_splits:
        log(
            f"Warning: {len(folder.duplicates_across_splits)} images appear in both train and "
            "validation (identical files); validation accuracy is inflated. See "
            "report/data.json."
        )


def _facts(c: ImageTrainConfig, classifier, folder, train_images: int, phases: dict):
    """The summary's lines, the result's keys and `data.json`, for `TrainingRun.finish`."""
    size = "x".join(map(str, classifier.input_size))
    skipped = classifier.skipped
    duplicates = len(folder.duplicates_across_splits)
    extra = {
        "backbone": c.backbone,
        "image size": size,
        "train / validation images": f"{train_images} / {len(phases['items'])}",
        "features": _features_line(classifier),
        "skipped files": len(skipped),
        "duplicates across splits": duplicates,
    }
    result = {
        "backbone": c.backbone,
        "image_size": size,
        "feature_seconds": round(classifier.feature_seconds, 1),
        "feature_runtime": classifier.feature_runtime,
        "feature_runtime_reason": classifier.feature_runtime_reason,
        "skipped_files": len(skipped),
        "duplicates_across_splits": duplicates,
        "train_images": train_images,
        "validation_images": len(phases["items"]),
    }
    missing = folder.classes_without_validation
    conflicts = folder.conflict_lines()
    if missing:
        measured = [name for name in folder.class_names if name not in missing]
        extra["classes without validation images"] = (
            f"{', '.join(map(repr, missing))}: not measured; the validation accuracy covers "
            f"{len(measured)} of {folder.num_classes} classes ({', '.join(measured)})"
        )
    if conflicts:
        extra["conflicting duplicates"] = (
            f"{len(conflicts)}: " + "; ".join(conflicts[:3])
            + (f" (and {len(conflicts) - 3} more, see data.json)" if len(conflicts) > 3 else "")
        )
    result.update(classes_without_validation=missing, conflicting_duplicates=len(conflicts))
    data = {**folder.summary(), "skipped": skipped, "duplicates": folder.duplicates}
    return extra, result, data


def _no_validation_line(names: list[str], folder) -> str:
    return (f"Warning: class {', '.join(map(repr, names))} has no validation images: its "
            f"accuracy is not measured (the validation accuracy covers "
            f"{folder.num_classes - len(names)} of {folder.num_classes} classes). "
            + ("Add validation images of it." if folder.layout == "split" else
               "Add images: a class needs two or more for one to be held out for validation."))


def _data_warnings(folder) -> list[str]:
    """Warnings about the data as found, before training: classes the validation accuracy will
    not measure, and the same file under two classes (one label is wrong)."""
    lines = []
    if folder.classes_without_validation:
        lines.append(_no_validation_line(folder.classes_without_validation, folder))
    conflicts = folder.conflict_lines()
    for line in conflicts[:5]:
        lines.append(f"Warning: the same image is filed under two classes: {line}")
    if len(conflicts) > 5:
        lines.append(f"Warning: {len(conflicts) - 5} more identical files under different "
                     "classes; see report/data.json")
    return lines


def _features_line(classifier) -> str:
    """"75 s (onnx)", or with Keras why ONNX Runtime did not run ("... (keras: 23 inputs: too
    few to export a graph for)")."""
    line = f"{classifier.feature_seconds:.0f} s"
    if classifier.feature_runtime == "keras" and classifier.feature_runtime_reason:
        return f"{line} (keras: {classifier.feature_runtime_reason})"
    return f"{line} ({classifier.feature_runtime})" if classifier.feature_runtime else line
