"""Judging a trained classifier: evaluation and its report, calibration, label errors.

`ClassifierEvaluation` is the part of `transferkit.tasks.base.Classifier` that measures a trained
model rather than trains it; `Classifier` inherits it (as scikit-learn's estimators inherit
`ClassifierMixin.score`). The numbers and pictures come from `transferkit.reports`, which takes
arrays; what changes the model (the temperature in its `ClassLabels` layer) is done here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from transferkit.checks import check_output_folder
from transferkit.errors import DataError
from transferkit.files import write_json

__all__ = ["ClassifierEvaluation"]


class ClassifierEvaluation:
    """`evaluate`, `report`, temperature calibration and `find_label_issues` of a `Classifier`
    (not used on its own: it relies on the classifier's model, data and hooks)."""

    def evaluate(self, x, y=None, *, report_dir=None, batch_size: int | None = None,
                 title: str = "") -> dict:
        """Measures the classifier on labelled data; optionally writes the full report.

        Args:
            x: the data: see the subclass (a folder or table, or images or texts with `y`).
            y: labels of `x`. Default `None` (they come with `x`).
            report_dir: also write `metrics.json`, `summary.txt`, `confusion_matrix.png` and the
                most confident mistakes there. Default `None`.
            batch_size: inputs per forward pass. Default `None`: the config's.
            title: the report's title. Default `""`: "Evaluation of <backbone or encoder>".

        Returns:
            `accuracy`, `n`, `classes`, per-class metrics, averages and the confusion matrix
            (`transferkit.reports.classification_metrics`), plus `skipped` (inputs that could
            not be used, with why; also in `report_dir`/skipped.json) and `num_skipped`.

        Raises:
            DataError: labels that are not among the model's classes, or nothing to evaluate.
        """
        self._require_model()
        check_output_folder(report_dir, "report_dir")  # a file there fails now, not after the work
        items, labels, skipped = self._evaluation_data(x, y)
        batch_size = self._batch_size(batch_size)
        probabilities, unreadable = self.probabilities_and_errors(items, batch_size)
        bad = {entry["index"] for entry in unreadable}
        keep = np.asarray([i not in bad for i in range(len(items))], dtype=bool)
        skipped = [*skipped, *({"path": e["path"], "reason": e["reason"]} for e in unreadable)]
        if not keep.any():
            raise DataError("None of the inputs could be read; nothing to evaluate.")
        kept = [item for item, ok in zip(items, keep) if ok]
        metrics = self.report(
            kept, labels[keep], probabilities[keep], report_dir=report_dir,
            title=title or f"Evaluation of {self._source_name()}",
            extra={"skipped inputs": len(skipped)} if report_dir is not None else None,
        )
        metrics.update(classes=list(self.class_names), skipped=skipped, num_skipped=len(skipped))
        if report_dir is not None and skipped:  # the list that the summary counts
            metrics["files"]["skipped"] = os.fspath(Path(report_dir) / "skipped.json")
            write_json(metrics["files"]["skipped"], skipped)
        return metrics

    def report(self, items, y_true, probabilities, *, report_dir=None, title: str = "",
               extra: dict | None = None, history=()) -> dict:
        """Metrics of predictions, and with `report_dir` the report files and mistakes.

        Args:
            items: the inputs (image paths or arrays, or texts), for the mistakes.
            y_true: their int labels.
            probabilities: `(n, num_classes)`.
            report_dir: where to write the files. Default `None`: metrics only.
            title: the report's title. Default `""`.
            extra: more lines for the summary. Default `None`.
            history: rows of `history.csv`, for `curves.png`. Default `()`.

        Returns:
            The metrics (see `transferkit.reports.classification_metrics`); with `report_dir`
            also `files` (name -> path of each file written).
        """
        from transferkit.reports import classification_metrics, write_classification_report

        names = list(self.class_names)
        if self.target != "single-label":
            return self._target_report(items, y_true, probabilities, report_dir, title, extra,
                                       history)
        if report_dir is None:
            return classification_metrics(y_true, probabilities, names)
        metrics = write_classification_report(
            report_dir, y_true=y_true, probabilities=probabilities, class_names=names,
            history=history, title=title, summary_extra=extra,
        )
        predicted = np.asarray(probabilities).argmax(axis=1)
        path = self._write_mistakes(
            Path(report_dir), items, [names[i] for i in y_true], [names[i] for i in predicted],
            np.asarray(probabilities).max(axis=1),
        )
        metrics["files"]["mistakes"] = str(path)
        return metrics

    def _target_report(self, items, y_true, outputs, report_dir, title, extra, history) -> dict:
        """`report` of a multi-label or regression model (`transferkit.reports.targets`)."""
        from transferkit.reports.targets import (
            multilabel_metrics,
            regression_metrics,
            write_target_report,
        )

        names = list(self.class_names)
        baseline = self.metadata.get("target_standardisation", (None,))[0]
        if report_dir is None:
            if self.target == "regression":
                return regression_metrics(y_true, outputs, baseline)
            return multilabel_metrics(y_true, outputs, names, self.thresholds)
        return write_target_report(
            report_dir, target=self.target, items=items, y_true=y_true, outputs=outputs,
            names=names, thresholds=self.thresholds, images=self.task == "image",
            history=history, title=title, summary_extra=extra, baseline=baseline)

    def headline(self, outputs, labels) -> tuple[str, float]:
        """The one number a training log shows for a phase: `("accuracy", ...)`,
        `("micro_f1", ...)` (multi-label, at the chosen thresholds) or `("mae", ...)`."""
        outputs, labels = np.asarray(outputs), np.asarray(labels)
        if self.target == "regression":
            return "mae", float(np.abs(outputs.reshape(-1) - labels.reshape(-1)).mean())
        if self.target == "multi-label":
            from transferkit.reports.targets import multilabel_metrics

            return "micro_f1", multilabel_metrics(labels, outputs, self.class_names,
                                                  self.thresholds)["micro_f1"]
        return "accuracy", float((outputs.argmax(axis=1) == labels).mean())

    def _calibrate(self) -> None:
        """Temperature scaling on the validation split when `calibrate` is on: fits T on the
        validation split's probabilities (`transferkit.reports.calibration.fit_temperature`) and
        puts it in the model's `ClassLabels` layer, so every score after this is calibrated.
        `metadata["calibration"]` gets the numbers (or `"calibration_skipped"` why not)."""
        from transferkit.reports.calibration import (
            calibration_summary,
            fit_temperature,
            why_not_fitted,
            with_temperature,
        )

        layer = self._labels_layer()
        layer.temperature = 1.0
        self.metadata.pop("calibration", None)
        self.metadata.pop("calibration_skipped", None)
        if self.target != "single-label":
            self._fit_thresholds()
            return
        if not getattr(self, "calibrate", True):
            return
        items, labels = self.split_data("validation")
        skipped = why_not_fitted(labels)  # before predicting, where the labels tell
        if skipped is None:
            raw = self.predict_proba_cached(items)
            skipped = why_not_fitted(labels, raw)
        if skipped:
            self.metadata["calibration_skipped"] = skipped
            return
        temperature = fit_temperature(labels, raw)
        layer.temperature = temperature
        summary = calibration_summary(labels, with_temperature(raw, temperature), temperature)
        self.metadata["calibration"] = {"temperature": float(temperature),
                                        "fitted_on": "validation", **summary}

    def _fit_thresholds(self) -> None:
        """Multi-label: a threshold per label on the validation split
        (`transferkit.tasks.targets.choose_thresholds`), into `metadata["thresholds"]`, which
        the saved model carries. No temperature: see `metadata["calibration_skipped"]`."""
        from transferkit.tasks.targets import choose_thresholds

        if self.target == "regression":
            self.metadata["calibration_skipped"] = (
                "a regression model outputs a value, not a probability")
            return
        self.metadata["calibration_skipped"] = (
            "not fitted per label: a temperature (or Platt scaling) per label is a monotone map "
            "of that label's score, so the label sets at thresholds chosen on the same "
            "validation split would not change; the scores are the sigmoid's")
        self.metadata.pop("thresholds", None)
        items, labels = self.split_data("validation")
        thresholds, how = choose_thresholds(labels, self.predict_proba_cached(items),
                                            self.class_names)
        self.metadata["thresholds"] = thresholds
        self.metadata["threshold_rule"] = how

    def find_label_issues(self, folds: int | None = None) -> dict:
        """Likely mislabelled examples of the last `fit`'s training split, by confident learning
        on out-of-fold heads over the cached features (`transferkit.reports.label_issues`).

        Returns:
            `{"checked", "why", "folds", "examples", "issues", "items"}`.
        """
        from transferkit.reports.label_issues import (
            FOLDS,
            find_label_issues,
            out_of_fold_probabilities,
        )

        items, labels = self.split_data("train")
        result = {"checked": False, "why": "", "folds": 0, "examples": len(items), "issues": [],
                  "items": items}
        features = self._training_features(items)
        if features is None:
            result["why"] = ("this kind of model has no cached frozen features (GloVe + BiLSTM "
                             "learns its own); use a sentence encoder (--encoder minilm)")
            return result
        if self.target != "single-label":
            from transferkit.reports.label_issues import (
                multilabel_label_issues,
                regression_label_issues,
            )

            check = (multilabel_label_issues if self.target == "multi-label"
                     else regression_label_issues)
            issues, used, why = check(features, labels, folds=FOLDS if folds is None else folds,
                                      seed=int(self.seed))
            result.update(checked=issues is not None, folds=used, why=why, issues=issues or [])
            return result
        probabilities, used, why = out_of_fold_probabilities(
            features, labels, len(self.class_names), folds=FOLDS if folds is None else folds,
            seed=int(self.seed), class_names=self.class_names)
        if probabilities is None:
            result["why"] = why
            return result
        result.update(checked=True, folds=used, issues=find_label_issues(labels, probabilities))
        return result

    def _training_features(self, items: list) -> np.ndarray | None:
        """The frozen features of `items` (cached), or None when the kind has none."""
        return None
