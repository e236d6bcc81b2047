"""TensorFlow's retracing warning about Keras's trainer steps stays off the screen; others stay."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from transferkit import quiet


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _predict_with_several_models() -> list[str]:
    """What TensorFlow logs when four fresh Keras models each predict two batch shapes (each
    model's predict step traces twice: TensorFlow counts them under one key)."""
    import keras
    from tensorflow.python.eager.polymorphic_function import polymorphic_function

    # The detector warns at most twice per key in a process; start it afresh (a test-only reach
    # into TensorFlow's internals, so that the test sees the warning whatever ran before).
    polymorphic_function._frequent_tracing_detector_manager._detectors.clear()
    records = _Records()
    logger = logging.getLogger("tensorflow")
    logger.addHandler(records)
    try:
        for units in range(1, 5):
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units)])
            model.predict(np.ones((4, 3), np.float32), verbose=0)
            model.predict(np.ones((7, 3), np.float32), verbose=0)
    finally:
        logger.removeHandler(records)
    return [m for m in records.messages if "retracing" in m]


def test_keras_step_retracing_is_filtered(monkeypatch):
    logger = logging.getLogger("tensorflow")
    monkeypatch.setattr(logger, "filters", [f for f in logger.filters
                                            if not isinstance(f, quiet.KerasStepRetracing)])
    unfiltered = _predict_with_several_models()
    assert unfiltered and all("one_step_on_data_distributed" in m for m in unfiltered)
    quiet.install()
    assert _predict_with_several_models() == []


@pytest.mark.parametrize("message, shown", [
    ("5 out of the last 10 calls to <function TensorFlowTrainer.make_predict_function.<locals>"
     ".one_step_on_data_distributed at 0x7f> triggered tf.function retracing. Tracing is", False),
    ("5 out of the last 31 calls to <function TensorFlowTrainer._make_function.<locals>"
     ".multi_step_on_iterator at 0x7f> triggered tf.function retracing. Tracing is", False),
    ("5 out of the last 10 calls to <function my_step at 0x7f> triggered tf.function "
     "retracing. Tracing is", True),
    ("some other TensorFlow warning", True),
])
def test_only_keras_trainer_steps_are_filtered(message, shown):
    record = logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, None, None)
    assert quiet.KerasStepRetracing().filter(record) is shown
