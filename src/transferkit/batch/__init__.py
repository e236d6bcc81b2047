"""Batch prediction and embeddings over many inputs, locally or on Ray Data, into Parquet.

`jobs` (`predict`, `embed`: the entry points), `inputs` (what a job reads), `workers` (the work
on one shard: the same code locally and in a Ray actor), `output` (the resumable Parquet folder),
`on_ray` (the Ray Data execution).
"""
