"""Where the training steps run: one device, all local devices, or several machines.

    default                the current device (the CPU, or the first GPU)
    mirrored               every local GPU, one replica each (tf.distribute.MirroredStrategy)
    multi_worker_mirrored  several machines, each with its GPUs, described by the
                           TF_CONFIG environment variable (MultiWorkerMirroredStrategy)

`--batch_size` is always the global batch: each of N replicas gets 1/N of
it, the losses are means over the global batch (`losses.global_mean`), and
the optimizers sum the replicas' gradients, so the update is the one a
single device would make with the whole batch. Batch norm layers that train
(stage 1) synchronize their statistics across replicas for the same reason.

Mixed precision (`mixed_float16`) computes in float16 and keeps the weights,
losses and optimizer states in float32; the optimizers scale the losses
dynamically so that small float16 gradients do not underflow. It speeds up
GPUs with tensor cores; on a CPU it is slower.
"""
import contextlib
import functools
import json
import os

import keras
import tensorflow as tf

from udamobile import errors


def _check_tf_config():
    text = os.environ.get("TF_CONFIG")
    if not text:
        return
    try:
        spec = json.loads(text)
        task = spec["task"]
        workers = spec["cluster"][task["type"]]
        if not 0 <= int(task["index"]) < len(workers):
            raise IndexError(f"task index {task['index']} of {len(workers)} {task['type']}s")
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise errors.StrategyError(
            'TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}}; got {text!r} ({e})') from e


@functools.cache
def make_strategy(name):
    """The tf.distribute strategy named by `--strategy`, one per process.

    (A process can set up multi-worker collectives only once, and both
    stages of `--stage=all` run in one process.)
    """
    if name == "multi_worker_mirrored":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    # The config allows these three names only (config.STRATEGIES).
    return {"default": tf.distribute.get_strategy,
            "mirrored": tf.distribute.MirroredStrategy}[name]()


def check_global_batch(batch_size, strategy, name):
    """Raises unless the global batch splits evenly between the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise errors.StrategyError(
            f"--batch_size={batch_size} is the global batch and must split evenly between "
            f"the {replicas} replicas of --strategy={name}")


def _task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return (resolver.task_type, resolver.task_id) if resolver is not None else (None, None)


def is_chief(strategy):
    """True on the one worker that writes the work directory.

    That is the `chief` task of TF_CONFIG, or worker 0 when there is none.
    """
    task_type, task_id = _task(strategy)
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


def replica_slice(global_batch):
    """This replica's part of a tensor holding the global batch, in replica order."""
    context = tf.distribute.get_replica_context()
    count = context.num_replicas_in_sync
    if count == 1:
        return global_batch
    size = tf.shape(global_batch)[0] // count
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * size
    return global_batch[start:start + size]


@contextlib.contextmanager
def dtype_policy(mixed_precision):
    """Builds the layers created inside with mixed_float16 when asked.

    The global Keras policy is restored on exit, so networks built later
    (evaluation, export) are float32 and read the same float32 weights.
    """
    previous = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def optimizer_for(optimizer, mixed_precision):
    """`optimizer`, wrapped for dynamic loss scaling under mixed precision."""
    return keras.optimizers.LossScaleOptimizer(optimizer) if mixed_precision else optimizer
