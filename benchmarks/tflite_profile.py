"""Where a TFLite graph spends its time, op by op, beside the bound of this CPU.

    python benchmarks/tflite_profile.py --peer_dir=../shared/peer
    python benchmarks/tflite_profile.py --files=a.tflite,b.tflite --precisions=int8,float32

Builds the default segmenter with random weights and exports it at the
peer's 512x1024 (int8 by default; labels and probabilities outputs), then
times the graph cut after each of its convolutions and additions
(tflite_graphs.truncated; CUT_AFTER says why not after every op), with the
interpreter and threads a board uses: a segment's share is the time of the
cut after it minus that of the cut before (fastest of `--runs` runs each, so
noise can make a small share negative). Each segment row gives its MACs and
the bytes of activations its ops read and write; a summary gives the time by
the kinds of ops segments hold.

The bound (bounds.py): the graph's MACs at the rate XNNPACK reaches on one
large int8 (or float32) 1x1 convolution on this machine, and its activation
bytes at the memory bandwidth numpy's copy reaches. A graph cannot run faster
than the larger of the two. Run it on a quiet machine; not part of the test suite.
"""
import os
import tempfile

from absl import app, flags

from data_pipelines import cli

import bounds
import tflite_graphs
from common import machine

FLAGS = flags.FLAGS
flags.DEFINE_list("files", [], ".tflite files to profile instead of exporting ours.")
flags.DEFINE_string("peer_dir", None, "Folder of peer_fp32.tflite and peer_int8.tflite, "
                    "profiled too.")
flags.DEFINE_list("precisions", ["int8"], "Precisions of ours (and the peer's) profiled: "
                  "int8, float32.")
flags.DEFINE_integer("runs", 7, "Timed runs of every cut graph (the fastest counts).")
flags.DEFINE_integer("num_threads", 2, "TFLite interpreter threads.")
flags.DEFINE_integer("height", 512, "Input height of our exports.")
flags.DEFINE_integer("width", 1024, "Input width of our exports.")
flags.DEFINE_integer("top", 25, "Segments printed per graph: the most expensive ones.")


def fastest_ms(model_bytes, runs):
    return bounds.fastest_ms(model_bytes, runs, FLAGS.num_threads)


# Cuts are made only after these ops, so each share covers the ops since the
# previous cut: a concatenation or a resize is timed with the convolution
# that reads it, whose kernel XNNPACK may fuse it into.
CUT_AFTER = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN")


def cut_points(ops):
    """Op indices a graph is cut after: every op in CUT_AFTER, and the last."""
    last = len(ops) - 1
    return [k for k, (name, _, _) in enumerate(ops) if name in CUT_AFTER or k == last]


def segment_shares(model_bytes, cuts):
    """([ms of the ops up to each cut since the previous one], ms of the whole graph)."""
    cumulative = [fastest_ms(tflite_graphs.truncated(model_bytes, k), FLAGS.runs) for k in cuts]
    return [t - (cumulative[i - 1] if i else 0.0) for i, t in enumerate(cumulative)], cumulative[-1]


def profile(name, path, rates, bandwidth):
    with open(path, "rb") as f:
        model_bytes = f.read()
    ops = tflite_graphs.operators(model_bytes)
    macs = tflite_graphs.multiply_accumulates(model_bytes)
    traffic = tflite_graphs.activation_bytes(model_bytes)
    cuts = cut_points(ops)
    shares, total = segment_shares(model_bytes, cuts)
    precision = bounds.precision(model_bytes)
    _, bound = bounds.graph_bound(model_bytes, rates, bandwidth, macs, traffic)
    print(f"\n## {name}: {tflite_graphs.describe(path)}\n"
          f"{total:.1f} ms for the whole graph; {sum(macs) / 1e9:.2f} GMAC, "
          f"{sum(traffic) / 1e6:.0f} MB of activations read and written; bound "
          f"{bound:.1f} ms (MACs at {rates[precision] / 1e9:.0f} GMAC/s, traffic at "
          f"{bandwidth / 1e9:.1f} GB/s): {total / bound:.1f}x the bound\n")
    print("| ops | types | output of the last | ms | GMAC | MB |\n|---|---|---|---|---|---|")
    segments = [range(cuts[i - 1] + 1 if i else 0, k + 1) for i, k in enumerate(cuts)]
    shown = sorted(sorted(range(len(cuts)), key=lambda i: -shares[i])[:FLAGS.top])
    for i in shown:
        ops_in = segments[i]
        types = " ".join(ops[k][0] for k in ops_in)
        _, shape, dtype = ops[ops_in[-1]]
        print(f"| {ops_in[0]}-{ops_in[-1]} | {types} | {dtype} {shape} | {shares[i]:.1f} | "
              f"{sum(macs[k] for k in ops_in) / 1e9:.2f} | "
              f"{sum(traffic[k] for k in ops_in) / 1e6:.1f} |")
    by_type = {}
    for segment, share in zip(segments, shares):
        key = ops[segment[-1]][0] if len(segment) == 1 else "+".join(
            sorted({ops[k][0] for k in segment}))
        by_type[key] = by_type.get(key, 0.0) + share
    print("\n| ops of a segment | ms | share |\n|---|---|---|")
    for key, share in sorted(by_type.items(), key=lambda item: -item[1]):
        print(f"| {key} | {share:.1f} | {100 * share / total:.0f}% |")


def our_files(folder):
    """{name: path} of our exports at --height x --width in `folder`."""
    import data_pipelines
    from export.tflite import calibration_images, export_tflite
    from udamobile.nets.segmenter import build_segmenter

    segmenter = build_segmenter()
    calibration = calibration_images(data_pipelines.open_dataset("demo_target", split="train"),
                                     count=8, height=FLAGS.height, width=FLAGS.width)
    files = {}
    for quantization in FLAGS.precisions:
        for output in ("labels", "probabilities"):
            name = f"ours_{quantization}_{output}"
            files[name] = export_tflite(
                segmenter, os.path.join(folder, f"{name}.tflite"), height=FLAGS.height,
                width=FLAGS.width, quantization=quantization, output=output,
                representative_images=calibration if quantization == "int8" else None)
    return files


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    unknown = set(FLAGS.precisions) - {"int8", "float32"}
    if unknown:
        raise app.UsageError(f"--precisions takes int8 and float32, got {', '.join(unknown)}")
    for path in FLAGS.files:
        if not os.path.isfile(path):
            raise app.UsageError(f"--files: {path} does not exist")
    peers = {}
    if FLAGS.peer_dir:
        peers = {name: path for name, path in tflite_graphs.peer_paths(FLAGS.peer_dir).items()
                 if name.endswith(tuple(FLAGS.precisions))}
    print(machine(), f"{FLAGS.num_threads} threads")
    rates = {precision: bounds.mac_rate(precision, FLAGS.runs, FLAGS.num_threads)
             for precision in ("int8", "float32")}
    bandwidth = bounds.memory_bandwidth()
    with tempfile.TemporaryDirectory() as folder:
        files = {os.path.basename(p): p for p in FLAGS.files} or our_files(folder)
        for name, path in {**files, **peers}.items():
            profile(name, path, rates, bandwidth)


if __name__ == "__main__":
    cli.run("benchmarks/tflite_profile.py", main)
