"""Starting the segmenter from pretrained weights held in a local file or folder.

`initialize_segmenter(segmenter, path)` recognizes what `path` is and loads it:

    format         what the user names                           loaded into
    keras_h5       a keras.applications MobileNetV2 weights      the backbone (Me), by
                   .h5, "no top" or full, of the same width      Keras layer name
    tf_checkpoint  a TF1 TF-slim / TF-DeepLab MobileNetV2        the backbone, and the
                   checkpoint: its folder, its prefix, or the    ASPP/decoder/logits when
                   model zoo's .tar.gz                           the checkpoint has them
    workdir        a udamobile work directory (config.json +     Me and Md, by layer name
                   checkpoints/): stage 1 -> stage 2, or
                   another run's segmenter

Every format is first read into "source weights": for each of our layers with
variables ("encoder/Conv1", "decoder/logits", ...), the (name in the file,
array) of each of its variables, in the layer's weight order. One plan then
compares shapes for all formats alike: a layer absent from the file starts
fresh; the logits start fresh when the file has another class count; any
other shape difference is an error unless partial loading is allowed, and
nothing is assigned before the whole file has been checked. Nothing is ever
downloaded.

TF-DeepLab's MobileNetV2 model-zoo checkpoints (deeplabv3_mnv2_pascal_trainval,
the paper's start) were trained without atrous ASPP branches: their
concat_projection projects 2 branches where ours projects 5, so they load
with allow_partial (backbone, image_pooling and aspp0 from the file).
"""
import dataclasses
import glob
import os
import re
import shutil
import tarfile
import tempfile
import typing
import zlib

import h5py
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from udamobile import errors
from udamobile.nets import networks
from udamobile.training import checkpointing, workdirs

PARTS = ("encoder", "decoder")
LOGITS_LAYER = "decoder/logits"
MAX_LISTED = 10


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """A variable of ours whose counterpart in the file has another shape.

    `found` is None when the file lacks a variable the layer needs. When the
    file holds another number of variables for the layer, `variable` names
    the layer and the shapes are tuples of shapes.
    """
    variable: str
    source: str
    expected: tuple
    found: typing.Optional[tuple]

    def __str__(self):
        found = "nothing" if self.found is None else self.found
        return f"{self.variable} <- {self.source}: expected {self.expected}, found {found}"


@dataclasses.dataclass(frozen=True)
class InitReport:
    """What `initialize_segmenter` loaded; `str(report)` is the start-up report.

    Attributes:
      format: "keras_h5", "tf_checkpoint" or "workdir".
      source: what was found, with its path.
      variables_loaded: number of segmenter variables assigned from the file.
      fresh_layers: layers ("encoder/...", "decoder/...") left at their
        initial values: absent from the file, or skipped (see `mismatches`
        and `notes`).
      mismatches: the variables skipped for their shape (allow_partial only).
      notes: other reasons a layer starts fresh (e.g. another class count).
    """
    format: str
    source: str
    variables_loaded: int
    fresh_layers: tuple
    mismatches: tuple = ()
    notes: tuple = ()

    def __str__(self):
        lines = [f"Segmenter initialized from {self.source}: "
                 f"{self.variables_loaded} variables loaded"]
        if self.fresh_layers:
            lines.append(f"  {len(self.fresh_layers)} layers start fresh: "
                         + ", ".join(self.fresh_layers))
        else:
            lines.append("  no layer starts fresh")
        if self.mismatches:
            lines.append(f"  {len(self.mismatches)} variables skipped for their shape "
                         "(partial loading allowed):")
            lines += [f"    {mismatch}" for mismatch in self.mismatches]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Source:
    """A file read into source weights: {our layer: [(name in file, array or None)]}."""
    format: str
    description: str
    weights: dict


def _preview(names):
    names = list(names)
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "")


def _layers_with_weights(segmenter):
    """{"encoder/Conv1": layer, ...}: every layer of Me and Md that has variables."""
    try:
        parts = [segmenter.get_layer(part) for part in PARTS]
    except ValueError as e:
        raise errors.PretrainedError(
            f"model {segmenter.name!r} has no 'encoder' and 'decoder' sub-models: "
            "expected a segmenter from udamobile.nets.segmenter.build_segmenter") from e
    return {f"{part.name}/{layer.name}": layer
            for part in parts for layer in part.layers if layer.weights}


# --- Keras MobileNetV2 .h5 ---------------------------------------------------

def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _legacy_h5_layers(group):
    """Layout of keras.applications' downloads (and of Keras' `model.save("x.h5")`,
    under "model_weights"): the `layer_names` attribute lists one group per
    layer, whose `weight_names` attribute lists its datasets in weight order."""
    layers = {}
    for layer_name in map(_text, group.attrs["layer_names"]):
        layer = group[layer_name]
        names = [_text(name) for name in layer.attrs["weight_names"]]
        layers[layer_name] = [(name, layer[name][()]) for name in names]
    return layers


def _keras3_h5_layers(group):
    """Layout of Keras 3's `.weights.h5`: layers/<key>/vars/<index>, the
    layer's name in the `name` attribute of its `vars` group (files of older
    Keras 3 versions lack it: their keys, e.g. "conv2d_1", name no layer)."""
    layers = {}
    for key, layer in group.items():
        variables = layer["vars"]
        names = sorted(variables, key=int)
        layers[_text(variables.attrs.get("name", key))] = [
            (f"layers/{key}/vars/{name}", variables[name][()]) for name in names]
    return layers


def _h5_layers(path):
    """{layer name: [(dataset name, array)]} of a Keras weights file."""
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in group.attrs:
                return "legacy .h5 layout", _legacy_h5_layers(group)
            if "layers" in f:
                return "Keras 3 .weights.h5 layout", _keras3_h5_layers(f["layers"])
    except (OSError, KeyError) as e:
        raise errors.PretrainedError(
            f"{path}: cannot read this HDF5 file (truncated or corrupt?): {e}") from e
    raise errors.PretrainedError(
        f"{path}: an HDF5 file but not Keras weights (no 'layer_names' attribute, "
        "no 'model_weights' or 'layers' group)")


def _keras_h5_source(path, targets):
    layout, layers = _h5_layers(path)
    weights = {f"encoder/{name}": arrays for name, arrays in layers.items()
               if f"encoder/{name}" in targets}
    if not weights:
        raise errors.PretrainedError(
            f"{path} holds no layer of the MobileNetV2 backbone (Conv1, bn_Conv1, "
            f"block_1_expand, ...): not keras.applications MobileNetV2 weights. "
            f"Its layers: {_preview(layers)}")
    return _Source("keras_h5", f"Keras MobileNetV2 weights {path} ({layout}, "
                   f"{len(weights)} backbone layers)", weights)


# --- TF1 TF-slim / TF-DeepLab checkpoints ------------------------------------
#
# Variable names, from tensorflow/models research/:
# - slim/nets/mobilenet/mobilenet_v2.py (V2_DEF) and mobilenet.py
#   (mobilenet_base): a slim.conv2d, whose default scope is "Conv", then 17
#   expanded_conv blocks with default scopes "expanded_conv",
#   "expanded_conv_1", ..., "expanded_conv_16", all under "MobilenetV2"
#   (deeplab/core/feature_extractor.py, `name_scope`).
# - slim/nets/mobilenet/conv_blocks.py (expanded_conv): the block's convs are
#   scoped "expand" (absent from the first block, whose expansion is 1),
#   "depthwise" and "project". The depthwise conv is a slim.separable_conv2d
#   with num_outputs=None: its kernel is "depthwise_weights", [3, 3, C, 1],
#   the layout of Keras' DepthwiseConv2D kernel (kh, kw, C, multiplier), so
#   it is copied as is. slim.conv2d kernels are "weights" [kh, kw, in, out]
#   as in Keras, biases "biases"; slim.batch_norm keeps gamma, beta,
#   moving_mean and moving_variance in "<conv scope>/BatchNorm".
# - deeplab/model.py: top-level scopes "image_pooling", "aspp0",
#   "aspp<i>_depthwise" + "aspp<i>_pointwise" (_split_separable_conv2d) or
#   "aspp<i>" (plain 3x3), "concat_projection"; under "decoder":
#   "feature_projection0", "decoder_conv<i>_depthwise" + "_pointwise", or,
#   for plain convs, slim.repeat's "decoder_conv0/decoder_conv0_<i + 1>";
#   logits in "logits/semantic" (_get_branch_logits, output type "semantic").

BACKBONE_SCOPE = "MobilenetV2"
_BLOCK_CONV = re.compile(r"(?:expanded_conv|block_(\d+))_(expand|depthwise|project)")
_PLAIN_DECODER_CONV = re.compile(r"decoder_conv(\d+)")
# The checkpoint reader reports a damaged file as an OpError, or, from its
# C++ binding, as IndexError ("Read less bytes than requested"), ValueError
# or RuntimeError.
_CHECKPOINT_READ_ERRORS = (tf.errors.OpError, IndexError, ValueError, RuntimeError)
_SLIM_LEAF = {"bias": "biases", "gamma": "BatchNorm/gamma", "beta": "BatchNorm/beta",
              "moving_mean": "BatchNorm/moving_mean",
              "moving_variance": "BatchNorm/moving_variance"}


def _conv_of(layer_name):
    """The conv a layer belongs to: our batch norms are named after their conv."""
    return "Conv1" if layer_name == "bn_Conv1" else layer_name.removesuffix("_BN")


def _slim_scope(part, conv):
    """TF-slim / TF-DeepLab variable scope of our conv layer `conv` in `part`."""
    if part == "encoder":
        if conv == "Conv1":
            return f"{BACKBONE_SCOPE}/Conv"
        block, op = _BLOCK_CONV.fullmatch(conv).groups()
        return f"{BACKBONE_SCOPE}/expanded_conv{f'_{block}' if block else ''}/{op}"
    if conv == "logits":
        return "logits/semantic"
    plain = _PLAIN_DECODER_CONV.fullmatch(conv)
    if plain:
        return f"decoder/decoder_conv0/decoder_conv0_{int(plain[1]) + 1}"
    if conv.startswith(("feature_projection", "decoder_conv")):
        return f"decoder/{conv}"
    return conv


def _slim_variable_name(qualified_layer, layer, variable):
    """The checkpoint name of one of our variables, e.g. ("encoder/block_3_depthwise",
    its kernel) -> "MobilenetV2/expanded_conv_3/depthwise/depthwise_weights"."""
    part, name = qualified_layer.split("/")
    scope = _slim_scope(part, _conv_of(name))
    if variable.name == "kernel":
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        return f"{scope}/{'depthwise_weights' if depthwise else 'weights'}"
    return f"{scope}/{_SLIM_LEAF[variable.name]}"


def _open_checkpoint(prefix, label):
    try:
        reader = tf.train.load_checkpoint(prefix)
        return reader, reader.get_variable_to_shape_map()
    except _CHECKPOINT_READ_ERRORS as e:
        raise errors.PretrainedError(f"{label}: cannot read this TF checkpoint (truncated or "
                                     f"corrupt?): {str(e).splitlines()[0]}") from e


def _read_tensor(reader, name, label):
    try:
        return reader.get_tensor(name)
    except _CHECKPOINT_READ_ERRORS as e:
        raise errors.PretrainedError(f"{label}: cannot read variable {name} (truncated or "
                                     f"corrupt data file?): {str(e).splitlines()[0]}") from e


def _require_mobilenet_v2(names, label):
    if any(name.startswith(f"{BACKBONE_SCOPE}/") for name in names):
        return
    hint = (" It is an object-based TF2 checkpoint: for a udamobile run, name its work "
            "directory." if "_CHECKPOINTABLE_OBJECT_GRAPH" in names else "")
    raise errors.PretrainedError(
        f"{label} has no {BACKBONE_SCOPE}/ variables: not a TF-slim / TF-DeepLab "
        f"MobileNetV2 checkpoint (another architecture?). Its variables: "
        f"{_preview(sorted(names))}.{hint}")


def _tf_checkpoint_source(prefix, targets, label):
    """Reads the variables our layers need (in memory, so `prefix` may then go)."""
    reader, shapes = _open_checkpoint(prefix, label)
    _require_mobilenet_v2(shapes, label)
    weights = {}
    for qualified, layer in targets.items():
        names = [_slim_variable_name(qualified, layer, v) for v in layer.weights]
        if any(name in shapes for name in names):
            weights[qualified] = [
                (name, _read_tensor(reader, name, label) if name in shapes else None)
                for name in names]
    heads = [name for name in weights if name.startswith("decoder/")]
    return _Source("tf_checkpoint",
                   f"TF-slim/TF-DeepLab MobileNetV2 checkpoint {label} "
                   f"({len(weights) - len(heads)} backbone layers, "
                   f"{len(heads)} ASPP/decoder/logits layers)", weights)


def _checkpoint_in_folder(folder, label):
    """The checkpoint prefix in `folder` (or in one of its sub-folders), or None."""
    latest = tf.train.latest_checkpoint(folder)
    if latest:
        return latest
    indexes = (sorted(glob.glob(os.path.join(folder, "*.index")))
               or sorted(glob.glob(os.path.join(folder, "*", "*.index"))))
    if not indexes:
        return None
    if len(indexes) > 1:
        names = [os.path.relpath(index, folder)[:-len(".index")] for index in indexes]
        raise errors.PretrainedError(f"{label} holds several checkpoints ({_preview(names)}): "
                                     "name one by its prefix")
    return indexes[0][:-len(".index")]


def _is_checkpoint_file(name):
    return name.endswith(".index") or ".data-" in name


def _extract_checkpoint_files(archive, folder):
    """Copies the checkpoint files of a tar archive flat into `folder`.

    Only regular files named like checkpoint files are read, and each is
    written under its base name: no member can land outside `folder` or be
    a link or a device.
    """
    with tarfile.open(archive) as tar:
        for member in tar:
            name = os.path.basename(member.name)
            if not (member.isfile() and _is_checkpoint_file(name)):
                continue
            target = os.path.join(folder, name)
            if os.path.exists(target):
                raise errors.PretrainedError(f"{archive} holds {name} twice: name the extracted "
                                             "checkpoint instead")
            with tar.extractfile(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _archive_source(archive, targets):
    with tempfile.TemporaryDirectory(prefix="udamobile-init-") as folder:
        try:
            _extract_checkpoint_files(archive, folder)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise errors.PretrainedError(
                f"{archive}: cannot read this archive (truncated or corrupt?): {e}") from e
        prefix = _checkpoint_in_folder(folder, archive)
        if prefix is None:
            raise errors.PretrainedError(f"{archive} holds no TF checkpoint (*.index, *.data-*)")
        label = f"{archive} ({os.path.basename(prefix)})"
        return _tf_checkpoint_source(prefix, targets, label)


# --- udamobile work directories ----------------------------------------------

def _is_workdir(folder):
    return (os.path.isfile(workdirs.config_path(folder))
            and os.path.isdir(workdirs.checkpoint_dir(folder)))


def _workdir_source(workdir):
    """The segmenter of the run's latest checkpoint, restored into a twin built
    from the run's own config (so another class count or width is reported
    like in any other file, instead of failing the restore)."""
    try:
        cfg = workdirs.read_config(workdir)
        path = checkpointing.resolve_checkpoint(workdir)
        trained = networks.build_segmenter_from_config(cfg.model)
        checkpointing.restore_into(path, segmenter=trained)
    except errors.WorkdirError as e:
        raise errors.PretrainedError(str(e)) from e
    weights = {qualified: [(f"{qualified}/{v.name}", v.numpy()) for v in layer.weights]
               for qualified, layer in _layers_with_weights(trained).items()}
    return _Source("workdir", f"udamobile work directory {workdir} (checkpoint {path}, "
                   f"step {checkpointing.checkpoint_step(path)})", weights)


# --- recognizing the format --------------------------------------------------

def _is_hdf5(path):
    return path.lower().endswith((".h5", ".hdf5")) or h5py.is_hdf5(path)


def _is_tar(path):
    return path.lower().endswith((".tar", ".tar.gz", ".tgz")) or tarfile.is_tarfile(path)


def _read_source(path, targets):
    if os.path.isdir(path):
        if _is_workdir(path):
            return _workdir_source(path)
        prefix = _checkpoint_in_folder(path, path)
        if prefix is None:
            raise errors.PretrainedError(
                f"{path}: neither a udamobile work directory (config.json + checkpoints/) "
                "nor a folder holding a TF checkpoint (*.index)")
        return _tf_checkpoint_source(prefix, targets, path)
    prefix = path.removesuffix(".index")
    if os.path.isfile(prefix + ".index"):
        return _tf_checkpoint_source(prefix, targets, prefix)
    if not os.path.isfile(path):
        raise errors.PretrainedError(f"{path}: no such file or folder (nor a checkpoint prefix: "
                                     f"no {path}.index)")
    if _is_hdf5(path):
        return _keras_h5_source(path, targets)
    if _is_tar(path):
        return _archive_source(path, targets)
    raise errors.PretrainedError(
        f"{path}: not a recognized pretrained-weights file; expected a Keras MobileNetV2 "
        ".h5, a TF checkpoint (folder, prefix or .tar.gz) or a udamobile work directory")


# --- planning and assigning --------------------------------------------------

def _layer_mismatches(qualified, variables, source):
    if len(variables) != len(source):
        return [Mismatch(qualified, ", ".join(name for name, _ in source),
                         tuple(tuple(v.shape) for v in variables),
                         tuple(None if a is None else a.shape for _, a in source))]
    return [Mismatch(f"{qualified}/{variable.name}", name, tuple(variable.shape),
                     None if array is None else array.shape)
            for variable, (name, array) in zip(variables, source)
            if array is None or array.shape != tuple(variable.shape)]


def _other_class_count(qualified, layer, source):
    """The file's class count when it differs from ours (logits only), else None."""
    kernel = source[0][1] if qualified == LOGITS_LAYER else None
    if kernel is None or kernel.shape[-1] == layer.kernel.shape[-1]:
        return None
    return kernel.shape[-1]


def _plan(targets, weights):
    """Matches source weights to our layers.

    Returns (loads [(variable, array)], fresh layer names, mismatches, notes).
    """
    loads, fresh, mismatches, notes = [], [], [], []
    for qualified, layer in targets.items():
        source = weights.get(qualified)
        if source is None:
            fresh.append(qualified)
            continue
        classes = _other_class_count(qualified, layer, source)
        if classes is not None:
            notes.append(f"{qualified} starts fresh: the file has {classes} classes, "
                         f"the segmenter {layer.kernel.shape[-1]}")
            fresh.append(qualified)
            continue
        layer_mismatches = _layer_mismatches(qualified, layer.weights, source)
        if layer_mismatches:
            mismatches += layer_mismatches
            fresh.append(qualified)
        else:
            loads += [(v, array) for v, (_, array) in zip(layer.weights, source)]
    return loads, fresh, mismatches, notes


def _mismatch_error(description, mismatches):
    listed = "\n  ".join(str(m) for m in mismatches[:MAX_LISTED])
    more = (f"\n  ... and {len(mismatches) - MAX_LISTED} more"
            if len(mismatches) > MAX_LISTED else "")
    return errors.PretrainedError(
        f"{description} does not fit the segmenter: {len(mismatches)} variables differ "
        f"(another width multiplier or ASPP/decoder size?):\n  {listed}{more}\n"
        "Allow partial loading (allow_partial=True, --init_allow_partial) to load only "
        "the matching layers.")


def initialize_segmenter(segmenter, path, *, allow_partial=False):
    """Loads pretrained weights from the local file or folder `path` into `segmenter`.

    The format is recognized (see the module docstring) and logged. Layers
    the file lacks keep their values. The whole file is checked before any
    variable is assigned: on an error the segmenter is left unchanged.

    Args:
      segmenter: a model from `udamobile.nets.segmenter.build_segmenter`.
      path: a Keras MobileNetV2 .h5; a TF1 checkpoint folder, prefix (or its
        .index file) or .tar.gz; or a udamobile work directory.
      allow_partial: skip (and report) the layers whose shapes differ,
        instead of raising.

    Returns:
      An InitReport; `str(report)` is the start-up report.

    Raises:
      errors.PretrainedError: `path` is missing, unreadable (truncated, corrupt),
        of another architecture, differs in shape without `allow_partial`, or
        nothing in it fits the segmenter.
    """
    path = os.fspath(path)
    targets = _layers_with_weights(segmenter)
    source = _read_source(path, targets)
    logging.info("Pretrained weights: found %s", source.description)
    loads, fresh, mismatches, notes = _plan(targets, source.weights)
    if mismatches and not allow_partial:
        raise _mismatch_error(source.description, mismatches)
    if not loads:
        raise errors.PretrainedError(f"{source.description}: no variable fits the segmenter")
    for variable, array in loads:
        variable.assign(np.asarray(array, dtype=variable.dtype))
    report = InitReport(format=source.format, source=source.description,
                        variables_loaded=len(loads), fresh_layers=tuple(fresh),
                        mismatches=tuple(mismatches), notes=tuple(notes))
    logging.info("%s", report)
    return report
