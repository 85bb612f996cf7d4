"""The bound of this CPU on a TFLite graph: the least time its work can take here.

    rates = {p: mac_rate(p, runs, threads) for p in ("int8", "float32")}
    gmac, bound = graph_bound(model_bytes, rates, memory_bandwidth())

A graph's MACs run at most at the rate XNNPACK reaches on one large 1x1
convolution of its precision on this machine, and its activations move at
most at the bandwidth numpy's copy reaches: the graph cannot run faster than
the larger of the two times. Measured ms over bound ms says how far a graph
is from what this machine allows.
"""
import contextlib
import io
import time

import numpy as np

import tflite_graphs


def fastest_ms(model_bytes, runs, num_threads):
    """The fastest of `runs` runs of the graph, after one untimed run, in ms."""
    run = tflite_graphs.timed_runner(model_bytes, num_threads)
    return 1000 * min(tflite_graphs.interleaved_seconds({"graph": run}, runs=runs,
                                                        warmup=1)["graph"])


def _conv_probe(quantization):
    """A large 1x1 convolution (128x256x512 -> 512: 8.6 GMAC), as TFLite bytes."""
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((128, 256, 512), batch_size=1),
                              keras.layers.Conv2D(512, 1)])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "int8":
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.uniform(-1, 1, (1, 128, 256, 512)).astype(np.float32)] for _ in range(2))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert(), 128 * 256 * 512 * 512


def mac_rate(quantization, runs, num_threads):
    """MACs per second XNNPACK reaches on a large 1x1 convolution here."""
    probe, macs = _conv_probe(quantization)
    return macs / (fastest_ms(probe, runs, num_threads) / 1000)


def memory_bandwidth():
    """Bytes per second (read + write) of numpy copying 256 MB."""
    source = np.ones(256 * 2 ** 20, np.uint8)
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / best


def precision(model_bytes):
    """int8 if any op of the graph outputs int8, else float32."""
    return "int8" if any(dtype == "int8" for _, _, dtype in tflite_graphs.operators(
        model_bytes)) else "float32"


def graph_bound(model_bytes, rates, bandwidth, macs=None, traffic=None):
    """(GMAC of the graph, its bound in ms) at `rates` ({precision: MAC/s}) and
    `bandwidth` (bytes/s); `macs` and `traffic` per op if already counted."""
    macs = tflite_graphs.multiply_accumulates(model_bytes) if macs is None else macs
    traffic = tflite_graphs.activation_bytes(model_bytes) if traffic is None else traffic
    rate = rates[precision(model_bytes)]
    return sum(macs) / 1e9, max(sum(macs) / rate, sum(traffic) / bandwidth) * 1000
