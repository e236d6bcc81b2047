"""What transferkit keeps off a user's screen, and why: one rule per source of noise.

TensorFlow warns "N out of the last M calls to <function TensorFlowTrainer.make_predict_function.
<locals>.one_step_on_data_distributed> triggered tf.function retracing" when five of the last ten
calls of functions that share one Python code object traced a graph. Every Keras model builds its
predict (and train, and test) function from the same code object in `TensorFlowTrainer`, so
TensorFlow counts the first traces of *every* model's steps together: a run that predicts once
with the feature model, the augmentation model, the head and then the whole classifier (each
traced once for its first batch shape and once more, by `reduce_retracing`, for a shorter last
batch) trips it, though no function is rebuilt per call (measured on the demo: four predict
functions, each made once; the head, fine-tuning and evaluation do the same with the train and
test steps). The cause is inside Keras, so the message is filtered by the name of Keras's
trainer only; a retracing warning about any other function still shows.
"""

from __future__ import annotations

import logging

__all__ = ["KerasStepRetracing", "install"]


class KerasStepRetracing(logging.Filter):
    """Drops TensorFlow's frequent-retracing warning about Keras's trainer steps only."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and "<function TensorFlowTrainer." in message)


def install() -> None:
    """Adds the filter to TensorFlow's logger (without importing TensorFlow), once."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, KerasStepRetracing) for f in logger.filters):
        logger.addFilter(KerasStepRetracing())
