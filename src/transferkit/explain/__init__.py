"""Why did the model say that? Heat maps for images (`transferkit.explain.images`: class
activation maps on the backbone's last feature map) and word attributions for text
(`transferkit.explain.text`), behind `Classifier.explain` and `transferkit explain`."""

from __future__ import annotations

import numpy as np

from transferkit.errors import InputError

__all__ = ["explained_output", "logit_weights"]


def explained_output(classifier, row: dict, label) -> tuple[str, int]:
    """What is explained for one input, `(name, column)`: `label` if given (one of the
    classifier's labels), else the prediction (`row`: what `predict` answered): its class, the
    highest-scoring label (multi-label), or the value (regression, column 0)."""
    names = [str(name) for name in classifier.class_names]
    if classifier.target == "regression":
        return names[0], 0
    if label is not None:
        if str(label) not in names:
            raise InputError(
                f"--label {label!r} is not one of the model's labels: {', '.join(names[:20])}."
            )
        name = str(label)
    elif classifier.target == "multi-label":
        name = max(row["scores"], key=row["scores"].get)
    else:
        name = row["label"]
    return name, names.index(name)


def logit_weights(classifier, rows: list[dict], label) -> tuple[list[str], np.ndarray]:
    """The explained output of each row (`predict`'s answers) and the logit weights that pick it:
    a one-hot row, or -1 for class 0 of a one-logit binary head (its one logit is class 1's)."""
    weights = np.zeros((len(rows), classifier.num_logits), dtype=np.float32)
    explained = []
    for i, row in enumerate(rows):
        name, index = explained_output(classifier, row, label)
        if classifier.num_logits == 1 and classifier.target == "single-label":
            weights[i, 0] = 1.0 if index == 1 else -1.0
        else:
            weights[i, index] = 1.0
        explained.append(name)
    return explained, weights
