"""Training machinery the image and text classifiers share.

* `io`: saving Keras models and weights atomically.
* `run`: `RunFolder`, the folder of one run (config, state, history, checkpoints, report).
* `callbacks`: `fit_phase`, the one call to `model.fit`, with early stopping, TensorBoard,
  `history.csv`, per-epoch checkpoints and resume.
* `feature_cache`: `FeatureCache`, backbone features stored on disk by content key.
* `interrupts`: Ctrl-C that always stops a run.
"""
