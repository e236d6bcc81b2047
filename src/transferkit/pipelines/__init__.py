"""The whole runs behind `transferkit train images` and `transferkit train text`.

`run.TrainingRun` is the skeleton both follow (settings, run folder, resume, the two phases, the
report, the JSON result); `images.train_images` and `text.train_text` are short functions over it.
"""
