"""What a .tflite graph holds, and the graph cut after any of its ops: tools of the TFLite benchmarks.

    peer_paths(folder)         {name: path} of the peer's files, or a UsageError
    describe(path)             'uint8 [1,512,1024,3] -> uint8 [1,512,1024]; argmax, resize x3, ...'
    operators(model_bytes)     [(op name, output shape)] in execution order
    truncated(model_bytes, k)  the same graph ending after op k
    multiply_accumulates(...)  MACs of every CONV_2D / DEPTHWISE_CONV_2D
    activation_bytes(...)      bytes every op reads and writes (activations only)

Truncated graphs time a graph op by op with the same interpreter and
delegate a board uses (LiteRT's own op profiler is not exposed in Python):
the time of the graph cut after op k, minus that of the graph cut after op
k - 1, is op k's share.
"""
import os
import time

import numpy as np
from absl import app

# The TF Model Garden's files in ../shared/peer, by the name the benchmarks give them.
PEER_FILES = {"peer_float32": "peer_fp32.tflite", "peer_int8": "peer_int8.tflite"}

# Ops whose presence decides what a graph costs at its end.
TELLING_OPS = {"SOFTMAX": "softmax", "ARG_MAX": "argmax", "RESIZE_BILINEAR": "resize",
               "DEQUANTIZE": "dequantize", "QUANTIZE": "quantize", "CAST": "cast"}


def peer_paths(folder):
    """{name: path} of the peer's files in `folder`; UsageError naming what is missing."""
    if not os.path.isdir(folder):
        raise app.UsageError(f"--peer_dir {folder} is not a folder")
    missing = [name for name in PEER_FILES.values()
               if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise app.UsageError(f"--peer_dir {folder} lacks {', '.join(missing)}; expected "
                             f"{' and '.join(PEER_FILES.values())} (../shared/peer)")
    return {name: os.path.join(folder, file) for name, file in PEER_FILES.items()}


def _flatbuffers():
    # Imported on first use: importing TensorFlow at start-up would print
    # its C++ lines before data_pipelines.cli can hide them.
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils


def _read(model_bytes):
    return _flatbuffers().read_model_from_bytearray(bytearray(model_bytes))


def _dtype_name(tensor_type):
    names = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16",
             9: "int8"}
    return names.get(tensor_type, f"type{tensor_type}")


def operators(model_bytes):
    """[(op name, output shape list, output dtype name)] of the main graph, in order."""
    model = _read(model_bytes)
    graph = model.subgraphs[0]
    rows = []
    for op in graph.operators:
        output = graph.tensors[op.outputs[0]]
        rows.append((_flatbuffers().opcode_to_name(model, op.opcodeIndex),
                     [int(d) for d in output.shape], _dtype_name(output.type)))
    return rows


def _tensor_text(graph, index):
    tensor = graph.tensors[index]
    return f"{_dtype_name(tensor.type)} {[int(d) for d in tensor.shape]}"


def describe(path):
    """One line: input and output types and shapes, and how often each telling op occurs."""
    with open(path, "rb") as f:
        model_bytes = f.read()
    graph = _read(model_bytes).subgraphs[0]
    counts = {}
    for name, _, _ in operators(model_bytes):
        if name in TELLING_OPS:
            counts[TELLING_OPS[name]] = counts.get(TELLING_OPS[name], 0) + 1
    ops = ", ".join(f"{word} x{n}" if n > 1 else word for word, n in sorted(counts.items()))
    absent = [word for word in ("softmax", "argmax") if word not in counts]
    return (f"{_tensor_text(graph, graph.inputs[0])} -> {_tensor_text(graph, graph.outputs[0])}; "
            f"{ops or 'no telling ops'}" + (f"; no {', no '.join(absent)}" if absent else ""))


def truncated(model_bytes, k):
    """The graph ending after op k: ops after it removed, and every tensor they
    would have read made an output, with op k's first.

    Without those outputs a delegate drops the ops whose results nothing
    reads any more (XNNPACK does): a graph cut after the decoder's low-level
    projection would lose the whole ASPP branch and time less than one cut
    before it.
    """
    model = _read(model_bytes)
    graph = model.subgraphs[0]
    kept, removed = graph.operators[:k + 1], graph.operators[k + 1:]
    produced = {o for op in kept for o in op.outputs} | set(graph.inputs)
    still_read = [i for op in removed for i in op.inputs if i in produced]
    outputs = [kept[-1].outputs[0]]
    for index in still_read:
        if index not in outputs:
            outputs.append(index)
    graph.operators, graph.outputs = kept, outputs
    model.signatureDefs = []  # they name the outputs removed
    return bytes(_flatbuffers().convert_object_to_bytearray(model))


def multiply_accumulates(model_bytes):
    """[MACs of op k] for every op (0 for ops other than convolutions)."""
    model = _read(model_bytes)
    graph = model.subgraphs[0]
    macs = []
    for op in graph.operators:
        name = _flatbuffers().opcode_to_name(model, op.opcodeIndex)
        output = [int(d) for d in graph.tensors[op.outputs[0]].shape]
        weights = [int(d) for d in graph.tensors[op.inputs[1]].shape] if len(op.inputs) > 1 else []
        if name == "CONV_2D":  # weights [out, kh, kw, in]
            macs.append(int(np.prod(output[:3])) * int(np.prod(weights)))
        elif name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, channels]
            macs.append(int(np.prod(output)) * weights[1] * weights[2])
        else:
            macs.append(0)
    return macs


def activation_bytes(model_bytes):
    """[bytes op k reads and writes], counting activations (not weights or constants)."""
    graph = _read(model_bytes).subgraphs[0]
    itemsize = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 7: 2, 9: 1}
    # Activations are the graph's inputs and what ops write; the rest are weights.
    activations = set(graph.inputs) | {o for op in graph.operators for o in op.outputs}
    return [sum(int(np.prod(graph.tensors[i].shape)) * itemsize.get(graph.tensors[i].type, 4)
                for i in (*op.inputs, *op.outputs) if i in activations)
            for op in graph.operators]


def timed_runner(model_bytes, num_threads, latest_features=False):
    """A function running the graph once on fixed random input (what its input type takes).

    `latest_features` turns on LiteRT's experimental_default_delegate_latest_features
    (XNNPACK's newest kernels and options) instead of the defaults a board gets.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=num_threads,
                              experimental_default_delegate_latest_features=latest_features)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        pixels = rng.integers(info.min, info.max, detail["shape"], endpoint=True)
    else:
        pixels = rng.uniform(-1, 1, detail["shape"])
    pixels = pixels.astype(detail["dtype"])

    def run():
        interpreter.set_tensor(detail["index"], pixels)
        interpreter.invoke()
    return run


def interleaved_seconds(runners, *, runs, warmup):
    """{name: [seconds per run]}: each round runs every runner once, in turn.

    Interleaving spreads any slow phase of the machine over every runner
    instead of charging it to whichever ran then.
    """
    for run in runners.values():
        for _ in range(warmup):
            run()
    times = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times
