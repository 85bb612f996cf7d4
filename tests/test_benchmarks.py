"""The latency benchmark's inputs and the graph tools its figures rest on."""
import os
import subprocess
import sys

import keras
import pytest

from export import tflite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import tflite_graphs  # noqa: E402  (a benchmark module, not a package)


def test_latency_names_a_peer_dir_without_the_peer_files(tmp_path):
    (tmp_path / "peer_int8.tflite").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "benchmarks/latency.py", f"--peer_dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == (f"benchmarks/latency.py: --peer_dir {tmp_path} lacks "
                             "peer_fp32.tflite; expected peer_fp32.tflite and peer_int8.tflite "
                             "(../shared/peer)\n")


def _branching_model():
    """image -> a, b -> a + b: a cut after b must still compute a."""
    image = keras.Input((8, 8, 3), batch_size=1)
    a = keras.layers.Conv2D(4, 1, name="a")(image)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(image)
    return keras.Model(image, keras.layers.Add()([a, b]))


@pytest.fixture(scope="module")
def branching_bytes():
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(_branching_model()).convert()


def test_a_truncated_graph_keeps_what_the_removed_ops_read(branching_bytes):
    from ai_edge_litert.interpreter import Interpreter

    ops = [name for name, _, _ in tflite_graphs.operators(branching_bytes)]
    assert ops[-1] == "ADD"
    cut = tflite_graphs.truncated(branching_bytes, len(ops) - 2)
    interpreter = Interpreter(model_content=cut)
    interpreter.allocate_tensors()
    # Both convolutions' outputs: the last op kept and the one only ADD read.
    shapes = sorted(tuple(d["shape"]) for d in interpreter.get_output_details())
    assert shapes == [(1, 8, 8, 4), (1, 8, 8, 4)]
    assert len(tflite_graphs.operators(cut)) == len(ops) - 1


def test_multiply_accumulates_of_the_convolutions(branching_bytes):
    macs = dict(zip((name for name, _, _ in tflite_graphs.operators(branching_bytes)),
                    tflite_graphs.multiply_accumulates(branching_bytes)))
    assert sorted(v for v in tflite_graphs.multiply_accumulates(branching_bytes) if v) == [
        8 * 8 * 4 * 3, 8 * 8 * 4 * 3 * 9]
    assert macs["ADD"] == 0


def test_describe_says_what_ends_a_deployed_graph(tmp_path):
    image = keras.Input((None, None, 3))
    segmenter = keras.Model(image, {"logits": keras.layers.Conv2D(19, 1)(image)})
    for output, telling, absent in (("labels", "argmax", "no softmax"),
                                    ("probabilities", "softmax", "no argmax")):
        path = str(tmp_path / f"{output}.tflite")
        tflite.export_tflite(segmenter, path, height=16, width=16, output=output)
        text = tflite_graphs.describe(path)
        assert text.startswith("uint8 [1, 16, 16, 3] -> ")
        assert telling in text and absent in text
    assert "uint8 [1, 16, 16]" in tflite_graphs.describe(str(tmp_path / "labels.tflite"))
    assert "float32 [1, 16, 16, 19]" in tflite_graphs.describe(
        str(tmp_path / "probabilities.tflite"))
