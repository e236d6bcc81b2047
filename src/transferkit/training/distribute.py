"""Data-parallel training on `keras.distribution` (JAX): every device holds the whole model and
a slice of each batch; gradients are averaged across devices by XLA's all-reduce.

    KERAS_BACKEND=jax transferkit train images DATA --distribute data-parallel
    # several machines (or processes): the same command on each, plus
    #   --coordinator HOST:PORT --num-processes N --process-id I
    # or the variables keras.distribution.initialize reads (KERAS_DISTRIBUTION_JOB_ADDRESSES,
    # KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID)

Keras 3.15 runs `keras.distribution` only on JAX (tf.distribute multi-worker with Keras 3 `fit`
is broken: keras#20585), so this is JAX's SPMD, not a distributed system of ours. What it takes,
found by experiment on two virtual CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count`):

- the train step compiled with XLA (`jit_compile=True`): run op by op, each small op is its own
  cross-device computation and two devices on two cores deadlock in the all-reduce. Keras
  refuses to compile a model with `RandomRotation`/`RandomZoom` (`supports_jit=False`, a limit of
  the TensorFlow backend; on JAX they are jnp ops and compile), so `compile_for` lifts it;
- every batch divisible by the device count (a batch that is not raises `IndivisibleError`):
  training batches drop the remainder (a new one each epoch: the shuffle changes), validation
  sets are cut to a multiple of the device count (at most `devices - 1` examples, logged), and
  predictions pad their last batch (`padded_rows`) and drop the padding;
- one writer: process 0 writes the run folder, the model and MLflow; every other process runs
  the same steps (they are collective) in a scratch folder of its own (`scratch_folder`); to
  resume, each copies the run folder (shared, or on the same machine) and so restarts from
  process 0's checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import weakref

import numpy as np

from transferkit.checks import DISTRIBUTE
from transferkit.errors import InputError

__all__ = ["DISTRIBUTE", "start", "active", "device_count", "process_index", "compile_for",
           "barrier", "check_batch_size", "even", "even_validation", "for_prediction", "padded_rows",
           "predict_rows", "scratch_folder", "validation_batch"]

_ENVIRONMENT = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")


def start(distribute: str, *, task: str = "image", coordinator: str | None = None,
          num_processes: int | None = None, process_id: int | None = None) -> dict | None:
    """Sets Keras's global distribution to `DataParallel` over every device of every process.

    Returns:
        `None` for `"none"`; else `devices`, `processes`, `process` (this one's index).

    Raises:
        InputError: another backend than JAX, or half of the coordinator settings.
        MissingDependencyError: JAX is not installed.
    """
    import keras

    from transferkit.extras import require, require_installed

    if distribute in (None, "none"):
        return None
    if distribute not in DISTRIBUTE:
        raise InputError(f"`distribute` must be one of {DISTRIBUTE}. Received: {distribute!r}.")
    if task == "text":
        raise InputError(
            "Data-parallel training is for images for now: a text classifier's model takes "
            "strings, which only the TensorFlow backend has, and keras.distribution runs only on "
            "JAX. Train text without `distribute`."
        )
    require_installed("jax", "Data-parallel training (`distribute`)")  # before the backend advice
    if keras.backend.backend() != "jax":
        raise InputError(
            "Data-parallel training needs KERAS_BACKEND=jax (keras.distribution runs only on JAX "
            f"in Keras {keras.__version__}; this is {keras.backend.backend()}). Run it as "
            "KERAS_BACKEND=jax transferkit train ... --distribute data-parallel."
        )
    jax = require("jax", "Data-parallel training")
    several = [coordinator, num_processes, process_id]
    if any(value is not None for value in several) or any(os.environ.get(k) for k in _ENVIRONMENT):
        if any(value is None for value in several) and not all(
                os.environ.get(k) for k in _ENVIRONMENT):
            raise InputError(
                "Training in several processes needs all of `coordinator` (HOST:PORT of process "
                "0), `num_processes` and `process_id`, or the KERAS_DISTRIBUTION_* variables."
            )
        if not _initialized(jax):
            keras.distribution.initialize(job_addresses=coordinator, num_processes=num_processes,
                                          process_id=process_id)
    devices = keras.distribution.list_devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return {"devices": len(devices), "processes": jax.process_count(),
            "process": jax.process_index()}


def _initialized(jax) -> bool:
    try:
        return bool(jax.distributed.is_initialized())
    except AttributeError:  # older JAX
        return jax.process_count() > 1


def active() -> bool:
    """Whether a Keras distribution is set (by `start`, or by the caller)."""
    import keras

    return keras.backend.backend() == "jax" and keras.distribution.distribution() is not None


def device_count() -> int:
    """Devices a batch is split over: 1 without a distribution."""
    import keras

    if not active():
        return 1
    return int(np.prod(keras.distribution.distribution().device_mesh.shape))


def process_index() -> int:
    """This process's index among the training processes (0 alone)."""
    if not active():
        return 0
    import jax

    return int(jax.process_index())


def compile_for(model) -> dict:
    """The `compile` arguments a model needs here: XLA-compiled steps under a distribution (see
    the module docstring), whose augmentation layers are allowed to compile on JAX."""
    from transferkit.layers import all_layers

    if not active():
        return {"jit_compile": False}
    for layer in all_layers(model):  # what Keras checks (trainer.model_supports_jit)
        if type(layer).__name__ in ("RandomRotation", "RandomZoom"):
            layer.supports_jit = True
    return {"jit_compile": True}


_TRAINABLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_LOCAL_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def for_prediction(model):
    """Yields the model to predict with here: `model` itself in one process; across processes,
    a copy on this process's devices with `model`'s current weights, used under a distribution
    over those devices only (a global model's outputs are spread over the processes, and every
    process needs all of them: the report, the features)."""
    if not active():  # no distribution: no JAX either (it is an extra, `[scale]`)
        yield model
        return
    import jax
    import keras

    if jax.process_count() == 1:
        yield model
        return
    local = keras.distribution.DataParallel(
        devices=[f"{d.platform}:{d.id}" for d in jax.local_devices()])
    local.auto_shard_dataset = False  # each process predicts its own rows, all of them
    with local.scope():
        copy = _LOCAL_COPIES.get(model)
        if copy is None:
            copy = _LOCAL_COPIES[model] = keras.models.clone_model(model)
        copy.set_weights([np.asarray(v.value.addressable_data(0)) for v in model.weights])
        yield copy


@contextlib.contextmanager
def outside():
    """No distribution inside (then the one before again): for layers that take strings, such
    as tokenizers, whose inputs a distribution would try to place on the devices as numbers."""
    import keras

    if not active():
        yield
        return
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def barrier(name: str) -> None:
    """Waits until every training process gets here (processes leave together: JAX's shutdown
    barrier aborts a process whose peers are still busy)."""
    if not active():
        return
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def fresh_functions(model) -> None:
    """Drops `model`'s compiled predict function if its trainable variables changed since it was
    made (fine-tuning unfroze layers): under a distribution Keras fixes the function's output
    shardings per trainable/non-trainable variable and would refuse the new split."""
    if not active():
        return
    count = len(model.trainable_variables)
    if _TRAINABLE.get(model, count) != count:
        model.predict_function = None
    _TRAINABLE[model] = count


def check_batch_size(batch_size: int) -> None:
    """A global batch must split evenly over the devices."""
    devices = device_count()
    if batch_size % devices:
        raise InputError(
            f"`batch_size` must be a multiple of the {devices} devices of data-parallel training "
            f"(each device takes an equal slice of every batch). Received: batch_size="
            f"{batch_size}; use {max(devices, batch_size - batch_size % devices)} or "
            f"{batch_size + devices - batch_size % devices}."
        )


def even(count: int) -> int:
    """The largest multiple of the device count not above `count`."""
    return count - count % device_count()


def padded_rows(function, inputs):
    """`function(inputs)` for numpy rows (or a dict of them) with the rows padded, by repeating
    the last one, to a multiple of the device count; the padding's outputs are dropped."""
    devices = device_count()
    count = len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)
    missing = -count % devices
    if not missing or not count:
        return function(inputs)

    def pad(array):
        array = np.asarray(array)
        return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])

    padded = ({k: pad(v) for k, v in inputs.items()} if isinstance(inputs, dict)
              else pad(inputs))
    return np.asarray(function(padded))[:count]


def scratch_folder(run_dir) -> str:
    """Where a process other than 0 keeps its copy of the run (checkpoints to resume from)."""
    from transferkit.files import cache_dir

    key = hashlib.sha256(os.fspath(os.path.abspath(run_dir)).encode()).hexdigest()[:16]
    return os.fspath(cache_dir("distributed", key, f"process-{process_index()}"))


_PREDICT_BATCH = 256  # rows a call: head-sized models on feature vectors


def predict_rows(model, rows) -> np.ndarray:
    """`model.predict(rows)` in batches that split evenly over the devices."""
    devices = device_count()
    batch = max(devices, _PREDICT_BATCH - _PREDICT_BATCH % devices)
    with for_prediction(model) as local:
        fresh_functions(local)
        return padded_rows(lambda x: local.predict(x, batch_size=batch, verbose=0), rows)


def validation_batch(count: int, preferred: int) -> int:
    """A validation batch size under a distribution: the largest multiple of the device count,
    at most `preferred`, that divides `count` (itself a multiple of the device count), so that
    every batch is full: Keras splits each batch of a dataset over the processes by its declared
    size (`rebatch`), so a short last batch would leave some processes without data."""
    devices = device_count()
    if not active() or count <= 0:
        return preferred
    return max(size for size in range(devices, max(devices, preferred) + 1, devices)
               if count % size == 0)


def even_validation(items, labels) -> tuple:
    """Validation inputs and labels cut to a multiple of the device count (every validation
    batch must split evenly), and how many were left out; all of them without a distribution."""
    keep = even(len(labels))
    return items[:keep] if keep < len(labels) else items, labels[:keep], len(labels) - keep
