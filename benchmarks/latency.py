"""Latency of the segmenter in each deployable form, on this machine.

    python benchmarks/latency.py                      # 512x1024 and 1024x2048, 2 threads
    python benchmarks/latency.py --sizes=512x1024 --runs=5

For each input size it builds the full-width default segmenter (DeepLabV3+
MobileNetV2, 19 classes) with random weights (latency does not depend on the
weights; nothing is downloaded), exports it (SavedModel; TFLite float32,
float16 and int8 calibrated on demo_target images) and reports per artifact:

- the median latency of one image over `--runs` runs (after `--warmup`),
  with `--num_threads` threads everywhere (TF intra-op threads, TFLite
  interpreter threads; inter-op parallelism 1),
- the artifact's size on disk (Keras: the `.keras` file),
- the model's FLOPs, counted by the TF profiler on the fixed-shape graph
  (multiply and add counted separately, so 2 per MAC),
- the achieved FLOP/s and its fraction of this machine's float32 matmul
  peak, measured in the same run with numpy and TF on `--num_threads` threads.
  int8 runs integer kernels, so its fraction can exceed what float allows.

Keras and SavedModel take the whole TF runtime; TFLite files are run by
ai-edge-litert with its default XNNPACK delegate. Not part of the test suite:
a full run takes several minutes.
"""
import os
import statistics
import tempfile
import time

import numpy as np
from absl import app, flags

from common import machine

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["512x1024", "1024x2048"], "Input sizes, HxW.")
flags.DEFINE_integer("runs", 10, "Timed runs per artifact and size.")
flags.DEFINE_integer("warmup", 2, "Untimed runs first (graph building, allocation).")
flags.DEFINE_integer("num_threads", 2, "Threads of TF and of the TFLite interpreter.")
flags.DEFINE_integer("num_calibration_images", 8, "demo_target images calibrating int8.")
flags.DEFINE_integer("matmul_size", 2048, "Side of the square matrices of the peak test.")

ARTIFACTS = ("keras", "saved_model", "tflite_float32", "tflite_float16", "tflite_int8")


def median_seconds(run, *, runs, warmup):
    """Median wall time of `run()` over `runs` calls, after `warmup` calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(size, *, runs):
    """{"numpy": FLOP/s, "tensorflow": FLOP/s} of a float32 size x size matmul."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    flops = 2 * size ** 3
    a_tf, b_tf = tf.constant(a), tf.constant(b)
    tf_matmul = tf.function(tf.linalg.matmul)
    return {
        "numpy": flops / median_seconds(lambda: a @ b, runs=runs, warmup=1),
        "tensorflow": flops / median_seconds(lambda: tf_matmul(a_tf, b_tf).numpy(),
                                             runs=runs, warmup=1),
    }


def model_flops(segmenter, height, width):
    """Floating-point operations of one [1, height, width, 3] forward pass."""
    import tensorflow as tf

    forward = tf.function(lambda image: segmenter(image, training=False)["logits"])
    graph = forward.get_concrete_function(
        tf.TensorSpec([1, height, width, 3], tf.float32)).graph
    profiler = tf.compat.v1.profiler
    options = profiler.ProfileOptionBuilder(
        profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    return profiler.profile(graph=graph, options=options).total_float_ops


def disk_bytes(path):
    """Size of a file, or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def _keras_runner(segmenter, pixels):
    import tensorflow as tf

    forward = tf.function(lambda image: segmenter(image, training=False)["logits"])
    image = tf.constant(pixels, tf.float32) / 127.5 - 1.0
    return lambda: forward(image).numpy()


def _saved_model_runner(path, pixels):
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    images = tf.constant(pixels)
    return lambda: serve(images=images)["labels"].numpy()


def _tflite_runner(path, pixels, num_threads):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=num_threads).get_signature_runner()
    return lambda: runner(images=pixels)


def write_artifacts(segmenter, folder, height, width, calibration):
    """{artifact: path} of every form of `segmenter` in `folder`."""
    from export.saved_model import export_saved_model
    from export.tflite import export_tflite

    paths = {"keras": os.path.join(folder, "segmenter.keras"),
             "saved_model": export_saved_model(segmenter, os.path.join(folder, "saved_model"))}
    segmenter.save(paths["keras"])
    for quantization in ("float32", "float16", "int8"):
        paths[f"tflite_{quantization}"] = export_tflite(
            segmenter, os.path.join(folder, f"segmenter_{quantization}.tflite"),
            height=height, width=width, quantization=quantization,
            representative_images=calibration if quantization == "int8" else None)
    return paths


def benchmark_size(segmenter, height, width, peak_flops):
    """Prints one table row per artifact at input size height x width."""
    import data_pipelines
    from export.tflite import calibration_images

    flops = model_flops(segmenter, height, width)
    calibration = calibration_images(
        data_pipelines.open_dataset("demo_target", split="train"),
        count=FLAGS.num_calibration_images, height=height, width=width)
    pixels = calibration[0][np.newaxis]
    with tempfile.TemporaryDirectory() as folder:
        paths = write_artifacts(segmenter, folder, height, width, calibration)
        runners = {"keras": _keras_runner(segmenter, pixels),
                   "saved_model": _saved_model_runner(paths["saved_model"], pixels)}
        for artifact in ARTIFACTS:
            run = runners.get(artifact) or _tflite_runner(paths[artifact], pixels,
                                                          FLAGS.num_threads)
            seconds = median_seconds(run, runs=FLAGS.runs, warmup=FLAGS.warmup)
            print(_format_row({
                "size": f"{height}x{width}", "artifact": artifact, "median_ms": 1000 * seconds,
                "megabytes": disk_bytes(paths[artifact]) / 1e6, "gflops": flops / 1e9,
                "gflop_per_s": flops / seconds / 1e9,
                "fraction_of_peak": flops / seconds / peak_flops}), flush=True)


HEADER = ("| size (HxW) | artifact | median latency (ms) | size (MB) | GFLOPs | GFLOP/s "
          "| of matmul peak |\n|---|---|---|---|---|---|---|")


def _format_row(row):
    return (f"| {row['size']} | {row['artifact']} | {row['median_ms']:.0f} | "
            f"{row['megabytes']:.1f} | {row['gflops']:.1f} | {row['gflop_per_s']:.1f} | "
            f"{100 * row['fraction_of_peak']:.0f}% |")


def _parse_size(text):
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise app.UsageError(f"--sizes takes HxW values like 512x1024, got {text!r}")
    return height, width


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    sizes = [_parse_size(s) for s in FLAGS.sizes]
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from udamobile.segmenter import build_segmenter

    print(machine())
    peak = matmul_peak(FLAGS.matmul_size, runs=FLAGS.runs)
    peak_flops = max(peak.values())
    print(f"float32 matmul peak ({FLAGS.matmul_size}^3, {FLAGS.num_threads} threads): "
          + ", ".join(f"{name} {value / 1e9:.1f} GFLOP/s" for name, value in peak.items()))
    segmenter = build_segmenter()
    print(f"segmenter: DeepLabV3+ MobileNetV2 (width 1.0, OS16, separable), "
          f"{segmenter.count_params():,} parameters, random weights; "
          f"{FLAGS.runs} runs, median; {FLAGS.num_threads} threads")
    print(HEADER, flush=True)
    for height, width in sizes:
        benchmark_size(segmenter, height, width, peak_flops)


if __name__ == "__main__":
    app.run(main)
