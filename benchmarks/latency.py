"""Latency of the segmenter in each deployable form, beside the TF Model Garden's, on this machine.

    python benchmarks/latency.py --peer_dir=../shared/peer   # 512x1024, 2 threads, 31 runs
    python benchmarks/latency.py --sizes=512x1024,1024x2048 --runs=11

For each input size it builds the full-width default segmenter (DeepLabV3+
MobileNetV2, 19 classes) with random weights (latency does not depend on the
weights; nothing is downloaded) and exports it: SavedModel, and TFLite
float32, float16 and int8 (calibrated on demo_target images) returning
labels, the export's default, plus int8 returning labels taken at stride 4
(`--tflite_output=stride4_labels`) and float32 and int8 returning probabilities.

Beside them, each student of `--students` (the distill stage's rows,
udamobile/nets/students.py; all by default), built and exported the same way,
as float32 and int8 files returning labels and an int8 file returning labels
taken at stride 4.

With `--peer_dir`, the folder's `peer_fp32.tflite` and `peer_int8.tflite`
(the TF Model Garden's DeepLabV3+ MobileNetV2 at 512x1024, see its README)
are timed in the same run, at their own input size, and every TFLite file of
ours at that size is given as a ratio to the peer file of its precision.

Every TFLite graph's row also gives its GMAC and its median over its bound on
this machine (bounds.py: its MACs at XNNPACK's rate on a large 1x1
convolution, its activations at numpy's copy bandwidth, whichever is slower).

All artifacts are timed interleaved: each of `--runs` rounds runs every one
once, so a slow phase of the machine is shared, not charged to one of them.
Each row gives the median and the fastest run, the size on disk, and what the
graph holds (input and output, softmax, argmax, resizes). TFLite files run in
ai-edge-litert with its default XNNPACK delegate, `--num_threads` threads,
as a board's application would; Keras and SavedModel use the TF runtime with
as many intra-op threads. Run it on a quiet machine: anything else running
makes the figures meaningless. Not part of the test suite.
"""
import os
import statistics
import tempfile

import numpy as np
from absl import app, flags

from data_pipelines import cli
from udamobile.nets.students import STUDENTS

import bounds
import tflite_graphs
from common import machine

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["512x1024"], "Input sizes, HxW.")
flags.DEFINE_integer("runs", 31, "Timed rounds; each runs every artifact once.")
flags.DEFINE_integer("warmup", 2, "Untimed runs of each artifact first.")
flags.DEFINE_integer("num_threads", 2, "Threads of TF and of the TFLite interpreter.")
flags.DEFINE_integer("num_calibration_images", 8, "demo_target images calibrating int8.")
flags.DEFINE_string("peer_dir", None, "Folder holding peer_fp32.tflite and peer_int8.tflite, "
                    "timed beside ours.")
flags.DEFINE_list("students", None, "Students timed beside ours (rows of "
                  "udamobile/nets/students.py); default all, 'none' for none.")
flags.DEFINE_boolean("xnnpack_latest_features", False, "Also time every int8 file with "
                     "LiteRT's latest XNNPACK features on (rows ending in '+latest').")

# (quantization, output) of each TFLite file of ours, the export's default first.
OUR_TFLITE = (("float32", "labels"), ("float16", "labels"), ("int8", "labels"),
              ("int8", "stride4_labels"), ("float32", "probabilities"), ("int8", "probabilities"))
STUDENT_TFLITE = (("float32", "labels"), ("int8", "labels"), ("int8", "stride4_labels"))


def tflite_input_size(path):
    from ai_edge_litert.interpreter import Interpreter

    try:
        shape = Interpreter(model_path=path).get_input_details()[0]["shape"]
    except (ValueError, RuntimeError) as e:
        raise app.UsageError(f"{path} is not a TFLite file LiteRT can load: {e}")
    return int(shape[1]), int(shape[2])


def artifact_name(quantization, output):
    return f"tflite_{quantization}" + ("" if output == "labels" else f"_{output}")


def _tflite_files(segmenter, folder, kinds, height, width, calibration, prefix=""):
    """{name: path} of `segmenter` exported as each (quantization, output) of `kinds`."""
    from export.tflite import export_tflite

    paths = {}
    for quantization, output in kinds:
        name = prefix + artifact_name(quantization, output)
        paths[name] = export_tflite(
            segmenter, os.path.join(folder, f"{name}.tflite"), height=height, width=width,
            quantization=quantization, output=output,
            representative_images=calibration if quantization == "int8" else None)
    return paths


def write_artifacts(segmenter, students, folder, height, width, calibration):
    """{artifact: path} of every form of `segmenter` and the students' files in `folder`."""
    from export.saved_model import export_saved_model

    paths = {"saved_model": export_saved_model(segmenter, os.path.join(folder, "saved_model"))}
    paths.update(_tflite_files(segmenter, folder, OUR_TFLITE, height, width, calibration))
    for name, student in students.items():
        paths.update(_tflite_files(student, folder, STUDENT_TFLITE, height, width, calibration,
                                   prefix=f"{name}:"))
    return paths


def _keras_runner(segmenter, pixels):
    import tensorflow as tf

    forward = tf.function(lambda image: tf.argmax(
        segmenter(image, training=False)["logits"], axis=-1))
    image = tf.constant(pixels, tf.float32) / 127.5 - 1.0
    return lambda: forward(image).numpy()


def _saved_model_runner(path, pixels):
    import tensorflow as tf

    serve = tf.saved_model.load(path).signatures["serving_default"]
    images = tf.constant(pixels)
    return lambda: serve(images=images)["labels"].numpy()


def _graph_text(name, paths):
    if name == "keras":
        return "float32 [1,H,W,3] in [-1, 1] -> argmax of the upsampled logits (tf.function)"
    if name == "saved_model":
        return "uint8 [B,H,W,3] -> int32 labels and float32 probabilities"
    return tflite_graphs.describe(paths[name])


def print_size(segmenter, students, height, width, peers, limits):
    """Times every artifact at height x width (and the peer's files if they take it);
    `limits`: the MAC rates and bandwidth of bounds.graph_bound."""
    import data_pipelines
    from export.report import disk_megabytes
    from export.tflite import calibration_images

    calibration = calibration_images(
        data_pipelines.open_dataset("demo_target", split="train"),
        count=FLAGS.num_calibration_images, height=height, width=width)
    pixels = calibration[0][np.newaxis]
    with tempfile.TemporaryDirectory() as folder:
        paths = write_artifacts(segmenter, students, folder, height, width, calibration)
        if peers and tflite_input_size(next(iter(peers.values()))) == (height, width):
            paths.update(peers)
        runners = {"keras": _keras_runner(segmenter, pixels),
                   "saved_model": _saved_model_runner(paths["saved_model"], pixels)}
        graph_bounds = {}
        for name, path in list(paths.items()):
            if name != "saved_model":
                with open(path, "rb") as f:
                    model_bytes = f.read()
                runners[name] = tflite_graphs.timed_runner(model_bytes, FLAGS.num_threads)
                graph_bounds[name] = bounds.graph_bound(model_bytes, *limits)
                if FLAGS.xnnpack_latest_features and "int8" in name:
                    paths[f"{name}+latest"] = path
                    runners[f"{name}+latest"] = tflite_graphs.timed_runner(
                        model_bytes, FLAGS.num_threads, latest_features=True)
        times = tflite_graphs.interleaved_seconds(runners, runs=FLAGS.runs, warmup=FLAGS.warmup)
        medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
        fastest = {name: 1000 * min(t) for name, t in times.items()}
        print(f"\n{height}x{width}, {FLAGS.runs} interleaved rounds, {FLAGS.num_threads} threads\n"
              "| artifact | median ms | min ms | size MB | GMAC | median / bound | graph |\n"
              "|---|---|---|---|---|---|---|")
        for name in runners:
            size = "-" if name == "keras" else f"{disk_megabytes(paths[name]):.1f}"
            gmac, bound = graph_bounds.get(name.removesuffix("+latest"), (None, None))
            work = "- | -" if gmac is None else f"{gmac:.2f} | {medians[name] / bound:.1f}x"
            print(f"| {name} | {medians[name]:.1f} | {fastest[name]:.1f} | {size} | {work} | "
                  f"{_graph_text(name, paths)} |")
        if "peer_int8" in runners:
            print_ratios(medians, fastest, students)
            if FLAGS.xnnpack_latest_features:
                print(f"| tflite_int8+latest / peer_int8+latest | "
                      f"{medians['tflite_int8+latest'] / medians['peer_int8+latest']:.2f}x | "
                      f"{fastest['tflite_int8+latest'] / fastest['peer_int8+latest']:.2f}x |")


def print_ratios(medians, fastest, students):
    """Each TFLite file of ours and of the students over the peer file of its precision
    (float16 runs in float32)."""
    print("\n| ours / peer | median | min |\n|---|---|---|")
    kinds = [("", kind) for kind in OUR_TFLITE] + [
        (f"{name}:", kind) for name in students for kind in STUDENT_TFLITE]
    for prefix, (quantization, output) in kinds:
        ours = prefix + artifact_name(quantization, output)
        peer = "peer_int8" if quantization == "int8" else "peer_float32"
        print(f"| {ours} / {peer} | {medians[ours] / medians[peer]:.2f}x | "
              f"{fastest[ours] / fastest[peer]:.2f}x |")


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
    peers = tflite_graphs.peer_paths(FLAGS.peer_dir) if FLAGS.peer_dir else {}
    if peers and tflite_input_size(peers["peer_int8"]) not in sizes:
        height, width = tflite_input_size(peers["peer_int8"])
        raise app.UsageError(f"the peer's files take {height}x{width}: add it to --sizes")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.num_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from udamobile.nets.segmenter import build_segmenter

    print(machine())
    segmenter = build_segmenter()
    print(f"ours: DeepLabV3+ MobileNetV2 (width 1.0, OS16, separable ASPP and decoder), "
          f"{segmenter.count_params():,} parameters, random weights")
    students = build_students(FLAGS.students)
    for name, student in students.items():
        print(f"student {name}: {STUDENTS[name]}, {student.count_params():,} parameters, "
              "random weights")
    limits = ({p: bounds.mac_rate(p, 5, FLAGS.num_threads) for p in ("int8", "float32")},
              bounds.memory_bandwidth())
    print(f"bound: {limits[0]['int8'] / 1e9:.0f} GMAC/s int8, {limits[0]['float32'] / 1e9:.0f} "
          f"GMAC/s float32 (a large 1x1 conv), {limits[1] / 1e9:.1f} GB/s (numpy's copy)")
    if peers:
        print("peer: TF Model Garden mnv2_deeplabv3plus_cityscapes (plain 3x3 ASPP, separable "
              f"decoder), random weights, {FLAGS.peer_dir}")
    for height, width in sizes:
        print_size(segmenter, students, height, width, peers, limits)


def build_students(names):
    """{name: the student's segmenter, random weights} of `names` (None: every row)."""
    from udamobile.nets.segmenter import build_segmenter

    names = list(STUDENTS) if names is None else [n for n in names if n != "none"]
    unknown = [name for name in names if name not in STUDENTS]
    if unknown:
        raise app.UsageError(f"--students: {', '.join(unknown)} not in "
                             f"udamobile/nets/students.py ({', '.join(STUDENTS)})")
    return {name: build_segmenter(**STUDENTS[name], name=name) for name in names}


if __name__ == "__main__":
    cli.run("benchmarks/latency.py", main)
