"""A batch job on Ray Data: the inputs as a Ray dataset, `map_batches` over an actor pool.

Each actor is a `ShardWorker` holding one model (loaded once, from the `.keras` bytes the driver
put in Ray's object store, so no node needs the driver's disk). Ray Data streams shards of
`shard_size` inputs to the actors; each actor writes its shard's rows as one Parquet piece of the
output folder and returns a one-row count, which the driver only adds up for the progress bar.

Why the actors write the pieces instead of `Dataset.write_parquet`: Ray's writer names its files
anew each run and writes them in place, so a killed job leaves partial files and a rerun cannot
tell what is done; the pieces here are written atomically and carry the `index` of each input,
which is what lets a rerun (local or on Ray) skip finished work. On a cluster the output folder
must be one every node can write (a shared file system), as for `write_parquet` to a path.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from transferkit.extras import require

__all__ = ["run_on_ray"]


def run_on_ray(job: dict, items: list[str], pending: np.ndarray, *, shard_size: int,
               address: str | None, workers: int | None, advance) -> dict:
    """Runs the `pending` inputs of `job` on Ray; `advance(count)` after each shard.

    Args:
        address: a Ray cluster (`"auto"`, `"HOST:PORT"`, `"ray://HOST:10001"`); `None` starts a
            local Ray for the job (and stops it after). A Ray already initialised in this
            process (`ray.init(...)` by the caller) is used as it is.
        workers: actors; default `None`: one per two CPUs of the cluster.

    Returns:
        `done`, `errors`, `runtime`, `workers`.
    """
    ray = require("ray", "Running on Ray (`ray`)")
    from transferkit.batch.workers import ShardWorker

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours counts inputs, not blocks
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = workers or max(1, cpus // 2)
        biggest_node = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]),
                           default=1)
        cpus_per_worker = max(1, min(cpus // workers, biggest_node))
        # In a list: an object-store argument at the top level makes Ray warn that restarted
        # actors could lose it; the driver holds the reference until the job ends.
        model = ([ray.put(Path(job["model_path"]).read_bytes())]
                 if job["source_kind"] == "model" else None)
        rows = [{"index": int(i), "item": items[i]} for i in pending]
        dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / shard_size))
        results = dataset.map_batches(
            ShardWorker, fn_constructor_kwargs={"job": job, "model_bytes": model},
            batch_size=shard_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
        )
        done = errors = 0
        runtimes = set()
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            done += int(np.sum(batch["rows"]))
            errors += int(np.sum(batch["errors"]))
            runtimes.update(str(r) for r in batch["runtime"] if r)
            advance(int(np.sum(batch["rows"])))
    finally:
        if started_here:
            ray.shutdown()
    return {"done": done, "errors": errors, "workers": workers,
            "runtime": ",".join(sorted(runtimes)) or None}
