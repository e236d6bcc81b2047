"""Runs that are remembered: MLflow tracking and the model registry (`transferkit[tracking]`).

`store` says where (tracking URIs, experiments, `models:/` URIs as local files), `tracker` logs
one training run from a background thread (`train --track`), and `registry` lists runs, uploads
run folders, and registers, lists and promotes models (`transferkit runs`, `transferkit models`).
Nothing here imports MLflow until it is used.
"""
