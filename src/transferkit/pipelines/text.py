"""`train_text`: the whole `transferkit train text` run, on the shared run skeleton."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from transferkit.config import TextTrainConfig
from transferkit.pipelines.run import TrainingRun

__all__ = ["train_text"]


def train_text(
    data: str | os.PathLike | None = None,
    *,
    output: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    config: TextTrainConfig | None = None,
    log: Callable[[str], None] = print,
    verbose: Any = "auto",
    track: str | os.PathLike | bool | None = None,
    experiment: str | None = None,
    register: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    processes: dict | None = None,
    **options: Any,
) -> dict:
    """Reads a table, splits it, trains, evaluates, reports and saves: `transferkit train text`.

    The table is split per class (seeded) into train, validation (early stopping) and test (the
    report) before the run folder is made, so bad data leaves nothing behind.

    Args:
        data: a CSV, TSV, JSON Lines or Parquet table of texts and labels; default the config's
            `data`, or the run's when resuming.
        output: the run folder. Default `None`: `runs/text-<date>-<time>`.
        resume: a run folder to continue: its saved settings are used (`options` of a phase
            it has not begun change them) and training goes on from the last finished epoch.
            Default `None`.
        config: settings to start from. Default `None`: `TextTrainConfig()`.
        log: called with each progress line. Default `print`.
        verbose: Keras progress output. Default `"auto"`.
        track, experiment, register: log the run to MLflow (`True` or a tracking URI), in
            which experiment, and register its model under a name; see `TrainingRun`.
        processes: data-parallel training over several processes (`coordinator`,
            `num_processes`, `process_id`); see `TrainingRun`.
        cache_dir: where a sentence encoder's features are cached. Default `None`: the
            transferkit cache.
        **options: settings of `TextTrainConfig` (`encoder`, `epochs`, `fine_tune_epochs`...)
            that override `config`.

    Returns:
        The result (see `TrainingRun.finish`): `test_accuracy`, `head_test_accuracy`,
        `fine_tune_test_accuracy` (None without fine-tuning), `validation_accuracy`, paths,
        times, and `encoder`, `max_length`, `features`, `splits`, `dropped_rows`, `dropped`,
        `vocabulary_coverage` and `token_coverage` (word vectors), and
        `embedding_sentences_per_second` (sentence encoders).
    """
    with TrainingRun(TextTrainConfig, data, output=output, resume=resume, config=config,
                     options=options, log=log, verbose=verbose, track=track,
                     experiment=experiment, register=register, processes=processes) as run:
        c = run.config
        _classifier(c, cache_dir).check_settings()  # a typo fails at once, before the data
        table, names, parts = _read_and_split(c, log, _classifier(c, cache_dir))
        classifier = _classifier(c, cache_dir, class_names=names)  # the table's classes, all splits
        run.start()
        classifier.metadata.update(text_column=table.text_column, label_column=table.label_column,
                                   conflicting_duplicates=len(table.conflicting_groups()))
        _log_strategy(c, classifier, parts["train"], log)
        log(f"Head: {c.encoder} frozen; training the head")
        # No test split (`test_size=0`, a few-shot user's choice): the report reads validation.
        report_split = "test" if "test" in parts else "validation"
        phases = run.train(classifier, *parts["train"], parts["validation"],
                           report=lambda: parts[report_split], report_split=report_split)
        val_texts, val_labels = parts["validation"]
        validation = classifier.predict_proba_cached(val_texts)
        metric, score = classifier.headline(validation, val_labels)
        extra, result, facts = _facts(c, table, names, parts, classifier.get_encoder().describe())
        if report_split != "test":
            result[f"test_{metric}"] = None  # the key scripts read, there with no test split
        return run.finish(
            classifier, phases, title=f"Text classifier ({c.encoder}): {report_split} split",
            extra={**extra, f"validation {metric.replace('_', ' ')}": round(score, 4)},
            result={f"validation_{metric}": score, **result}, data=facts,
        )


def _classifier(c: TextTrainConfig, cache_dir, class_names=None):
    from transferkit.tasks.text_classifier import TextClassifier

    return TextClassifier(
        c.encoder, class_names=class_names, word_vectors=c.word_vectors,
        vocabulary_size=c.vocabulary_size, max_length=c.max_length, features=c.features,
        head_units=c.head_units, dropout=c.dropout, seed=c.seed, cache_dir=cache_dir,
        runtime=c.runtime, calibrate=c.calibrate, class_weight=c.class_weight, target=c.target,
        strategy=c.strategy, contrastive_epochs=c.contrastive_epochs,
        contrastive_pairs=c.contrastive_pairs, contrastive_learning_rate=c.contrastive_learning_rate,
    )


def _log_strategy(c: TextTrainConfig, classifier, train: tuple, log) -> None:
    """What contrastive tuning will do; for a head-only run with few texts a class, the hint."""
    if c.strategy == "contrastive":
        pairs = classifier.contrastive_pair_count(len(train[0]))
        log(f"Contrastive: tuning {c.encoder} on {pairs:,} pairs of training texts (same label "
            f"or not) x {c.contrastive_epochs} epoch(s), learning rate "
            f"{c.contrastive_learning_rate:g}")
        return
    hint = few_shot_hint(classifier, train[1])
    if hint:
        log(hint)


#: Below this many training texts in a class, a head-only run on a sentence encoder suggests
#: contrastive tuning (README, "A few examples a class").
FEW_SHOT_TEXTS = 20


def few_shot_hint(classifier, targets) -> str:
    """A line suggesting `--strategy contrastive` when a single-label class has fewer than
    `FEW_SHOT_TEXTS` training texts and the encoder can be tuned on pairs; `""` otherwise."""
    from transferkit.backbones.text_encoders import text_encoder_class

    if classifier.target != "single-label" or not text_encoder_class(classifier.encoder).contrastive:
        return ""
    fewest = int(np.bincount(np.asarray(targets, dtype=int)).min()) if len(targets) else 0
    if fewest >= FEW_SHOT_TEXTS:
        return ""
    return (f"Few examples: {fewest} training texts in the smallest class. --strategy contrastive "
            "(SetFit's recipe) tunes the encoder on pairs of them first: with mpnet at 8 a "
            "class, 0.70 -> 0.80 test accuracy on rt-polarity (README, 5 seeds).")


def _read_and_split(c: TextTrainConfig, log, classifier=None) -> tuple:
    """The table, its classes (labels; the target's name), and `{"train", "test",
    "validation"}: (texts, targets)` (int classes, a 0/1 matrix, or numbers); `classifier`
    (default: one of `c`'s settings) reads the targets."""
    classifier = classifier if classifier is not None else _classifier(c, None)
    if c.target is None:  # a config not from a run (which reads it from the data): the default
        c = c.replace(target=classifier.target)
    from transferkit.data.image_table import DEFAULT_LABEL_COLUMNS
    from transferkit.data.labels import stratified_split
    from transferkit.data.text import read_text_table
    from transferkit.errors import DataError

    label_column = c.label_column
    if label_column is None and c.target == "regression":
        label_column = DEFAULT_LABEL_COLUMNS[c.target]
    table = read_text_table(c.data, c.text_column, label_column,
                            label_sets=c.target == "multi-label")
    classifier.metadata["label_column"] = table.label_column
    if table.indicators is not None:
        log(table.indicators.describe())
    y, names, _, bad = classifier.encode_targets(table.labels)  # once: the rows kept are `y`'s
    _drop_bad_targets(table, bad, classifier.target)
    for line in (table.describe_drops(),
                 table.describe_renamed_labels() if c.target == "single-label" else ""):
        if line:
            log(line)
    single = c.target == "single-label"
    try:
        index = stratified_split(
            table.labels if single else classifier.split_keys(y),
            {**({"test": c.test_size} if c.test_size else {}), "validation": c.validation_size},
            c.seed,
            min_per_split=single,
        )
    except DataError as exc:
        raise DataError(f"{table.path}, column {table.label_column!r}: {exc}") from None
    texts = np.asarray(table.texts, dtype=object)
    parts = {name: (texts[i].tolist(), y[i]) for name, i in index.items()}
    splits = np.empty(len(texts), dtype=object)
    for name, i in index.items():
        splits[i] = name
    table.splits = splits.tolist()
    conflicts = table.describe_conflicts()
    if conflicts:
        log(conflicts)
    what = {"single-label": f"{len(names)} classes", "multi-label": f"{len(names)} labels",
            "regression": f"target {names[0]!r}"}[c.target]
    log(f"{len(table)} texts, {what}; "
        + ", ".join(f"{name} {len(i)}" for name, i in index.items()))
    return table, names, parts


def _drop_bad_targets(table, bad: dict, target: str) -> None:
    """Rows whose labels this target cannot use (`bad`, from `encode_targets`: an empty label
    set, a target that is not a finite number) leave the table, recorded in `table.dropped` like
    its other unusable rows."""
    if not bad:
        return
    if len(bad) == len(table.texts):
        from transferkit.errors import DataError

        raise DataError(f"{table.path}: no usable labels: {next(iter(bad.values()))}.")
    reason = "empty_label_set" if target == "multi-label" else "not_a_number"
    keep = [i for i in range(len(table.texts)) if i not in bad]
    table.dropped[reason] = [table.row_numbers[i] for i in sorted(bad)]
    table.texts = [table.texts[i] for i in keep]
    table.labels = [table.labels[i] for i in keep]
    table.row_numbers = [table.row_numbers[i] for i in keep]


def _facts(c: TextTrainConfig, table, names, parts, encoder: dict) -> tuple[dict, dict, dict]:
    """The summary's lines, the result's keys and `data.json`, for `TrainingRun.finish`."""
    from transferkit.files import sha256_file

    y = np.concatenate([labels for _, labels in parts.values()])
    measured = _encoder_facts(encoder)
    drops = {"dropped": table.describe_drops().replace("\n", "; ")} if table.num_dropped else {}
    duplicates = _duplicate_facts(table)
    extra = {
        "encoder": c.encoder,
        "strategy": c.strategy,
        "max_length": encoder.get("sequence_length"),
        "features": encoder.get("features"),
        "data": c.data,
        "train / validation / test": " / ".join(
            str(len(parts[name][1])) if name in parts else "0"
            for name in ("train", "validation", "test")
        ),
        "dropped rows": table.num_dropped,
        **drops,
        **({"labels read as numbers": table.renamed_label_spellings()}
           if table.renamed_labels and c.target == "single-label" else {}),
        "duplicate texts": duplicates["line"],
        **measured["summary"],
    }
    result = {
        "encoder": c.encoder,
        "strategy": c.strategy,
        "max_length": encoder.get("sequence_length"),
        "features": encoder.get("features"),
        "splits": {name: len(labels) for name, (_, labels) in parts.items()},
        "dropped_rows": table.num_dropped,
        **({"dropped": table.drop_summary()} if table.num_dropped else {}),
        "renamed_labels": dict(table.renamed_labels),
        **duplicates["counts"],
        **measured["result"],
    }
    data = {
        "path": table.path,
        "text_column": table.text_column,
        "label_column": table.label_column,
        "rows_used": len(table),
        "dropped_rows": table.num_dropped,
        "dropped": table.drop_summary(),
        **_target_counts(c.target, names, y, parts),
        "content_sha256": sha256_file(table.path),
        "encoding": table.encoding,
        "renamed_labels": dict(table.renamed_labels),
        **duplicates["counts"],
        "duplicates": duplicates["groups"],
        **({"coverage": encoder["coverage"]} if "coverage" in encoder else {}),
    }
    return extra, result, data


def _target_counts(target: str, names: list[str], y, parts: dict) -> dict:
    """`classes` and `class_counts` per split (examples per class, or per label), or for
    regression the target's `range` and `mean` per split."""
    def counts(values):
        if target == "multi-label":
            return {name: int(values[:, i].sum()) for i, name in enumerate(names)}
        return {name: int((values == i).sum()) for i, name in enumerate(names)}

    if target == "regression":
        return {"target": names[0], "range": {
            split: [float(v.min()), float(v.max()), float(v.mean())]
            for split, (_, v) in parts.items()}}
    return {"classes": counts(y),
            "class_counts": {split: counts(values) for split, (_, values) in parts.items()}}


def _duplicate_facts(table) -> dict:
    """Texts that appear more than once (stripped, case-folded): the groups, their counts (as
    for images: `duplicate_groups`, `duplicates_across_splits`, `conflicting_duplicates`) and
    the summary's line."""
    groups = table.duplicate_groups()
    conflicts = table.conflicting_groups(groups)
    counts = {
        "duplicate_groups": len(groups),
        "duplicates_across_splits": sum(1 for g in groups if len(set(g["splits"])) > 1),
        "conflicting_duplicates": len(conflicts),
    }
    n = len(groups)
    line = (f"{n} text{'s' if n > 1 else ''} appear{'' if n > 1 else 's'} more than once: "
            f"{counts['duplicates_across_splits']} across splits, "
            f"{counts['conflicting_duplicates']} with different labels" if groups else "none")
    if counts["conflicting_duplicates"]:
        line += f" ({table.describe_conflict_rows(conflicts=conflicts)})"
    return {"groups": groups, "counts": counts, "line": line}


def _encoder_facts(encoder: dict) -> dict:
    """What the encoder measured, for the summary and the result."""
    summary: dict[str, Any] = {}
    result: dict[str, Any] = {}
    coverage = encoder.get("coverage")
    if coverage:
        summary["word vectors"] = encoder.get("word_vectors")
        summary["vocabulary coverage"] = round(coverage["vocabulary_coverage"], 4)
        summary["token coverage"] = round(coverage["token_coverage"], 4)
        result["vocabulary_coverage"] = coverage["vocabulary_coverage"]
        result["token_coverage"] = coverage["token_coverage"]
    tuned = encoder.get("contrastive")
    if tuned:
        summary["contrastive tuning"] = (f"{tuned['pairs']} pairs x {tuned['epochs']} epoch(s), "
                                         f"{tuned['seconds']} s")
        result["contrastive"] = tuned
    speed = (encoder.get("embedding") or {}).get("sentences_per_second")
    if speed:
        summary["embedding speed (sentences/s)"] = speed
        result["embedding_sentences_per_second"] = speed
    return {"summary": summary, "result": result}
