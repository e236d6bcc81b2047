"""Hyperparameter search for the head on cached features (`transferkit tune`, `transferkit.tune`):
Optuna's TPE sampler and median pruner over the settings `train` takes, trials scored on a split
the final report never reads (`features`), one trial per head (`trials`), the study kept in
Optuna's storage so that it resumes and several processes share it (`study`), results as files
(`results`) and, with `track`, MLflow runs (`tracking`)."""
