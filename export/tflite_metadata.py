"""Files carried inside a .tflite file, as the named metadata buffers of its flatbuffer.

The TFLite schema gives a model a list of `metadata` entries, each a name and
the index of a buffer of bytes; the converter itself stores its
`min_runtime_version` and `CONVERSION_METADATA` there, and the interpreter
ignores every entry it does not know. `embed` adds entries through the
flatbuffer's object API (`schema_py_generated`, which ai-edge-litert ships
with the runtime), the way TensorFlow's converter adds its own; `read` reads
them back with the same module, which a board that has ai-edge-litert has too:

    from ai_edge_litert import schema_py_generated as schema

from udamobile import files
    model = schema.Model.GetRootAs(open(path, "rb").read(), 0)
    {model.Metadata(i).Name().decode(): model.Buffers(model.Metadata(i).Buffer())
     .DataAsNumpy().tobytes() for i in range(model.MetadataLength())}

(The entries the converter writes hold binary values; ours hold text files.)
tflite-support's metadata writers, whose `TFLITE_METADATA` entry has a schema
of its own, are archived and were not used (docs/deployment.md).
"""
import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from udamobile import files

FILE_IDENTIFIER = b"TFL3"


def embed(model_bytes, entries):
    """`model_bytes` (a .tflite flatbuffer) with `entries` ({name: bytes}) as metadata.

    Every operator, tensor and weight is kept as it is. Raises ValueError for
    a name the model already has, or a model whose weights lie outside its
    flatbuffer (over 2 GB), which this way cannot carry.
    """
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))
    if any(buffer.offset > 1 for buffer in model.buffers or ()):
        raise ValueError("the model keeps its weights outside the flatbuffer (over 2 GB); "
                         "its metadata cannot be rewritten this way")
    model.metadata = model.metadata or []
    taken = {entry.name.decode("utf-8") for entry in model.metadata} & set(entries)
    if taken:
        raise ValueError(f"the model already has metadata named {', '.join(sorted(taken))}")
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(model_bytes) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def read(model_bytes):
    """{name: bytes} of every metadata entry of a .tflite flatbuffer, the converter's too."""
    model = schema.Model.GetRootAs(model_bytes, 0)
    entries = {}
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        buffer = model.Buffers(entry.Buffer())
        entries[entry.Name().decode("utf-8")] = (buffer.DataAsNumpy().tobytes()
                                                 if buffer.DataLength() else b"")
    return entries


def embed_in_file(path, entries):
    """Rewrites the .tflite file at `path` (atomically) with `entries` embedded."""
    with open(path, "rb") as f:
        model_bytes = f.read()
    files.write_bytes(path, embed(model_bytes, entries))


def read_file(path):
    """`read` of the .tflite file at `path`."""
    with open(path, "rb") as f:
        return read(f.read())
